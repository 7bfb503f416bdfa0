package diskwrite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment O_DIRECT needs for offsets, lengths and
// buffer addresses (the logical block size is at most 4 KiB).
const directAlign = 4096

// directPiece is the largest single O_DIRECT write (one pooled buffer).
const directPiece = 4 << 20

// rawFile writes a raw image directly: a sparse file, pwrite for data,
// hole punching for zeros. Aligned writes bypass the page cache
// (O_DIRECT), which measured about twice as fast here as buffered writes
// followed by fsync; unaligned ones (the image's last block) are buffered.
type rawFile struct {
	f      *os.File
	direct *os.File // nil where O_DIRECT is not supported (tmpfs)
	pool   sync.Pool
}

func createRaw(path string, size int64) (*rawFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create raw image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("create raw image: %w", err)
	}
	r := &rawFile{f: f}
	if d, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		r.direct = d
	}
	r.pool.New = func() any {
		b := make([]byte, directPiece+directAlign)
		skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
		b = b[skip : skip+directPiece : skip+directPiece]
		return &b
	}
	return r, nil
}

func (r *rawFile) writeAt(_ context.Context, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if r.direct == nil || off%directAlign != 0 || len(p)%directAlign != 0 {
		_, err := r.f.WriteAt(p, off)
		return err
	}
	if uintptr(unsafe.Pointer(&p[0]))%directAlign == 0 {
		// Aligned already (chunk buffers are): no copy.
		_, err := r.direct.WriteAt(p, off)
		if errors.Is(err, unix.EINVAL) { // alignment rules stricter than assumed
			_, err = r.f.WriteAt(p, off)
		}
		return err
	}
	bp := r.pool.Get().(*[]byte)
	defer r.pool.Put(bp)
	buf := *bp
	for len(p) > 0 {
		n := copy(buf, p)
		if _, err := r.direct.WriteAt(buf[:n], off); err != nil {
			if errors.Is(err, unix.EINVAL) { // alignment rules stricter than assumed
				_, err = r.f.WriteAt(p[:n], off)
			}
			if err != nil {
				return err
			}
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (r *rawFile) zero(_ context.Context, off, length int64) error {
	err := unix.Fallocate(int(r.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// No hole punching here: write zeros (correct, not thin).
		for length > 0 {
			n := min(length, int64(len(zeroBlock)))
			if _, err := r.f.WriteAt(zeroBlock[:n], off); err != nil {
				return err
			}
			off, length = off+n, length-n
		}
		return nil
	}
	return err
}

func (r *rawFile) finish(context.Context) error {
	err := r.f.Sync()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	if r.direct != nil {
		r.direct.Close()
	}
	return err
}

func (r *rawFile) kill() {
	r.f.Close()
	if r.direct != nil {
		r.direct.Close()
	}
}
