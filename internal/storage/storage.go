// Package storage defines the Backend interface through which kura stores
// every object of a repository, and the errors its implementations return.
//
// A Backend is a flat namespace of named, immutable objects. Names are
// slash-separated relative paths made of [a-z0-9._-] segments ("config",
// "chunks/ab/ab12…", "locks/…"). The repository layer above decides the
// names; backends never interpret them beyond the slashes.
//
// Guarantees every implementation must give (checked by storagetest.Run):
//
//   - Atomic put: a Put either makes the complete object visible under its
//     name or leaves the name as it was. A reader never sees a partial
//     object, even when the writing process is killed mid-way.
//   - Read-after-write: once Put returns nil, Get, Stat and List on any
//     handle to the same backend see the new object; once Delete returns
//     nil, they no longer see it.
//   - Put of an existing name replaces it atomically (content-addressed
//     callers rely on replacing an object with identical bytes being
//     harmless).
//   - Ranged reads return exactly the requested bytes or an error; a range
//     past the end is ErrRange.
//   - A missing object is reported as an error wrapping ErrNotFound.
//   - All methods are safe for concurrent use and honour ctx cancellation.
//
// These are the guarantees of a local POSIX filesystem (write to a temporary
// file, fsync, rename, fsync the directory) and of S3-compatible stores
// (single PUT, strong read-after-write consistency) alike.
package storage

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them with %w and add context.
var (
	// ErrNotFound means the named object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrRange means a ranged read asked for bytes past the object's end.
	ErrRange = errors.New("range outside object")
	// ErrInvalidName means the name is empty, absolute, contains "..", or
	// characters outside the allowed set.
	ErrInvalidName = errors.New("invalid object name")
	// ErrNoSpace means the backend is out of space; nothing was written.
	ErrNoSpace = errors.New("no space left in storage")
	// ErrRetained means the store refused to delete or overwrite an object
	// because its retention (S3 Object Lock) has not expired.
	ErrRetained = errors.New("object is locked by its retention")
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
	// RetainUntil is the object's retention date on a Retainer (set by
	// Stat; zero when the object has none or the backend keeps none).
	RetainUntil time.Time
}

// Backend stores immutable named objects. See the package documentation
// for the guarantees an implementation must give.
type Backend interface {
	// Put stores data under name, atomically replacing any previous object.
	Put(ctx context.Context, name string, data []byte) error
	// Get returns the whole object, in a buffer the caller owns (it may
	// change it). Put does not keep data either.
	Get(ctx context.Context, name string) ([]byte, error)
	// GetRange returns length bytes starting at offset (the caller owns
	// them).
	GetRange(ctx context.Context, name string, offset, length int64) ([]byte, error)
	// Stat returns the object's size and modification time.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List calls fn for every object whose name starts with prefix, in no
	// particular order. A non-nil error from fn stops the listing and is
	// returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object. Deleting a missing object returns an error
	// wrapping ErrNotFound.
	Delete(ctx context.Context, name string) error
	// Location describes the backend for humans ("local:/srv/kura").
	Location() string
	// Close releases resources held by the backend.
	Close() error
}

// BufferGetter is implemented by backends that can read an object into a
// buffer the caller reuses (the local backend), so that reading chunk
// after chunk allocates nothing. Callers fall back to Get otherwise.
type BufferGetter interface {
	// GetBuffer reads the whole object into buf[:0], or into a new buffer
	// when buf is too small, and returns it. Errors are as for Get.
	GetBuffer(ctx context.Context, name string, buf []byte) ([]byte, error)
}

// GetBuffer reads an object through be's BufferGetter when it has one,
// else with Get.
func GetBuffer(ctx context.Context, be Backend, name string, buf []byte) ([]byte, error) {
	if bg, ok := be.(BufferGetter); ok {
		return bg.GetBuffer(ctx, name, buf)
	}
	return be.Get(ctx, name)
}

// Syncer is implemented by backends whose Put may return before the object
// is durable (a local directory in batch mode). Sync makes every object put
// so far durable. The repository calls it before and after writing the
// manifest that commits a recovery point, so a point is never durable
// before the chunks it refers to. One sync per point instead of one per
// object is what Proxmox Backup Server calls the "filesystem" sync level.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Retainer is implemented by backends that can lock objects against
// deletion and overwrite until a date (S3 Object Lock in compliance mode).
// Stat reports an object's date in ObjectInfo.RetainUntil; Delete of an
// object whose date is in the future fails with ErrRetained.
type Retainer interface {
	// RetentionSupported reports whether the store can lock objects (an S3
	// bucket created with Object Lock enabled).
	RetentionSupported(ctx context.Context) (bool, error)
	// PutRetained is Put with a retention date set in the same request.
	PutRetained(ctx context.Context, name string, data []byte, until time.Time) error
	// ExtendRetention moves an object's retention date to until. A date
	// already later is left as it is: retention never shortens.
	ExtendRetention(ctx context.Context, name string, until time.Time) error
}

// RequestStats counts the requests a backend made since it was opened.
type RequestStats struct {
	Put       int64 `json:"put"`
	Get       int64 `json:"get"`
	Head      int64 `json:"head"`
	List      int64 `json:"list"`
	Delete    int64 `json:"delete"`
	Retention int64 `json:"retention"` // retention extensions
	Retries   int64 `json:"retries"`   // attempts repeated after a transient error
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
}

// Sub returns s minus o, field by field.
func (s RequestStats) Sub(o RequestStats) RequestStats {
	return RequestStats{Put: s.Put - o.Put, Get: s.Get - o.Get, Head: s.Head - o.Head, List: s.List - o.List,
		Delete: s.Delete - o.Delete, Retention: s.Retention - o.Retention, Retries: s.Retries - o.Retries,
		BytesUp: s.BytesUp - o.BytesUp, BytesDown: s.BytesDown - o.BytesDown}
}

// Total is the number of requests.
func (s RequestStats) Total() int64 {
	return s.Put + s.Get + s.Head + s.List + s.Delete + s.Retention
}

// Counter is implemented by backends that count their requests (S3).
type Counter interface {
	Requests() RequestStats
}

// Concurrent is implemented by backends whose requests may be bound by
// latency rather than by the CPU (S3): Concurrency, when positive, is how
// many requests the user wants in flight, and the repository runs up to
// that many chunk workers (at most 16).
type Concurrent interface {
	Concurrency() int
}

// Unhider is implemented by versioned stores (S3 buckets with Object
// Lock). In them a plain DELETE only adds a delete marker and a PUT a newer
// version: a locked version stays, hidden. Unhide makes the newest
// retained version of every object current again where newer unretained
// versions or delete markers hide it (by deleting those), and returns the
// names of the objects it brought back.
type Unhider interface {
	Unhide(ctx context.Context) ([]string, error)
}
