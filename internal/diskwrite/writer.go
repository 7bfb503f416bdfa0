package diskwrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Sentinel errors.
var (
	// ErrExists means the target file exists and Options.Overwrite is off.
	ErrExists = errors.New("disk image already exists")
	// ErrFormat means the target format is not qcow2, raw or vmdk.
	ErrFormat = errors.New("unsupported disk image format")
	// ErrRange means a write falls outside the image.
	ErrRange = errors.New("write beyond the image size")
	// ErrClosed means the Writer was committed or aborted.
	ErrClosed = errors.New("disk writer closed")
	// ErrTool means qemu-img or qemu-nbd failed or is missing.
	ErrTool = errors.New("qemu tool failed")
)

// PartialSuffix is appended to the target path while the image is written.
const PartialSuffix = ".kura-partial"

// Target is an image to create.
type Target struct {
	Path   string // final path
	Format string // "qcow2", "raw" or "vmdk" (monolithicSparse)
	Size   int64  // virtual size in bytes
	// Mode is the image's permission bits. Zero: those of the file being
	// replaced at Path, else 0600 (guest data is private).
	Mode fs.FileMode
}

// Options tune Create.
type Options struct {
	// Overwrite replaces an existing file at the target path (at Commit).
	Overwrite bool
	Logger    *slog.Logger
	// ScratchDir holds qemu-nbd's socket (default: the system temp dir).
	ScratchDir string
	// Rewrite says ranges may be written more than once (or zeroed after
	// being written). Off (the default), the image is known fresh: zero
	// ranges are skipped instead of written.
	Rewrite bool
	// RawViaNBD writes raw images through qemu-nbd too instead of pwrite
	// (slower; for comparison).
	RawViaNBD bool
	// Cache is qemu-nbd's --cache mode: "writeback" (default) or "none".
	Cache string
}

// Stats counts what a Writer did.
type Stats struct {
	DataBytes    int64 // bytes sent to the image
	SkippedBytes int64 // zero bytes not written (left unallocated)
	ZeroedBytes  int64 // bytes explicitly zeroed (Rewrite mode)
}

// backend is how bytes reach the image.
type backend interface {
	writeAt(ctx context.Context, p []byte, off int64) error
	zero(ctx context.Context, off, length int64) error
	// finish flushes and releases the image; the file is complete after.
	finish(ctx context.Context) error
	// kill releases everything without caring for the data.
	kill()
}

// Writer writes one image. Its methods are safe for concurrent use.
type Writer struct {
	t       Target
	partial string
	opts    Options
	log     *slog.Logger
	be      backend
	gran    int64 // zero-detection granularity

	mu     sync.RWMutex // held for reading by writes, for writing to close
	closed bool

	data, skipped, zeroed atomic.Int64
}

// Create creates the image under "<path>.kura-partial" and opens it for
// writing. It fails with ErrExists when the target exists and
// opts.Overwrite is off. A stale partial file of an interrupted restore is
// replaced.
func Create(ctx context.Context, t Target, opts Options) (*Writer, error) {
	if t.Format != "qcow2" && t.Format != "raw" && t.Format != "vmdk" {
		return nil, fmt.Errorf("create %s: %w: %q", t.Path, ErrFormat, t.Format)
	}
	if t.Size <= 0 || !filepath.IsAbs(t.Path) {
		return nil, fmt.Errorf("create %q: need an absolute path and a positive size (%d)", t.Path, t.Size)
	}
	fi, err := os.Lstat(t.Path)
	switch {
	case err == nil && !opts.Overwrite:
		return nil, fmt.Errorf("create %s: %w", t.Path, ErrExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("create %s: %w", t.Path, err)
	case t.Mode == 0 && err == nil && fi.Mode().IsRegular():
		t.Mode = fi.Mode().Perm()
	case t.Mode == 0:
		t.Mode = 0o600
	}
	w := &Writer{t: t, partial: t.Path + PartialSuffix, opts: opts, log: opts.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if err := os.Remove(w.partial); err == nil {
		w.log.Info("removed partial image of an interrupted restore", "path", w.partial)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create %s: %w", t.Path, err)
	}
	switch {
	case t.Format == "raw" && !opts.RawViaNBD:
		w.gran = 4 << 10
		w.be, err = createRaw(w.partial, t.Size)
	case t.Format == "vmdk":
		w.gran = 64 << 10 // the grain
		w.be, err = createVMDK(w.partial, t.Path, t.Size)
	default:
		w.gran = 64 << 10 // qcow2 default cluster size
		w.be, err = startNBD(ctx, w.partial, t, opts, w.log)
	}
	if err == nil {
		if err = os.Chmod(w.partial, t.Mode.Perm()); err != nil {
			w.be.kill()
		}
	}
	if err != nil {
		os.Remove(w.partial)
		return nil, err
	}
	w.log.Debug("disk image created", "path", w.partial, "format", t.Format, "size", t.Size)
	return w, nil
}

// DataBytes is the number of bytes sent to the image so far (it makes a
// Writer a hypervisor.DiskSink).
func (w *Writer) DataBytes() int64 { return w.data.Load() }

// Size is the image's virtual size.
func (w *Writer) Size() int64 { return w.t.Size }

// Stats returns the counters so far.
func (w *Writer) Stats() Stats {
	return Stats{DataBytes: w.data.Load(), SkippedBytes: w.skipped.Load(), ZeroedBytes: w.zeroed.Load()}
}

func (w *Writer) check(off, n int64) error {
	if w.closed {
		return ErrClosed
	}
	if off < 0 || n < 0 || off > w.t.Size || n > w.t.Size-off {
		return fmt.Errorf("%s: offset %d length %d: %w %d", w.t.Path, off, n, ErrRange, w.t.Size)
	}
	return nil
}

var zeroBlock = make([]byte, 64<<10)

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// WriteAt writes p at off. Blocks of p that are all zeros are not written
// on a fresh image (they stay unallocated) and zeroed otherwise.
func (w *Writer) WriteAt(ctx context.Context, p []byte, off int64) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if err := w.check(off, int64(len(p))); err != nil {
		return err
	}
	// Walk p in blocks aligned to image offsets; coalesce runs.
	runStart, runZero := 0, false
	flush := func(end int) error {
		if end == runStart {
			return nil
		}
		o, seg := off+int64(runStart), p[runStart:end]
		if runZero {
			return w.zeroLocked(ctx, o, int64(len(seg)))
		}
		if err := w.be.writeAt(ctx, seg, o); err != nil {
			return fmt.Errorf("write %s at %d: %w", w.t.Path, o, err)
		}
		w.data.Add(int64(len(seg)))
		return nil
	}
	for i := 0; i < len(p); {
		next := int((off+int64(i))/w.gran*w.gran + w.gran - off)
		next = min(next, len(p))
		z := isZero(p[i:next])
		if i > runStart && z != runZero {
			if err := flush(i); err != nil {
				return err
			}
			runStart = i
		}
		runZero = z
		i = next
	}
	return flush(len(p))
}

// Zero makes [off, off+length) read as zeros, leaving it unallocated. On
// a fresh image (Options.Rewrite off) it does nothing.
func (w *Writer) Zero(ctx context.Context, off, length int64) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if err := w.check(off, length); err != nil {
		return err
	}
	return w.zeroLocked(ctx, off, length)
}

func (w *Writer) zeroLocked(ctx context.Context, off, length int64) error {
	if !w.opts.Rewrite {
		w.skipped.Add(length)
		return nil
	}
	if err := w.be.zero(ctx, off, length); err != nil {
		return fmt.Errorf("zero %s at %d+%d: %w", w.t.Path, off, length, err)
	}
	w.zeroed.Add(length)
	return nil
}

// Commit makes the image durable and gives it its final name: flush,
// disconnect, stop qemu-nbd, fsync the file, rename it over the target
// path, fsync the directory. On error the partial file is removed.
func (w *Writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	err := w.be.finish(ctx)
	if err == nil {
		err = syncFile(w.partial)
	}
	if err == nil && !w.opts.Overwrite {
		// Link fails if the target appeared meanwhile; rename would not.
		err = os.Link(w.partial, w.t.Path)
		switch {
		case err == nil:
			err = os.Remove(w.partial)
		case errors.Is(err, fs.ErrExist):
			err = fmt.Errorf("%s: %w", w.t.Path, ErrExists)
		default: // no hard links on this filesystem
			if _, serr := os.Lstat(w.t.Path); serr == nil {
				err = fmt.Errorf("%s: %w", w.t.Path, ErrExists)
			} else {
				err = os.Rename(w.partial, w.t.Path)
			}
		}
	} else if err == nil {
		err = os.Rename(w.partial, w.t.Path)
	}
	if err == nil {
		err = syncFile(filepath.Dir(w.t.Path))
	}
	if err != nil {
		w.be.kill()
		os.Remove(w.partial)
		return fmt.Errorf("commit %s: %w", w.t.Path, err)
	}
	st := w.Stats()
	w.log.Info("disk image written", "path", w.t.Path, "format", w.t.Format,
		"data", st.DataBytes, "skipped_zero", st.SkippedBytes, "zeroed", st.ZeroedBytes)
	return nil
}

// Abort stops writing and deletes the partial image. It does nothing after
// Commit, so `defer w.Abort(ctx)` is safe.
func (w *Writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.be.kill()
	if err := os.Remove(w.partial); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("abort %s: %w", w.t.Path, err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
