package procinfo

import (
	"bytes"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// IdleSampler tells how much of the machine's CPU time was idle lately
// (all CPUs, every process: /proc/stat), sampled at most once per period.
// It is safe for concurrent use; the zero value is not ready (NewIdleSampler).
type IdleSampler struct {
	period time.Duration
	read   func() (idle, total uint64, ok bool)

	mu          sync.Mutex // held by the caller taking a sample
	at          time.Time
	idle, total uint64        // at the last sample
	valid       bool          // idle and total were read
	share       atomic.Uint64 // math.Float64bits of the last period's idle share, -1: unknown
}

// NewIdleSampler returns a sampler of the given period (at least 50 ms).
func NewIdleSampler(period time.Duration) *IdleSampler {
	return newIdleSampler(max(period, 50*time.Millisecond), readCPUStat)
}

func newIdleSampler(period time.Duration, read func() (uint64, uint64, bool)) *IdleSampler {
	s := &IdleSampler{period: period, read: read}
	s.share.Store(math.Float64bits(-1))
	s.idle, s.total, s.valid = read()
	s.at = time.Now()
	return s
}

// Idle returns the idle share (0 to 1) of all CPUs over the last period
// that ended, or -1 when unknown (no /proc/stat, or no period ended yet).
// A caller that finds the period over takes the next sample; the others
// get the last share without waiting.
func (s *IdleSampler) Idle() float64 {
	if s.mu.TryLock() {
		if now := time.Now(); now.Sub(s.at) >= s.period {
			idle, total, ok := s.read()
			switch {
			case !ok:
				s.share.Store(math.Float64bits(-1))
			case s.valid && total > s.total && idle >= s.idle:
				s.share.Store(math.Float64bits(float64(idle-s.idle) / float64(total-s.total)))
			}
			s.at, s.idle, s.total, s.valid = now, idle, total, ok
		}
		s.mu.Unlock()
	}
	return math.Float64frombits(s.share.Load())
}

// readCPUStat returns idle (idle + iowait) and total jiffies of the "cpu"
// line of /proc/stat.
func readCPUStat() (idle, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already counted in user).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, true
}
