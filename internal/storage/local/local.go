// Package local is the storage.Backend for a directory of a local POSIX
// filesystem, kura's default repository store.
//
// Object "a/b/c" is the file <dir>/a/b/c. A Put writes the bytes to a new
// temporary file in <dir>/tmp (same filesystem), fsyncs it, renames it over
// the final name (creating parent directories as needed) and fsyncs the
// parent directory, so a reader never sees a partial object and a
// completed Put survives a crash. Temporary files left by killed writers
// are removed by CleanTemp. The first name segment "tmp" is therefore
// reserved and rejected as an invalid object name.
//
// With Options.Direct, the bulk of objects of 1 MiB and more is written
// with O_DIRECT, past the page cache, on local block-device filesystems.
//
// Out-of-space conditions (ENOSPC, EDQUOT) are reported as
// storage.ErrNoSpace after removing the temporary file, so nothing is left
// behind.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kurabackup/kura/internal/storage"
)

const tmpDir = "tmp"

// Options tune a Backend. The zero value is the safe default.
type Options struct {
	// NoSync skips fsync of object data and directories. Puts are still
	// atomic (rename), but objects written shortly before a power loss or
	// kernel crash may be lost. Only for tests and scratch repositories.
	NoSync bool
	// Batch skips the fsync of each object but makes everything durable
	// when Sync is called (one syncfs of the filesystem). The repository
	// syncs before committing each recovery point, so a power loss never
	// leaves a point whose chunks are not on disk. This is the fast mode
	// kura uses for local repositories.
	Batch bool
	// Reserve sets this many bytes aside (a preallocated file in the
	// private tmp dir) so that the objects ReserveFor names can still be
	// written when the filesystem is full: a gc lock, without which the
	// space could never be freed. The reserve is released when such a
	// Put meets a full filesystem and taken again once there is room.
	Reserve int64
	// ReserveFor says which objects may use the reserve.
	ReserveFor func(name string) bool
	// Direct writes the bulk of objects of 1 MiB and more (chunks) with
	// O_DIRECT, past the page cache, on filesystems of local block
	// devices (ext4, xfs, btrfs, f2fs) that accept it.
	Direct bool
}

// Backend stores objects as files under a directory.
type Backend struct {
	dir    string
	sync   bool // fsync each object
	batch  bool // syncfs on Sync
	direct bool // O_DIRECT for large objects
	// directOff is set once the filesystem refused O_DIRECT (tmpfs, some
	// FUSE filesystems): objects are then written through the page cache.
	directOff atomic.Bool

	reserve        int64
	reserveFor     func(string) bool
	reserveMissing atomic.Bool
}

var (
	_ storage.Backend      = (*Backend)(nil)
	_ storage.BufferGetter = (*Backend)(nil)
)

// Open returns a backend for dir with default options (fsync on).
// The directory must exist.
func Open(dir string) (*Backend, error) {
	return OpenOptions(dir, Options{})
}

// OpenOptions is Open with options.
func OpenOptions(dir string, opts Options) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local: open %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("local: open: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("local: open %q: not a directory", abs)
	}
	b := &Backend{dir: abs, sync: !opts.NoSync && !opts.Batch, batch: opts.Batch && !opts.NoSync,
		direct: opts.Direct && directCapable(abs), reserve: opts.Reserve, reserveFor: opts.ReserveFor}
	if b.reserve > 0 {
		if _, err := os.Stat(b.reservePath()); err != nil {
			b.reserveMissing.Store(true)
			b.ensureReserve()
		}
	}
	return b, nil
}

// Dir returns the backend's absolute root directory.
func (b *Backend) Dir() string { return b.dir }

// Location returns "local:<absolute dir>".
func (b *Backend) Location() string { return "local:" + b.dir }

// Close does nothing: the backend holds no open files between calls.
func (b *Backend) Close() error { return nil }

// path validates name and returns its file path.
func (b *Backend) path(ctx context.Context, op, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("local: %s %q: %w", op, name, err)
	}
	if err := storage.ValidName(name); err != nil {
		return "", fmt.Errorf("local: %s: %w", op, err)
	}
	if name == tmpDir || strings.HasPrefix(name, tmpDir+"/") {
		return "", fmt.Errorf("local: %s %q: reserved name: %w", op, name, storage.ErrInvalidName)
	}
	return filepath.Join(b.dir, filepath.FromSlash(name)), nil
}

// mapErr wraps err with the storage sentinel it corresponds to.
func mapErr(op, name string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("local: %s %q: %w: %w", op, name, storage.ErrNotFound, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("local: %s %q: %w: %w", op, name, storage.ErrNoSpace, err)
	}
	return fmt.Errorf("local: %s %q: %w", op, name, err)
}

// openObject opens a regular file for reading; directories are reported
// as not found.
func openObject(p string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, syscall.EISDIR
	}
	return f, fi, nil
}

// Get reads the whole object.
func (b *Backend) Get(ctx context.Context, name string) ([]byte, error) {
	return b.GetBuffer(ctx, name, nil)
}

// GetBuffer reads the whole object into buf (storage.BufferGetter).
func (b *Backend) GetBuffer(ctx context.Context, name string, buf []byte) ([]byte, error) {
	p, err := b.path(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	f, fi, err := openObject(p)
	if err != nil {
		return nil, mapErr("get", name, err)
	}
	defer f.Close()
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("local: get %q: %w", name, err)
	}
	return buf, nil
}

// GetRange reads length bytes at offset with pread.
func (b *Backend) GetRange(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	p, err := b.path(ctx, "get range", name)
	if err != nil {
		return nil, err
	}
	f, fi, err := openObject(p)
	if err != nil {
		return nil, mapErr("get range", name, err)
	}
	defer f.Close()
	size := fi.Size()
	if offset < 0 || length < 0 || offset > size || length > size-offset {
		return nil, fmt.Errorf("local: get range %q [%d,+%d) of %d bytes: %w", name, offset, length, size, storage.ErrRange)
	}
	buf := make([]byte, length)
	if _, err := f.ReadAt(buf, offset); err != nil && !(errors.Is(err, io.EOF) && length == 0) {
		return nil, fmt.Errorf("local: get range %q: %w", name, err)
	}
	return buf, nil
}

// Stat returns the file's size and modification time.
func (b *Backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	p, err := b.path(ctx, "stat", name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = syscall.EISDIR
	}
	if err != nil {
		return storage.ObjectInfo{}, mapErr("stat", name, err)
	}
	return storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete unlinks the object's file. Empty parent directories are kept:
// removing them would race with concurrent Puts into them.
func (b *Backend) Delete(ctx context.Context, name string) error {
	p, err := b.path(ctx, "delete", name)
	if err != nil {
		return err
	}
	// unlink(2) refuses directories (EISDIR), unlike os.Remove.
	if err := syscall.Unlink(p); err != nil {
		return mapErr("delete", name, err)
	}
	b.ensureReserve() // space was freed: take the reserve again if it was used
	return nil
}

var errNotDir = syscall.ENOTDIR

// Sync implements storage.Syncer: in batch mode it flushes the whole
// filesystem holding the repository (syncfs); otherwise objects are already
// durable and it does nothing.
func (b *Backend) Sync(ctx context.Context) error {
	if !b.batch {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(b.dir)
	if err != nil {
		return fmt.Errorf("local: sync: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return mapErr("sync", b.dir, err)
	}
	return nil
}
