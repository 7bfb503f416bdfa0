// Package faulty wraps a storage.Backend and injects failures, for tests of
// the layers above: failed puts (the Nth one, or every one under a prefix),
// failed gets and deletes under a prefix, running out of space after a
// byte budget, latency on every call, and silently corrupted bytes returned
// by Get/GetRange for chosen objects (what verify must detect).
//
// With zero Options the wrapper is transparent and passes the storage
// conformance suite. Faults can be changed while the backend is in use
// with SetOptions, Corrupt and Heal.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// ErrInjected is the error returned by injected failures other than
// out-of-space.
var ErrInjected = errors.New("injected fault")

// Options selects the faults to inject. The zero value injects nothing.
type Options struct {
	// FailPutN makes the Nth call to Put (1-based, counting every call
	// since creation or the last SetOptions) fail with ErrInjected
	// without storing anything. 0 disables.
	FailPutN int
	// FailPutPrefix makes every Put of a name with this prefix fail.
	// Empty disables.
	FailPutPrefix string
	// FailGetPrefix makes Get, GetRange and Stat of names with this prefix
	// fail. Empty disables.
	FailGetPrefix string
	// FailDeletePrefix makes Delete of names with this prefix fail. Empty
	// disables.
	FailDeletePrefix string
	// FailList makes every List fail.
	FailList bool
	// NoSpaceAfter, when positive, lets Puts store at most this many bytes
	// in total; a Put that would go past it fails with storage.ErrNoSpace
	// and stores nothing.
	NoSpaceAfter int64
	// Latency is added before every call (honouring ctx).
	Latency time.Duration
	// Corrupt lists objects whose bytes are altered on Get and GetRange
	// (the stored object is left intact).
	Corrupt []string
}

// Stats counts calls that reached the wrapper.
type Stats struct {
	Puts, Gets, Deletes, Lists int
	PutBytes                   int64
	Injected                   int
}

// Backend is a storage.Backend with injected faults.
type Backend struct {
	inner storage.Backend

	mu      sync.Mutex
	opts    Options
	corrupt map[string]bool
	puts    int // Put calls since last SetOptions
	stats   Stats
}

var _ storage.Backend = (*Backend)(nil)

// New wraps inner.
func New(inner storage.Backend, opts Options) *Backend {
	b := &Backend{inner: inner}
	b.SetOptions(opts)
	return b
}

// SetOptions replaces the faults and resets the Put counter used by
// FailPutN and the byte budget of NoSpaceAfter.
func (b *Backend) SetOptions(opts Options) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opts = opts
	b.puts = 0
	b.stats.PutBytes = 0
	b.corrupt = make(map[string]bool, len(opts.Corrupt))
	for _, n := range opts.Corrupt {
		b.corrupt[n] = true
	}
}

// Corrupt makes Get and GetRange of name return altered bytes.
func (b *Backend) Corrupt(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.corrupt[name] = true
}

// Heal undoes Corrupt.
func (b *Backend) Heal(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.corrupt, name)
}

// Stats returns the call counters.
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Inner returns the wrapped backend.
func (b *Backend) Inner() storage.Backend { return b.inner }

func (b *Backend) delay(ctx context.Context) error {
	b.mu.Lock()
	d := b.opts.Latency
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func injected(op, name, why string) error {
	return fmt.Errorf("faulty: %s %q (%s): %w", op, name, why, ErrInjected)
}

// Put stores data unless a put fault applies.
func (b *Backend) Put(ctx context.Context, name string, data []byte) error {
	if err := b.delay(ctx); err != nil {
		return fmt.Errorf("faulty: put %q: %w", name, err)
	}
	b.mu.Lock()
	b.puts++
	b.stats.Puts++
	var err error
	switch {
	case b.opts.FailPutN > 0 && b.puts == b.opts.FailPutN:
		err = injected("put", name, fmt.Sprintf("put #%d", b.puts))
	case b.opts.FailPutPrefix != "" && strings.HasPrefix(name, b.opts.FailPutPrefix):
		err = injected("put", name, "prefix "+b.opts.FailPutPrefix)
	case b.opts.NoSpaceAfter > 0 && b.stats.PutBytes+int64(len(data)) > b.opts.NoSpaceAfter:
		err = fmt.Errorf("faulty: put %q: %d of %d bytes used: %w", name, b.stats.PutBytes, b.opts.NoSpaceAfter, storage.ErrNoSpace)
	default:
		b.stats.PutBytes += int64(len(data))
	}
	if err != nil {
		b.stats.Injected++
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if err := b.inner.Put(ctx, name, data); err != nil {
		b.mu.Lock()
		b.stats.PutBytes -= int64(len(data))
		b.mu.Unlock()
		return err
	}
	return nil
}

// readFault counts a read and reports whether it must fail and whether the
// returned bytes must be corrupted.
func (b *Backend) readFault(op, name string) (corrupt bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Gets++
	if b.opts.FailGetPrefix != "" && strings.HasPrefix(name, b.opts.FailGetPrefix) {
		b.stats.Injected++
		return false, injected(op, name, "prefix "+b.opts.FailGetPrefix)
	}
	return b.corrupt[name], nil
}

// flip alters data in place: one bit near the middle and the last byte,
// so both short and long reads are damaged.
func flip(data []byte) {
	if len(data) == 0 {
		return
	}
	data[len(data)/2] ^= 0x10
	data[len(data)-1] ^= 0x01
}

// Get returns the object, altered if it is marked corrupt.
func (b *Backend) Get(ctx context.Context, name string) ([]byte, error) {
	if err := b.delay(ctx); err != nil {
		return nil, fmt.Errorf("faulty: get %q: %w", name, err)
	}
	corrupt, err := b.readFault("get", name)
	if err != nil {
		return nil, err
	}
	data, err := b.inner.Get(ctx, name)
	if err == nil && corrupt {
		flip(data)
	}
	return data, err
}

// GetRange returns the range, altered if the object is marked corrupt.
func (b *Backend) GetRange(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	if err := b.delay(ctx); err != nil {
		return nil, fmt.Errorf("faulty: get range %q: %w", name, err)
	}
	corrupt, err := b.readFault("get range", name)
	if err != nil {
		return nil, err
	}
	data, err := b.inner.GetRange(ctx, name, offset, length)
	if err == nil && corrupt {
		flip(data)
	}
	return data, err
}

// Stat passes through unless a get fault applies.
func (b *Backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := b.delay(ctx); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("faulty: stat %q: %w", name, err)
	}
	if _, err := b.readFault("stat", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	return b.inner.Stat(ctx, name)
}

// List passes through unless FailList is set.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := b.delay(ctx); err != nil {
		return fmt.Errorf("faulty: list %q: %w", prefix, err)
	}
	b.mu.Lock()
	b.stats.Lists++
	fail := b.opts.FailList
	if fail {
		b.stats.Injected++
	}
	b.mu.Unlock()
	if fail {
		return injected("list", prefix, "list fault")
	}
	return b.inner.List(ctx, prefix, fn)
}

// Delete passes through unless a delete fault applies.
func (b *Backend) Delete(ctx context.Context, name string) error {
	if err := b.delay(ctx); err != nil {
		return fmt.Errorf("faulty: delete %q: %w", name, err)
	}
	b.mu.Lock()
	b.stats.Deletes++
	var err error
	if b.opts.FailDeletePrefix != "" && strings.HasPrefix(name, b.opts.FailDeletePrefix) {
		b.stats.Injected++
		err = injected("delete", name, "prefix "+b.opts.FailDeletePrefix)
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.inner.Delete(ctx, name)
}

// Location returns "faulty(<inner location>)".
func (b *Backend) Location() string { return "faulty(" + b.inner.Location() + ")" }

// Close closes the inner backend.
func (b *Backend) Close() error { return b.inner.Close() }
