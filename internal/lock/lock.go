package lock

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// Errors.
var (
	// ErrLocked means a conflicting lock is held. Acquire returns a
	// *LockedError wrapping it that names the holder.
	ErrLocked = errors.New("repository is locked")
	// ErrLost means a held lock was removed by someone else or could not
	// be refreshed in time.
	ErrLost = errors.New("lock lost")
	// ErrReleased is returned by Update after Release.
	ErrReleased = errors.New("lock released")
)

// Lock is a held repository lock.
type Lock struct {
	be  storage.Backend
	cfg *config
	id  string

	mu          sync.Mutex
	rec         record
	released    bool
	lastRefresh time.Time // real time of the last successful write
	err         error     // why the lock was lost

	stop chan struct{}
	done chan struct{}
	lost chan struct{}
}

// ID returns the lock's identifier (its object name without "locks/").
func (l *Lock) ID() string { return l.id }

// Lost is closed when the lock is lost; Err then says why.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err returns why the lock was lost, or nil.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func newID(kind Kind) string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return string(kind) + "-" + hex.EncodeToString(b[:])
}

// Acquire takes a lock of the given kind. data is free-form context stored
// in the lock (job, VM, user). See the package documentation for the
// protocol.
func Acquire(ctx context.Context, be storage.Backend, kind Kind, data map[string]string, opts ...Option) (*Lock, error) {
	if !kind.valid() {
		return nil, fmt.Errorf("lock: unknown kind %q", kind)
	}
	c := newConfig(opts)
	deadline := time.Now().Add(c.wait)
	delay := c.retryMin
	for {
		l, err := try(ctx, be, kind, data, c)
		if err == nil {
			go l.refresher()
			return l, nil
		}
		if !errors.Is(err, ErrLocked) {
			return nil, err
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return nil, err
		}
		sleep := min(delay/2+rand.N(delay), remaining)
		delay = min(delay*2, c.retryMax)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock: acquire %s: %w (last: %w)", kind, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// try makes one attempt: write own lock, then look for conflicts.
func try(ctx context.Context, be storage.Backend, kind Kind, data map[string]string, c *config) (*Lock, error) {
	now := c.now()
	l := &Lock{
		be: be, cfg: c, id: newID(kind),
		rec:  record{Kind: kind, Host: c.host, PID: c.pid, Created: now, Refreshed: now, Data: maps.Clone(data)},
		stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{}),
	}
	if err := l.write(ctx); err != nil {
		return nil, fmt.Errorf("lock: acquire %s: %w", kind, err)
	}
	infos, err := readAll(ctx, be, c)
	var dead []Info
	if err == nil {
		for _, i := range infos {
			if i.ID != l.id && i.Stale && i.Host == c.host && i.PID > 0 && !c.pidAlive(i.PID) {
				dead = append(dead, i)
			}
			if i.ID == l.id || !kind.Conflicts(i.Kind) {
				continue
			}
			if i.Stale {
				c.logger.Warn("ignoring stale lock", "id", i.ID, "kind", i.Kind, "host", i.Host, "pid", i.PID, "reason", i.StaleReason)
				continue
			}
			err = &LockedError{Holder: i}
			break
		}
	}
	if err == nil {
		// Locks of processes that died on this host are certainly stale:
		// remove them, so that killed runs leave nothing to pile up.
		for _, i := range dead {
			if derr := be.Delete(ctx, Prefix+i.ID); derr == nil {
				c.logger.Info("removed lock of a dead process", "id", i.ID, "kind", i.Kind, "pid", i.PID)
			}
		}
	}
	if err != nil {
		// Remove our object even if ctx was cancelled meanwhile.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if derr := be.Delete(dctx, Prefix+l.id); derr != nil && !errors.Is(derr, storage.ErrNotFound) {
			return nil, fmt.Errorf("lock: acquire %s: %w (and removing own lock %s failed: %w)", kind, err, l.id, derr)
		}
		return nil, err
	}
	return l, nil
}

// write stores l.rec; callers hold l.mu or own l exclusively.
func (l *Lock) write(ctx context.Context) error {
	buf, err := json.Marshal(l.rec)
	if err != nil {
		return err
	}
	if err := l.be.Put(ctx, Prefix+l.id, buf); err != nil {
		return err
	}
	l.lastRefresh = time.Now()
	return nil
}

// Update atomically rewrites the lock object with new data (and a new
// refresh time).
func (l *Lock) Update(ctx context.Context, data map[string]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.released:
		return fmt.Errorf("lock: update %s: %w", l.id, ErrReleased)
	case l.err != nil:
		return fmt.Errorf("lock: update %s: %w", l.id, l.err)
	}
	l.rec.Data = maps.Clone(data)
	l.rec.Refreshed = l.cfg.now()
	if err := l.write(ctx); err != nil {
		return fmt.Errorf("lock: update %s: %w", l.id, err)
	}
	return nil
}

// Release stops refreshing and deletes the lock object. Releasing twice,
// or releasing a lock someone else already removed, is not an error.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	close(l.stop)
	l.mu.Unlock()
	<-l.done
	if err := l.be.Delete(ctx, Prefix+l.id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("lock: release %s: %w", l.id, err)
	}
	return nil
}

func (l *Lock) refresher() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.refresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if l.refresh() {
				return
			}
		}
	}
}

// refresh rewrites the lock with a new time. It reports true when the lock
// is lost and refreshing must end.
func (l *Lock) refresh() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.refresh)
	defer cancel()
	_, err := l.be.Stat(ctx, Prefix+l.id)
	if errors.Is(err, storage.ErrNotFound) {
		return l.markLost(fmt.Errorf("%w: object %s%s was removed", ErrLost, Prefix, l.id))
	}
	if err == nil {
		l.rec.Refreshed = l.cfg.now()
		err = l.write(ctx)
	}
	if err == nil {
		return false
	}
	l.cfg.logger.Warn("lock refresh failed", "id", l.id, "err", err)
	if time.Since(l.lastRefresh) >= l.cfg.staleAfter {
		return l.markLost(fmt.Errorf("%w: not refreshed for %s: %w", ErrLost, l.cfg.staleAfter, err))
	}
	return false
}

func (l *Lock) markLost(err error) bool {
	l.err = err
	close(l.lost)
	l.cfg.logger.Error("repository lock lost", "id", l.id, "err", err)
	return true
}
