package instant

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/kurabackup/kura/internal/nbd"
	"github.com/kurabackup/kura/internal/repo"
)

// streams is how many sequential readers an export tracks for read-ahead
// (a guest's block layer, a copy over several connections...).
const streams = 16

// aheadChunks is how far ahead of a sequential stream chunks are fetched.
const aheadChunks = 8

// diskExport serves one disk of a point: reads come from the repository
// through a DiskReader (decoded chunk cache); chunks that are all zeros in
// the index are holes. A read that continues one of the recent streams
// (within a chunk of where it ended) starts fetching the chunks after it.
type diskExport struct {
	d  *repo.DiskReader
	x  *repo.Index
	cs int64

	mu   sync.Mutex
	ends [streams]int64 // where recent streams stopped
	next int
}

var (
	_ nbd.Export     = (*diskExport)(nil)
	_ nbd.Prefetcher = (*diskExport)(nil)
)

func newDiskExport(d *repo.DiskReader) *diskExport {
	e := &diskExport{d: d, x: d.Index(), cs: int64(d.Index().ChunkSize)}
	for i := range e.ends {
		e.ends[i] = -1
	}
	return e
}

func (e *diskExport) Size() int64 { return e.x.Size }

// sequential records a read of n bytes at off and reports whether it
// continues a recent stream.
func (e *diskExport) sequential(off, n int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, end := range e.ends {
		if end >= 0 && off >= end-e.cs && off <= end+e.cs {
			e.ends[i] = max(end, off+n)
			return true
		}
	}
	e.ends[e.next] = off + n
	e.next = (e.next + 1) % streams
	return false
}

func (e *diskExport) ReadAt(ctx context.Context, p []byte, off int64) error {
	if e.sequential(off, int64(len(p))) {
		e.d.Prefetch(off+int64(len(p)), aheadChunks*e.cs)
	}
	n, err := e.d.ReadAtContext(ctx, p, off)
	if n < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read at offset %d: %w", off, err)
	}
	return nil
}

// maxExtents bounds the extents of one Allocation answer.
const maxExtents = 4096

func (e *diskExport) Allocation(_ context.Context, off, length int64) ([]nbd.Extent, error) {
	var out []nbd.Extent
	end := min(off+length, e.x.Size)
	for pos := off; pos < end && len(out) < maxExtents; {
		i := pos / e.cs
		next := min((i+1)*e.cs, e.x.Size)
		var fl uint32
		if e.x.Digests[i].IsZero() {
			fl = nbd.StateHole | nbd.StateZero
		}
		if k := len(out); k > 0 && out[k-1].Flags == fl {
			out[k-1].Length += next - pos
		} else {
			out = append(out, nbd.Extent{Offset: pos, Length: next - pos, Flags: fl})
		}
		pos = next
	}
	return out, nil
}

func (e *diskExport) Prefetch(off, length int64) { e.d.Prefetch(off, length) }
