package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/faulty"
	"github.com/kurabackup/kura/internal/storage/mem"
)

func mustAcquire(t *testing.T, be storage.Backend, kind Kind, opts ...Option) *Lock {
	t.Helper()
	l, err := Acquire(context.Background(), be, kind, map[string]string{"job": string(kind)}, opts...)
	if err != nil {
		t.Fatalf("acquire %s: %v", kind, err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

func countLocks(t *testing.T, be storage.Backend) int {
	t.Helper()
	infos, err := List(context.Background(), be)
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

func TestCompatibility(t *testing.T) {
	cases := []struct {
		held, want Kind
		ok         bool
	}{
		{Shared, Shared, true}, {Shared, GC, true}, {GC, Shared, true},
		{GC, GC, false}, {Shared, Exclusive, false}, {Exclusive, Shared, false},
		{GC, Exclusive, false}, {Exclusive, GC, false}, {Exclusive, Exclusive, false},
	}
	for _, tc := range cases {
		t.Run(string(tc.held)+"-then-"+string(tc.want), func(t *testing.T) {
			be := mem.New()
			held := mustAcquire(t, be, tc.held)
			l, err := Acquire(context.Background(), be, tc.want, nil)
			if tc.ok {
				if err != nil {
					t.Fatalf("acquire: %v", err)
				}
				if err := l.Release(context.Background()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("acquire: %v, want ErrLocked", err)
			}
			var le *LockedError
			if !errors.As(err, &le) || le.Holder.ID != held.ID() || le.Holder.Kind != tc.held {
				t.Fatalf("holder not reported: %v", err)
			}
			host, _ := os.Hostname()
			wantMsg := "repository is locked by " + string(tc.held) + " on host " + host + " pid "
			if !strings.HasPrefix(err.Error(), wantMsg) {
				t.Fatalf("message %q, want prefix %q", err, wantMsg)
			}
			if n := countLocks(t, be); n != 1 {
				t.Fatalf("failed acquire left its lock: %d locks", n)
			}
		})
	}
}

func TestObjectFormatAndRelease(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	l := mustAcquire(t, be, GC)
	if !nameRE.MatchString(Prefix + l.ID()) {
		t.Fatalf("lock id %q does not match the naming scheme", l.ID())
	}
	if err := l.Update(ctx, map[string]string{"phase": "sweep"}); err != nil {
		t.Fatal(err)
	}
	infos, err := List(ctx, be)
	if err != nil || len(infos) != 1 {
		t.Fatalf("list: %v %v", infos, err)
	}
	i := infos[0]
	if i.Kind != GC || i.PID != os.Getpid() || i.Data["phase"] != "sweep" || i.Stale || i.Created.IsZero() {
		t.Fatalf("info %+v", i)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := l.Update(ctx, nil); !errors.Is(err, ErrReleased) {
		t.Fatalf("update after release: %v", err)
	}
	if n := countLocks(t, be); n != 0 {
		t.Fatalf("%d locks after release", n)
	}
}

func TestWaitForRelease(t *testing.T) {
	be := mem.New()
	held := mustAcquire(t, be, Exclusive)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = held.Release(context.Background())
	}()
	start := time.Now()
	l, err := Acquire(context.Background(), be, Shared, nil, WithWait(5*time.Second), WithRetryDelay(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatalf("acquire with wait: %v", err)
	}
	defer l.Release(context.Background())
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("acquired before the holder released")
	}
	// A wait that runs out still fails with ErrLocked.
	_, err = Acquire(context.Background(), be, Exclusive, nil, WithWait(50*time.Millisecond), WithRetryDelay(10*time.Millisecond, 20*time.Millisecond))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("acquire with short wait: %v", err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestStaleByTime(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	clk := &fakeClock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	// Another host, so only time can make it stale.
	old := mustAcquire(t, be, Exclusive, WithClock(clk.now), WithIdentity("other-host", 1), WithRefreshInterval(time.Hour))
	if _, err := Acquire(ctx, be, Shared, nil, WithClock(clk.now)); !errors.Is(err, ErrLocked) {
		t.Fatalf("fresh lock ignored: %v", err)
	}
	clk.add(29 * time.Minute)
	if _, err := Acquire(ctx, be, Shared, nil, WithClock(clk.now)); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock 29 min old ignored: %v", err)
	}
	clk.add(2 * time.Minute)
	infos, err := List(ctx, be, WithClock(clk.now))
	if err != nil || len(infos) != 1 || !infos[0].Stale || !strings.Contains(infos[0].StaleReason, "not refreshed") {
		t.Fatalf("list: %+v %v", infos, err)
	}
	l := mustAcquire(t, be, Exclusive, WithClock(clk.now))
	// RemoveStale removes the old one only.
	removed, err := RemoveStale(ctx, be, WithClock(clk.now))
	if err != nil || len(removed) != 1 || removed[0].ID != old.ID() {
		t.Fatalf("remove stale: %+v %v", removed, err)
	}
	infos, _ = List(ctx, be, WithClock(clk.now))
	if len(infos) != 1 || infos[0].ID != l.ID() {
		t.Fatalf("after remove stale: %+v", infos)
	}
}

func TestStaleByDeadPID(t *testing.T) {
	ctx := context.Background()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	dead := cmd.Process.Pid
	host, _ := os.Hostname()
	be := mem.New()
	mustAcquire(t, be, Exclusive, WithIdentity(host, dead))
	infos, err := List(ctx, be)
	if err != nil || len(infos) != 1 || !infos[0].Stale || !strings.Contains(infos[0].StaleReason, "no longer exists") {
		t.Fatalf("lock of dead pid %d: %+v %v", dead, infos, err)
	}
	own := mustAcquire(t, be, Exclusive)
	// Taking it removed the dead process's lock: killed runs leave no pile.
	if infos, _ := List(ctx, be); len(infos) != 1 || infos[0].ID != own.ID() {
		t.Fatalf("after acquiring over a dead process's lock: %+v", infos)
	}

	// The same dead pid on another host is not judged.
	be2 := mem.New()
	mustAcquire(t, be2, Exclusive, WithIdentity("elsewhere", dead))
	if _, err := Acquire(ctx, be2, Shared, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("remote lock with unknown pid ignored: %v", err)
	}
	// A live process on this host keeps its lock.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	be3 := mem.New()
	mustAcquire(t, be3, Exclusive, WithIdentity(host, sleeper.Process.Pid))
	if _, err := Acquire(ctx, be3, Shared, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock of live pid ignored: %v", err)
	}
	// Once it exits (and is reaped or a zombie), the lock is stale.
	_ = sleeper.Process.Kill()
	_, _ = sleeper.Process.Wait()
	if _, err := Acquire(ctx, be3, Shared, nil); err != nil {
		t.Fatalf("lock of killed pid still honoured: %v", err)
	}
}

func TestRefresh(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := mustAcquire(t, be, Shared, WithClock(clk.now), WithRefreshInterval(20*time.Millisecond))
	clk.add(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for {
		infos, err := List(ctx, be, WithClock(clk.now))
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) == 1 && infos[0].Refreshed.Equal(clk.now()) && !infos[0].Stale {
			if infos[0].Data["job"] != "backup" {
				t.Fatalf("refresh lost data: %+v", infos[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock not refreshed: %+v", infos)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Someone removes the lock: the holder learns it is lost.
	if err := be.Delete(ctx, Prefix+l.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
		if !errors.Is(l.Err(), ErrLost) {
			t.Fatalf("err %v", l.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lost lock not reported")
	}
	if err := l.Update(ctx, nil); !errors.Is(err, ErrLost) {
		t.Fatalf("update of lost lock: %v", err)
	}
}

func TestUnreadableLockConflicts(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	if err := be.Put(ctx, Prefix+"gc-0123456789abcdef", []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(ctx, be, Shared, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("unreadable lock ignored: %v", err)
	}
	// It goes stale by its modification time.
	later := func() time.Time { return time.Now().Add(time.Hour) }
	if removed, err := RemoveStale(ctx, be, WithClock(later)); err != nil || len(removed) != 1 {
		t.Fatalf("remove stale unreadable: %v %v", removed, err)
	}
}

// TestRacingExclusive runs many simultaneous acquirers over a backend with
// latency (to widen the race window) and checks that at most one holds the
// lock at any time.
func TestRacingExclusive(t *testing.T) {
	be := faulty.New(mem.New(), faulty.Options{Latency: time.Millisecond})
	var active, maxActive, wins atomic.Int32
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for range 3 {
				l, err := Acquire(context.Background(), be, Exclusive, nil,
					WithWait(20*time.Second), WithRetryDelay(2*time.Millisecond, 40*time.Millisecond))
				if err != nil {
					t.Error(err)
					return
				}
				n := active.Add(1)
				for {
					m := maxActive.Load()
					if n <= m || maxActive.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
				active.Add(-1)
				wins.Add(1)
				if err := l.Release(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if maxActive.Load() != 1 || wins.Load() != 36 {
		t.Fatalf("max simultaneous holders %d (want 1), wins %d (want 36)", maxActive.Load(), wins.Load())
	}
	if n := countLocks(t, be); n != 0 {
		t.Fatalf("%d locks left", n)
	}
}

// TestRacingNoWait: in each round all acquirers start together without
// waiting; never more than one may win.
func TestRacingNoWait(t *testing.T) {
	for round := range 20 {
		be := faulty.New(mem.New(), faulty.Options{Latency: 500 * time.Microsecond})
		var winners atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				if l, err := Acquire(context.Background(), be, Exclusive, nil); err == nil {
					winners.Add(1)
					t.Cleanup(func() { _ = l.Release(context.Background()) })
				} else if !errors.Is(err, ErrLocked) {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		if w := winners.Load(); w > 1 {
			t.Fatalf("round %d: %d exclusive winners", round, w)
		}
		if n := countLocks(t, be); int32(n) != winners.Load() {
			t.Fatalf("round %d: %d lock objects for %d winners", round, n, winners.Load())
		}
	}
}
