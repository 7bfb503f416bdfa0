package progress

import (
	"math"
	"sync"
	"time"
)

// DefaultWindow is the span over which Rate averages when none is given.
const DefaultWindow = 10 * time.Second

type sample struct {
	t    time.Time
	done int64
}

// Rate estimates throughput over a moving time window from successive
// "bytes done so far" samples, and the time left to reach a total. It is
// safe for concurrent use.
type Rate struct {
	mu      sync.Mutex
	window  time.Duration
	now     func() time.Time
	samples []sample // oldest first; samples[0] may predate the window (anchor)
}

// NewRate returns a Rate averaging over window (DefaultWindow if <= 0)
// that reads time from now (time.Now if nil).
func NewRate(window time.Duration, now func() time.Time) *Rate {
	if window <= 0 {
		window = DefaultWindow
	}
	if now == nil {
		now = time.Now
	}
	return &Rate{window: window, now: now}
}

// Update records that done bytes are complete at the current time.
func (r *Rate) Update(done int64) { r.UpdateAt(r.now(), done) }

// UpdateAt records that done bytes were complete at time t. A sample older
// than the last one is ignored; a done value lower than the last one (the
// operation restarted) discards the history.
func (r *Rate) UpdateAt(t time.Time, done int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.samples); n > 0 {
		last := r.samples[n-1]
		if t.Before(last.t) {
			return
		}
		if done < last.done {
			r.samples = r.samples[:0]
		}
	}
	r.samples = append(r.samples, sample{t, done})
	// Keep one sample at or before the window start as the anchor, so the
	// average always spans the whole window once there is enough history.
	start := t.Add(-r.window)
	i := 0
	for i+1 < len(r.samples) && !r.samples[i+1].t.After(start) {
		i++
	}
	if i > 0 {
		r.samples = append(r.samples[:0], r.samples[i:]...)
	}
}

// Rate returns the throughput in bytes per second over the window, or 0
// when fewer than two samples or no time separates them.
func (r *Rate) Rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rateLocked()
}

func (r *Rate) rateLocked() float64 {
	n := len(r.samples)
	if n < 2 {
		return 0
	}
	first, last := r.samples[0], r.samples[n-1]
	dt := last.t.Sub(first.t).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.done-first.done) / dt
}

// Done returns the last recorded byte count.
func (r *Rate) Done() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return 0
	}
	return r.samples[len(r.samples)-1].done
}

// ETA returns the estimated time to reach total bytes at the current rate,
// rounded to the second. ok is false when the rate is unknown or zero.
// Reaching or passing total gives 0, true.
func (r *Rate) ETA(total int64) (eta time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return 0, false
	}
	left := total - r.samples[len(r.samples)-1].done
	if left <= 0 {
		return 0, true
	}
	rate := r.rateLocked()
	if rate <= 0 {
		return 0, false
	}
	secs := float64(left) / rate
	if secs > float64(math.MaxInt64/int64(time.Second)) {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)).Round(time.Second), true
}
