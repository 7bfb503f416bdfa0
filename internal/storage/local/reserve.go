package local

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultReserve is the space Options.Reserve usually sets aside.
const DefaultReserve = 4 << 20

// reserveName is the reserve file, in the backend's private tmp dir.
const reserveName = "reserve"

func (b *Backend) reservePath() string { return filepath.Join(b.dir, tmpDir, reserveName) }

// ensureReserve (re)creates the reserve file when the backend keeps one and
// it is missing; it fails quietly when there is no space for it yet.
func (b *Backend) ensureReserve() {
	if b.reserve <= 0 || !b.reserveMissing.Load() {
		return
	}
	p := b.reservePath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, b.reserve)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
		return
	}
	b.reserveMissing.Store(false)
}

// releaseReserve frees the reserve so that an object the caller deems
// vital (Options.ReserveFor) can be written on a full filesystem. It
// reports whether there was a reserve to free.
func (b *Backend) releaseReserve() bool {
	if b.reserve <= 0 {
		return false
	}
	err := os.Remove(b.reservePath())
	b.reserveMissing.Store(true)
	return err == nil
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
