package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/kurabackup/kura/internal/storage"
)

func maxProcs() int { return runtime.GOMAXPROCS(0) }

// zeroBuf is a read-only block of zeros (small: a heap object as large as
// a chunk would count against the garbage collector's goal).
var zeroBuf = make([]byte, 64<<10)

func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBuf))
		if !bytes.Equal(p[:n], zeroBuf[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// Pipeline of a disk write (WriteDisk): the planner hands the windows to
// read, in disk order, to readers (fetchReaders of them, so several reads
// are in flight: NBD exports and object stores answer faster with a few
// requests outstanding); a reader fills a plaintext buffer and queues it;
// storers (the repository's workers) hash, deduplicate, compress, seal
// and upload. Buffers come from the Writer's pools, shared by concurrent
// WriteDisk calls, so memory is bounded per Writer whatever the number and
// size of disks: (plain + envelope buffers) × chunk size.

// fetchReaders is the number of windows read at once per disk.
const fetchReaders = 8

// bufPool hands out at most max buffers of one size, allocated on first
// use and reused.
type bufPool struct {
	size int
	free chan []byte
	mu   sync.Mutex
	made int
}

func newBufPool(size, max int) *bufPool {
	return &bufPool{size: size, free: make(chan []byte, max)}
}

// get returns a buffer of length size, waiting for one to be put back
// when max are out.
func (p *bufPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b, nil
	default:
	}
	p.mu.Lock()
	if p.made < cap(p.free) {
		p.made++
		p.mu.Unlock()
		return make([]byte, p.size), nil
	}
	p.mu.Unlock()
	select {
	case b := <-p.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (p *bufPool) put(b []byte) { p.free <- b[:cap(b)] }

// window is one chunk window read, waiting to be stored.
type window struct {
	i    int
	a, b int64
	buf  []byte // plaintext of [a,b), from the plain pool
}

// readWindow reads window [a,b) (only its Data and Unchanged parts) into
// p, zero-filling the rest, and returns the bytes read from r.
func readWindow(r io.ReaderAt, segs []Extent, a int64, p []byte) (int64, error) {
	var read int64
	for _, s := range segs {
		dst := p[s.Offset-a : s.Offset-a+s.Length]
		if s.Kind == ExtentZero || s.Kind == ExtentUnchangedZero {
			clear(dst)
			continue
		}
		n, err := r.ReadAt(dst, s.Offset)
		if n < len(dst) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return read, fmt.Errorf("read disk at offset %d: %w", s.Offset, err)
		}
		read += int64(n)
	}
	return read, nil
}

// store hashes, deduplicates and stores plaintext p, writing its digest to
// *out. cpuBound says reads are ahead of the storers (CompressAuto uses
// the fastest level then). release is called once p is no longer needed,
// before the upload.
func (w *Writer) store(ctx context.Context, p []byte, out *Digest, st *DiskStats, cpuBound bool, release func()) error {
	var once sync.Once
	done := func() { once.Do(release) }
	defer done()
	if isZero(p) {
		*out = ZeroDigest
		st.BytesZero += int64(len(p))
		return nil
	}
	d := w.r.codec.digest(p)
	*out = d
	known, err := w.known(ctx, d)
	if err != nil {
		return err
	}
	if known {
		st.BytesReused += int64(len(p))
		st.ChunksReused++
		return nil
	}
	name := chunkName(d)
	env, err := w.envs.get(ctx)
	if err != nil {
		w.forget(d)
		return err
	}
	defer func() { w.envs.put(env) }()
	env, err = w.r.codec.sealWith(w.r.codec.compressor(w.compression, cpuBound), env[:0], typeChunk, name, p)
	if err != nil {
		w.forget(d)
		return err
	}
	n := int64(len(p))
	done()
	if err := w.put(ctx, name, env); err != nil {
		w.forget(d)
		return putError(name, err)
	}
	if w.ret != nil {
		w.ret.note(w.ret.until, &d)
	}
	st.BytesNew += n
	st.BytesStored += int64(len(env))
	st.ChunksNew++
	return nil
}

// putError explains a failed Put; a full repository gets advice.
func putError(name string, err error) error {
	if errors.Is(err, storage.ErrNoSpace) {
		return fmt.Errorf("write %s: %w: free space, or delete old points (kura prune) and run kura gc; "+
			"nothing of this backup was committed", name, err)
	}
	return fmt.Errorf("write %s: %w", name, err)
}

func (w *Writer) forget(d Digest) {
	w.mu.Lock()
	delete(w.seen, d)
	w.mu.Unlock()
}
