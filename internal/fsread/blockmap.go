package fsread

import (
	"fmt"
	"io"
	"sort"
)

// blockMapper maps a file's logical block to a physical block. It returns
// the run length n (>= 1) of blocks from lblk that are contiguous (or all
// holes); ok is false for holes and unwritten extents.
type blockMapper interface {
	mapBlock(lblk uint64) (pblk, n uint64, ok bool, err error)
}

// extent is a run of logical blocks mapped to contiguous physical blocks.
type extent struct {
	lblk, pblk, n uint64
	unwritten     bool
}

// extentMap is a sorted, non-overlapping list of extents.
type extentMap []extent

func (m extentMap) sortAndCheck() error {
	sort.Slice(m, func(i, j int) bool { return m[i].lblk < m[j].lblk })
	for i := 1; i < len(m); i++ {
		if m[i-1].lblk+m[i-1].n > m[i].lblk {
			return fmt.Errorf("overlapping extents at block %d: %w", m[i].lblk, ErrCorrupt)
		}
	}
	return nil
}

func (m extentMap) mapBlock(lblk uint64) (uint64, uint64, bool, error) {
	i := sort.Search(len(m), func(i int) bool { return m[i].lblk+m[i].n > lblk })
	if i == len(m) {
		return 0, ^uint64(0) >> 1, false, nil // hole to end of file
	}
	e := m[i]
	if lblk < e.lblk {
		return 0, e.lblk - lblk, false, nil
	}
	d := lblk - e.lblk
	return e.pblk + d, e.n - d, !e.unwritten, nil
}

// blockReader reads file contents through a blockMapper; holes read as
// zeros and reads past size return io.EOF.
type blockReader struct {
	r    io.ReaderAt // the volume
	bs   int64       // block size in bytes
	m    blockMapper
	size int64
	// devBlocks bounds physical block numbers (volume size / bs).
	devBlocks uint64
}

func (b *blockReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset: %w", io.ErrUnexpectedEOF)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want := len(p)
	if rem := b.size - off; int64(want) > rem {
		want = int(rem)
	}
	done := 0
	for done < want {
		pos := off + int64(done)
		lblk := uint64(pos / b.bs)
		inBlk := pos % b.bs
		pblk, n, ok, err := b.m.mapBlock(lblk)
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, fmt.Errorf("empty block run at %d: %w", lblk, ErrCorrupt)
		}
		span := int64(want - done)
		if maxSpan := int64(n)*b.bs - inBlk; n < 1<<40 && maxSpan < span {
			span = maxSpan
		}
		chunk := p[done : done+int(span)]
		if !ok {
			clear(chunk)
		} else {
			need := uint64((inBlk + span + b.bs - 1) / b.bs)
			if pblk >= b.devBlocks || need > b.devBlocks-pblk {
				return done, fmt.Errorf("block %d beyond end of volume: %w", pblk, ErrCorrupt)
			}
			if _, err := b.r.ReadAt(chunk, int64(pblk)*b.bs+inBlk); err != nil {
				return done, fmt.Errorf("read block %d: %w", pblk, err)
			}
		}
		done += int(span)
	}
	if want < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// maxFileExtents bounds the extent list of one file (memory on corrupt
// block maps).
const maxFileExtents = 1 << 22

// extents lists the file's mapped runs (holes and unwritten extents are
// left out), merging physically contiguous neighbours.
func (b *blockReader) extents() ([]Extent, error) {
	var out []Extent
	add := func(lblk, pblk, n uint64) error {
		off := int64(lblk) * b.bs
		if off >= b.size {
			return nil
		}
		l := min(int64(n)*b.bs, b.size-off)
		phys := int64(pblk) * b.bs
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == off && out[k].Phys+out[k].Len == phys {
			out[k].Len += l
			return nil
		}
		if len(out) >= maxFileExtents {
			return fmt.Errorf("more than %d extents: %w", maxFileExtents, ErrCorrupt)
		}
		out = append(out, Extent{Off: off, Len: l, Phys: phys})
		return nil
	}
	if m, ok := b.m.(extentMap); ok {
		for _, e := range m {
			if !e.unwritten {
				if err := add(e.lblk, e.pblk, e.n); err != nil {
					return nil, err
				}
			}
		}
		return out, nil
	}
	nblocks := uint64((b.size + b.bs - 1) / b.bs)
	for lblk := uint64(0); lblk < nblocks; {
		pblk, n, ok, err := b.m.mapBlock(lblk)
		if err != nil {
			return nil, err
		}
		n = max(n, 1)
		if ok {
			if err := add(lblk, pblk, min(n, nblocks-lblk)); err != nil {
				return nil, err
			}
		}
		if n > nblocks-lblk {
			break
		}
		lblk += n
	}
	return out, nil
}
