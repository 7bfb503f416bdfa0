package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/throttle"
)

// jumpClock's Sleep moves its time forward at once.
type jumpClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *jumpClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now, c.slept = c.now.Add(d), c.slept+d
	c.mu.Unlock()
	return ctx.Err()
}

// TestBackupThrottled: every byte the backup reads goes through the
// job's limiter; the points are unaffected.
func TestBackupThrottled(t *testing.T) {
	w := newWorld(t)
	a, b := w.addVM("a", 3*chunk), w.addVM("b", 2*chunk)
	w.write("a", "vda", 0, randBytes(1, 3*chunk))
	w.write("b", "vda", chunk/2, randBytes(2, chunk))
	const rate = 1e6
	sched, err := throttle.Config{Limit: rate}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	clk := &jumpClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	want := w.snapshot()
	rep := w.backup([]hypervisor.VM{a, b}, engine.BackupOptions{Throttle: throttle.NewLimiter(sched, clk)})
	var read int64
	for _, r := range rep.VMs {
		if r.Point == nil {
			t.Fatalf("%s: %s", r.VM, r.Error)
		}
		w.checkPoint(r.Point, want)
		read += r.Point.Stats.BytesRead
	}
	// The limiter earned rate × elapsed plus its 100 ms burst: it waited
	// for every byte beyond that.
	if min := time.Duration(float64(read-rate/10) / rate * float64(time.Second)); read == 0 || clk.slept < min {
		t.Fatalf("read %d bytes, the limiter waited %v, want at least %v", read, clk.slept, min)
	}
}
