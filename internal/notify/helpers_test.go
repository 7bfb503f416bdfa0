package notify_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
	"github.com/kurabackup/kura/internal/testenv"
)

// testNow is the notifiers' clock in tests.
var testNow = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

// fastRetry keeps retries short in tests.
var fastRetry = notify.RetryPolicy{MaxAttempts: 4, InitialDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}

// results collects a Notifier's OnResult calls.
type results struct {
	mu   sync.Mutex
	list []notify.Result
	more chan struct{}
}

func (r *results) add(x notify.Result) {
	r.mu.Lock()
	r.list = append(r.list, x)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *results) all() []notify.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Result(nil), r.list...)
}

// wait returns the results once there are at least n (within a minute).
func (r *results) wait(t *testing.T, n int) []notify.Result {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		if l := r.all(); len(l) >= n {
			return l
		}
		select {
		case <-r.more:
		case <-timeout:
			t.Fatalf("%d results, want %d: %+v", len(r.all()), n, r.all())
		}
	}
}

// start makes a Notifier with test defaults (clock, host name, fast
// retries) and closes it at cleanup.
func start(t *testing.T, cfg notify.Config, opts notify.Options) (*notify.Notifier, *results) {
	t.Helper()
	res := &results{more: make(chan struct{}, 1)}
	opts.OnResult = res.add
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	if opts.Hostname == "" {
		opts.Hostname = "kura-test.example"
	}
	if opts.Retry == (notify.RetryPolicy{}) {
		opts.Retry = fastRetry
	}
	n, err := notify.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n, res
}

func startExim(t *testing.T) *notifytest.Exim {
	t.Helper()
	return notifytest.StartExim(t, testenv.NeedTool(t, "exim4"))
}
