package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// startWriteback is the size from which a batch-mode Put starts the
// object's writeback at once (chunks; not locks and small metadata).
const startWriteback = 64 << 10

// Put writes data to a temporary file, fsyncs it and renames it over name,
// then fsyncs the directory holding name.
func (b *Backend) Put(ctx context.Context, name string, data []byte) error {
	p, err := b.path(ctx, "put", name)
	if err != nil {
		return err
	}
	tmp, err := b.writeTemp(data)
	if isNoSpace(err) && b.reserveFor != nil && b.reserveFor(name) && b.releaseReserve() {
		tmp, err = b.writeTemp(data)
	}
	if err != nil {
		return mapErr("put", name, err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("local: put %q: %w", name, err)
	}
	if err := b.rename(tmp, p); err != nil {
		os.Remove(tmp)
		return mapErr("put", name, err)
	}
	return nil
}

// writeTemp stores data in a new file under <dir>/tmp and returns its path.
// On error the file is removed.
func (b *Backend) writeTemp(data []byte) (string, error) {
	dir := filepath.Join(b.dir, tmpDir)
	f, err := os.CreateTemp(dir, "put-*")
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		f, err = os.CreateTemp(dir, "put-*")
	}
	if err != nil {
		return "", err
	}
	err = b.writeData(f, data)
	switch {
	case err != nil:
	case b.sync:
		err = f.Sync()
	case b.batch && len(data) >= startWriteback:
		// Start writing it out now (asynchronously): the Sync that
		// commits a point then finds little left to write, instead of
		// everything the backup stored.
		_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// rename moves tmp to p, creating missing parent directories, and makes the
// result durable.
func (b *Backend) rename(tmp, p string) error {
	parent := filepath.Dir(p)
	err := os.Rename(tmp, p)
	if errors.Is(err, syscall.ENOENT) {
		if err = b.mkdirAll(parent); err != nil {
			return err
		}
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return err
	}
	if b.sync {
		return syncDir(parent)
	}
	return nil
}

// mkdirAll creates dir and its missing ancestors below b.dir, fsyncing each
// parent that gained an entry so the new path survives a crash.
func (b *Backend) mkdirAll(dir string) error {
	if dir == b.dir {
		return nil
	}
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return syscall.ENOTDIR
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if err := b.mkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if b.sync {
		return syncDir(parent)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// CleanTemp removes temporary files older than olderThan from <dir>/tmp:
// leftovers of writers that were killed between writing and renaming.
// A running Put's file is younger than any sensible olderThan (1 h).
func (b *Backend) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	dir := filepath.Join(b.dir, tmpDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("local: clean temp: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("local: clean temp: %w", err)
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(cutoff) || e.Name() == reserveName {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("local: clean temp: %w", err)
		}
		n++
	}
	return n, nil
}
