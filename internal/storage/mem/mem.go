// Package mem is an in-memory storage.Backend. It keeps every object in a
// map guarded by a mutex and gives all the guarantees of the storage
// package, so tests of higher layers can use it in place of a real store.
// Nothing is persisted.
package mem

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

type object struct {
	data    []byte
	modTime time.Time
}

// Backend is an in-memory storage.Backend. The zero value is not usable;
// call New.
type Backend struct {
	mu      sync.RWMutex
	objects map[string]object
	closed  bool
}

var _ storage.Backend = (*Backend)(nil)

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{objects: make(map[string]object)}
}

func (b *Backend) check(ctx context.Context, op, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: %s %q: %w", op, name, err)
	}
	if err := storage.ValidName(name); err != nil {
		return fmt.Errorf("mem: %s: %w", op, err)
	}
	return nil
}

// Put stores a copy of data under name.
func (b *Backend) Put(ctx context.Context, name string, data []byte) error {
	if err := b.check(ctx, "put", name); err != nil {
		return err
	}
	cp := make([]byte, len(data))
	copy(cp, data)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("mem: put %q: backend closed", name)
	}
	b.objects[name] = object{data: cp, modTime: time.Now()}
	return nil
}

func (b *Backend) lookup(op, name string) (object, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return object{}, fmt.Errorf("mem: %s %q: backend closed", op, name)
	}
	o, ok := b.objects[name]
	if !ok {
		return object{}, fmt.Errorf("mem: %s %q: %w", op, name, storage.ErrNotFound)
	}
	return o, nil
}

// Get returns a copy of the whole object.
func (b *Backend) Get(ctx context.Context, name string) ([]byte, error) {
	if err := b.check(ctx, "get", name); err != nil {
		return nil, err
	}
	o, err := b.lookup("get", name)
	if err != nil {
		return nil, err
	}
	cp := make([]byte, len(o.data))
	copy(cp, o.data)
	return cp, nil
}

// GetRange returns a copy of length bytes starting at offset.
func (b *Backend) GetRange(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	if err := b.check(ctx, "get range", name); err != nil {
		return nil, err
	}
	o, err := b.lookup("get range", name)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if offset < 0 || length < 0 || offset > size || length > size-offset {
		return nil, fmt.Errorf("mem: get range %q [%d,+%d) of %d bytes: %w", name, offset, length, size, storage.ErrRange)
	}
	cp := make([]byte, length)
	copy(cp, o.data[offset:offset+length])
	return cp, nil
}

// Stat returns the object's size and the time it was put.
func (b *Backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := b.check(ctx, "stat", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	o, err := b.lookup("stat", name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List calls fn for every object whose name starts with prefix. It works
// on a snapshot taken at the start, so fn may call other methods of b.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: list %q: %w", prefix, err)
	}
	if err := storage.ValidPrefix(prefix); err != nil {
		return fmt.Errorf("mem: list: %w", err)
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return fmt.Errorf("mem: list %q: backend closed", prefix)
	}
	var infos []storage.ObjectInfo
	for name, o := range b.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, storage.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	b.mu.RUnlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object.
func (b *Backend) Delete(ctx context.Context, name string) error {
	if err := b.check(ctx, "delete", name); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("mem: delete %q: backend closed", name)
	}
	if _, ok := b.objects[name]; !ok {
		return fmt.Errorf("mem: delete %q: %w", name, storage.ErrNotFound)
	}
	delete(b.objects, name)
	return nil
}

// Location returns "mem:" followed by the backend's address, so two
// backends are told apart in logs.
func (b *Backend) Location() string { return fmt.Sprintf("mem:%p", b) }

// Close drops every object; later calls fail.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.objects = nil
	return nil
}

// Len returns the number of stored objects (for tests).
func (b *Backend) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.objects)
}
