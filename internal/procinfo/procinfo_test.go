package procinfo

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestStartAndAlive(t *testing.T) {
	self := Self()
	if self == 0 {
		t.Fatal("Self() = 0 for a running process")
	}
	if !Alive(os.Getpid(), self) || !Alive(os.Getpid(), 0) {
		t.Error("this process is not alive")
	}
	if Alive(os.Getpid(), self+1) {
		t.Error("a different start time names the same process")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	if Alive(cmd.Process.Pid, 0) {
		t.Errorf("exited process %d is alive", cmd.Process.Pid)
	}
	if Start(-1) != 0 || Start(0) != 0 {
		t.Error("Start of an invalid pid is not 0")
	}
}

// The share is the idle part of the jiffies of the last period; unknown
// before one ended and when /proc/stat cannot be read.
func TestIdleSamplerShare(t *testing.T) {
	type stat struct {
		idle, total uint64
		ok          bool
	}
	seq := []stat{{100, 1000, true}, {150, 1100, true}, {150, 1100, true}, {0, 0, false}, {400, 1300, true}}
	s := newIdleSampler(time.Millisecond, func() (uint64, uint64, bool) {
		st := seq[0]
		seq = seq[1:]
		return st.idle, st.total, st.ok
	})
	if got := s.Idle(); got != -1 {
		t.Fatalf("before a period: %v", got)
	}
	time.Sleep(2 * time.Millisecond)
	for i, want := range []float64{0.5, 0.5, -1} { // no jiffies passed: the last share stays
		if got := s.Idle(); got != want {
			t.Errorf("sample %d: %v, want %v", i, got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if got := s.Idle(); got != -1 { // a failed read is no start of a period
		t.Errorf("after a failed read: %v, want -1", got)
	}
}

// Spinning every CPU for a period leaves little idle time, whatever else
// runs on the machine.
func TestIdleSamplerBusy(t *testing.T) {
	s := NewIdleSampler(100 * time.Millisecond)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
			}
		}()
	}
	wg.Wait()
	if busy := s.Idle(); busy < 0 || busy > 0.3 {
		t.Fatalf("idle share %.2f while every CPU spun", busy)
	}
}
