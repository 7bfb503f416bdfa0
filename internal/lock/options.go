package lock

import (
	"log/slog"
	"os"
	"time"
)

// Defaults for the lock timing.
const (
	DefaultRefreshInterval = 5 * time.Minute
	DefaultStaleAfter      = 30 * time.Minute
)

type config struct {
	wait       time.Duration
	now        func() time.Time
	refresh    time.Duration
	staleAfter time.Duration
	retryMin   time.Duration
	retryMax   time.Duration
	logger     *slog.Logger
	host       string
	pid        int
	pidAlive   func(int) bool
}

// Option configures Acquire, List and RemoveStale.
type Option func(*config)

// WithWait makes Acquire retry for up to d while the repository is locked.
func WithWait(d time.Duration) Option { return func(c *config) { c.wait = d } }

// WithClock replaces time.Now for lock timestamps and staleness (tests).
// Waiting and refresh ticks still use real time.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithRefreshInterval sets how often a held lock is rewritten.
func WithRefreshInterval(d time.Duration) Option { return func(c *config) { c.refresh = d } }

// WithStaleAfter sets how long an unrefreshed lock stays valid.
func WithStaleAfter(d time.Duration) Option { return func(c *config) { c.staleAfter = d } }

// WithRetryDelay sets the bounds of the randomised delay between attempts
// when waiting (default 100 ms growing to 5 s).
func WithRetryDelay(min, max time.Duration) Option {
	return func(c *config) { c.retryMin, c.retryMax = min, max }
}

// WithLogger logs ignored and removed stale locks and refresh failures.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithIdentity overrides the host name and PID written into new locks and
// used to judge staleness (tests, or a host name set in configuration).
func WithIdentity(host string, pid int) Option {
	return func(c *config) { c.host, c.pid = host, pid }
}

func newConfig(opts []Option) *config {
	host, _ := os.Hostname()
	c := &config{
		now:        time.Now,
		refresh:    DefaultRefreshInterval,
		staleAfter: DefaultStaleAfter,
		retryMin:   100 * time.Millisecond,
		retryMax:   5 * time.Second,
		logger:     slog.New(slog.DiscardHandler),
		host:       host,
		pid:        os.Getpid(),
		pidAlive:   pidAlive,
	}
	for _, o := range opts {
		o(c)
	}
	if c.refresh <= 0 {
		c.refresh = DefaultRefreshInterval
	}
	if c.staleAfter <= 0 {
		c.staleAfter = DefaultStaleAfter
	}
	if c.retryMin <= 0 {
		c.retryMin = time.Millisecond
	}
	if c.retryMax < c.retryMin {
		c.retryMax = c.retryMin
	}
	return c
}
