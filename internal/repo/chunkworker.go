package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/kurabackup/kura/internal/storage"
)

func maxProcs() int { return runtime.GOMAXPROCS(0) }

// zeroBuf is a read-only buffer of zeros, as large as the largest chunk.
var zeroBuf = make([]byte, MaxChunkSize)

func isZero(p []byte) bool { return bytes.Equal(p, zeroBuf[:len(p)]) }

// chunkWorker owns the buffers of one pipeline worker: memory per worker
// is about three chunk sizes, whatever the disk size.
type chunkWorker struct {
	w       *Writer
	buf     []byte // plaintext window
	scratch []byte // compressed payload
	env     []byte // sealed envelope
}

func newChunkWorker(w *Writer, cs int) *chunkWorker {
	return &chunkWorker{w: w, buf: make([]byte, cs), scratch: make([]byte, 0, cs+cs/8), env: make([]byte, 0, cs+cs/8)}
}

// do reads window [a,b) (only its Data and Unchanged parts), then hashes,
// deduplicates and stores it, writing its digest to *out.
func (c *chunkWorker) do(ctx context.Context, r io.ReaderAt, segs []Extent, a, b int64, out *Digest, st *DiskStats) error {
	p := c.buf[:b-a]
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
			return fmt.Errorf("read disk at offset %d: %w", s.Offset, err)
		}
		st.BytesRead += int64(n)
	}
	if isZero(p) {
		*out = ZeroDigest
		st.BytesZero += int64(len(p))
		return nil
	}
	d := c.w.r.codec.digest(p)
	*out = d
	known, err := c.w.known(ctx, d)
	if err != nil {
		return err
	}
	if known {
		st.BytesReused += int64(len(p))
		st.ChunksReused++
		return nil
	}
	name := chunkName(d)
	c.env, c.scratch, err = c.w.r.codec.seal(c.env[:0], c.scratch, typeChunk, name, p)
	if err != nil {
		return err
	}
	if err := c.w.put(ctx, name, c.env); err != nil {
		c.w.forget(d)
		return putError(name, err)
	}
	if c.w.ret != nil {
		c.w.ret.note(c.w.ret.until, &d)
	}
	st.BytesNew += int64(len(p))
	st.BytesStored += int64(len(c.env))
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
