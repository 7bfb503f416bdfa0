package throttle

import (
	"context"
	"io"
	"sync"
	"time"
)

// Clock is the time a Limiter follows; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// Sleep waits d, or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Burst is how much a Limiter lets through at once after being idle: 100 ms
// at the current rate, at least minBurst.
const (
	burstTime = 100 * time.Millisecond
	minBurst  = 64 << 10
)

// Limiter is a token bucket whose rate follows a Schedule. Callers take
// bytes with Wait before reading them; a take larger than the bucket runs
// it into debt that later takes wait for, so reads of any size are served
// in order of arrival at the current rate. It is safe for concurrent use.
type Limiter struct {
	clock Clock

	mu     sync.Mutex
	sched  *Schedule
	rate   Rate      // in effect since last
	until  time.Time // when rate may change
	last   time.Time // tokens are accounted up to here
	tokens float64   // may be negative (debt)
	filled float64   // tokens added in all, the measure waiters wait on
	epoch  uint64    // bumped when an unlimited period starts: waiters go
}

// NewLimiter returns a limiter following s (nil: unlimited) on clock (nil:
// the real clock).
func NewLimiter(s *Schedule, clock Clock) *Limiter {
	if clock == nil {
		clock = realClock{}
	}
	l := &Limiter{clock: clock}
	l.SetSchedule(s)
	return l
}

// SetSchedule switches to another schedule (a configuration reload).
func (l *Limiter) SetSchedule(s *Schedule) {
	if s == nil {
		s = Unlimited()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.sched != nil {
		l.advance(now)
	}
	l.sched, l.last = s, now
	l.setRate(s.At(now))
}

// Rate returns the rate in effect now (0: unlimited).
func (l *Limiter) Rate() Rate {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(l.clock.Now())
	return l.rate
}

func burst(r Rate) float64 { return max(float64(r)*burstTime.Seconds(), minBurst) }

// setRate starts a period at rate r lasting until u.
func (l *Limiter) setRate(r Rate, u time.Time) {
	switch {
	case r == 0:
		l.epoch++
		l.tokens = 0
	case l.rate == 0:
		l.tokens = burst(r) // coming out of unlimited: a full bucket
	default:
		l.tokens = min(l.tokens, burst(r))
	}
	l.rate, l.until = r, u
}

// advance accounts the tokens earned from l.last to now, period by period.
func (l *Limiter) advance(now time.Time) {
	for l.last.Before(now) {
		end := now
		if l.until.Before(end) {
			end = l.until
		}
		if l.rate != 0 {
			add := float64(l.rate) * end.Sub(l.last).Seconds()
			l.filled += add
			l.tokens = min(l.tokens+add, burst(l.rate))
		}
		l.last = end
		if !l.last.Before(l.until) {
			l.setRate(l.sched.At(l.last))
		}
	}
}

// Wait takes n bytes, waiting as long as the current rate requires, and
// returns early with ctx's error. Bytes of a cancelled wait stay taken, so
// the limit is never exceeded. Unlimited, it returns at once.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	if n <= 0 {
		return ctx.Err()
	}
	l.mu.Lock()
	now := l.clock.Now()
	l.advance(now)
	if l.rate == 0 {
		l.mu.Unlock()
		return nil
	}
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		l.mu.Unlock()
		return nil
	}
	target, epoch := l.filled-l.tokens, l.epoch
	for {
		need := target - l.filled
		if need <= 0 || l.epoch != epoch || l.rate == 0 {
			l.mu.Unlock()
			return nil
		}
		d := time.Duration(need/float64(l.rate)*float64(time.Second)) + 1
		if left := l.until.Sub(now); left < d {
			d = left // the rate changes then: look again
		}
		l.mu.Unlock()
		if err := l.clock.Sleep(ctx, d); err != nil {
			return err
		}
		l.mu.Lock()
		now = l.clock.Now()
		l.advance(now)
	}
}

// ReaderAt returns r with every read limited by l. ctx bounds the waits
// (io.ReaderAt has no context): a read waiting when ctx is done fails with
// ctx's error. The result is safe for concurrent use if r is.
func (l *Limiter) ReaderAt(ctx context.Context, r io.ReaderAt) io.ReaderAt {
	return &readerAt{l: l, ctx: ctx, r: r}
}

type readerAt struct {
	l   *Limiter
	ctx context.Context
	r   io.ReaderAt
}

func (t *readerAt) ReadAt(p []byte, off int64) (int, error) {
	if err := t.l.Wait(t.ctx, len(p)); err != nil {
		return 0, err
	}
	return t.r.ReadAt(p, off)
}
