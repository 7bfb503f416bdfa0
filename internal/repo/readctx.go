package repo

import (
	"context"
	"errors"
	"io"
)

// ReadAtContext is ReadAt for callers with their own deadline: it stops
// between chunks once ctx ends. Chunks are fetched for the reader (a
// cancelled call never fails another one waiting for the same chunk).
func (d *DiskReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= d.x.Size {
		return 0, io.EOF
	}
	want := len(p)
	if rem := d.x.Size - off; int64(want) > rem {
		p = p[:rem]
	}
	cs := int64(d.x.ChunkSize)
	d.mu.Lock()
	if off == d.lastEnd {
		d.seqRun += int64(len(p))
	} else {
		d.seqRun = int64(len(p))
	}
	d.lastEnd = off + int64(len(p))
	run := d.seqRun
	d.mu.Unlock()
	// Read ahead only once a whole chunk has been read sequentially (small
	// neighbouring reads of metadata are not a stream), as many chunks as
	// have been read so far, up to ahead.
	if run >= cs && d.ahead > 0 {
		d.prefetch(int((off+int64(len(p))+cs-1)/cs), min(d.ahead, int(run/cs)))
	}
	n := 0
	for n < len(p) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		pos := off + int64(n)
		i := int(pos / cs)
		data, err := d.chunk(d.ctx, i)
		if err != nil {
			return n, err
		}
		in := int(pos - int64(i)*cs)
		end := min(len(p)-n, d.x.ChunkLen(i)-in)
		if data == nil {
			clear(p[n : n+end])
		} else {
			copy(p[n:n+end], data[in:in+end])
		}
		n += end
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Prefetch starts fetching the chunks overlapping [off, off+length) into
// the cache in the background, as many at once as the read-ahead allows;
// cached, pending and all-zero chunks are skipped. It returns at once.
func (d *DiskReader) Prefetch(off, length int64) {
	if off < 0 || length <= 0 || off >= d.x.Size {
		return
	}
	cs := int64(d.x.ChunkSize)
	d.prefetchRange(int(off/cs), int((min(off+length, d.x.Size)+cs-1)/cs))
}
