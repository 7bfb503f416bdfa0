package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

func (x *xfsFS) readlink(_ context.Context, n *node) (string, error) {
	in := n.impl.(*xfsInode)
	if n.size > 1024 || n.size < 0 {
		return "", fmt.Errorf("xfs symlink length %d: %w", n.size, ErrCorrupt)
	}
	if in.format == xfsFmtLocal {
		if n.size > int64(len(in.fork)) {
			return "", fmt.Errorf("xfs symlink fork too short: %w", ErrCorrupt)
		}
		return string(in.fork[:n.size]), nil
	}
	m, err := x.extents(in.fork, in.format, in.nextent)
	if err != nil {
		return "", err
	}
	// Remote symlink blocks carry a 56-byte header on v5 filesystems.
	hdr := int64(0)
	if x.sb.v5 {
		hdr = 56
	}
	out := make([]byte, 0, n.size)
	for lblk := uint64(0); int64(len(out)) < n.size; lblk++ {
		pblk, _, ok, err := m.mapBlock(lblk)
		if err != nil || !ok {
			return "", fmt.Errorf("xfs symlink block %d unmapped: %w", lblk, ErrCorrupt)
		}
		b := make([]byte, x.sb.blockSize)
		if _, err := x.meta.ReadAt(b, int64(pblk)*x.sb.blockSize); err != nil {
			return "", fmt.Errorf("read symlink block: %w", err)
		}
		if x.sb.v5 && string(b[:4]) != "XSLM" {
			return "", fmt.Errorf("xfs symlink block magic: %w", ErrCorrupt)
		}
		out = append(out, b[hdr:min(int64(len(b)), hdr+n.size-int64(len(out)))]...)
	}
	return string(out), nil
}

func (x *xfsFS) list(ctx context.Context, dir *node) ([]dirent, error) {
	in := dir.impl.(*xfsInode)
	if in.format == xfsFmtLocal {
		return parseXFSShortDir(in.fork, x.sb.ftype)
	}
	m, err := x.extents(in.fork, in.format, in.nextent)
	if err != nil {
		return nil, err
	}
	br := &blockReader{r: x.meta, bs: x.sb.blockSize, m: m, size: xfsDirLeafOffset,
		devBlocks: uint64(x.size / x.sb.blockSize)}
	dbs := x.sb.blockSize << x.sb.dirBlkLog
	buf := make([]byte, dbs)
	var out []dirent
	visited := map[int64]bool{}
	// Visit each directory block that has a mapped extent below the leaf
	// offset; holes are skipped.
	for _, e := range m {
		if e.unwritten {
			continue
		}
		start := int64(e.lblk) * x.sb.blockSize
		end := start + int64(e.n)*x.sb.blockSize
		for off := start - start%dbs; off < end && off < xfsDirLeafOffset; off += dbs {
			if visited[off] {
				continue // block spans two extents and was read already
			}
			visited[off] = true
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if _, err := br.ReadAt(buf, off); err != nil && err != io.EOF {
				return nil, err
			}
			ents, err := parseXFSDataBlock(buf, x.sb.v5, x.sb.ftype)
			if err != nil {
				return nil, fmt.Errorf("xfs directory inode %d block at %d: %w", dir.ino, off, err)
			}
			out = append(out, ents...)
		}
	}
	return out, nil
}

// parseXFSShortDir decodes a short-form (inode-local) directory.
func parseXFSShortDir(b []byte, ftype bool) ([]dirent, error) {
	if len(b) < 6 {
		return nil, fmt.Errorf("xfs short dir too small: %w", ErrCorrupt)
	}
	count, i8 := int(b[0]), b[1] != 0
	if i8 {
		count = int(b[1])
	}
	inoLen := 4
	if i8 {
		inoLen = 8
	}
	readIno := func(p []byte) uint64 {
		if inoLen == 8 {
			return binary.BigEndian.Uint64(p)
		}
		return uint64(binary.BigEndian.Uint32(p))
	}
	p := 2 + inoLen
	if p > len(b) {
		return nil, fmt.Errorf("xfs short dir header: %w", ErrCorrupt)
	}
	out := []dirent{{name: "..", ino: readIno(b[2:])}}
	for i := 0; i < count; i++ {
		if p >= len(b) {
			return nil, fmt.Errorf("xfs short dir entry %d truncated: %w", i, ErrCorrupt)
		}
		nameLen := int(b[p])
		need := 3 + nameLen + inoLen
		if ftype {
			need++
		}
		if nameLen == 0 || p+need > len(b) {
			return nil, fmt.Errorf("xfs short dir entry %d length: %w", i, ErrCorrupt)
		}
		name := string(b[p+3 : p+3+nameLen])
		out = append(out, dirent{name: name, ino: readIno(b[p+need-inoLen:])})
		p += need
	}
	return out, nil
}

// parseXFSDataBlock decodes the entries of one directory data block
// (block-format "XD2B"/"XDB3" or data "XD2D"/"XDD3").
func parseXFSDataBlock(b []byte, v5, ftype bool) ([]dirent, error) {
	be := binary.BigEndian
	if len(b) < 64 {
		return nil, fmt.Errorf("xfs dir block too small: %w", ErrCorrupt)
	}
	magic := string(b[:4])
	hdr, end := 16, len(b)
	if v5 {
		hdr = 64
	}
	switch magic {
	case "XD2B", "XDB3":
		// A block-format directory keeps its leaf array and tail at the end.
		count := int(be.Uint32(b[len(b)-8:]))
		end = len(b) - 8 - count*8
		if end < hdr {
			return nil, fmt.Errorf("xfs block dir leaf count %d: %w", count, ErrCorrupt)
		}
	case "XD2D", "XDD3":
	default:
		return nil, fmt.Errorf("xfs dir block magic %q: %w", magic, ErrCorrupt)
	}
	if (magic[3] == '3') != v5 {
		return nil, fmt.Errorf("xfs dir block magic %q on v5=%v: %w", magic, v5, ErrCorrupt)
	}
	var out []dirent
	for p := hdr; p+8 <= end; {
		if be.Uint16(b[p:]) == 0xFFFF { // unused region
			l := int(be.Uint16(b[p+2:]))
			if l < 8 || l%8 != 0 || p+l > end {
				return nil, fmt.Errorf("xfs dir free region length %d: %w", l, ErrCorrupt)
			}
			p += l
			continue
		}
		if p+11 > end {
			return nil, fmt.Errorf("xfs dir entry truncated: %w", ErrCorrupt)
		}
		ino := be.Uint64(b[p:])
		nameLen := int(b[p+8])
		size := 8 + 1 + nameLen + 2
		if ftype {
			size++
		}
		size = (size + 7) &^ 7
		if nameLen == 0 || p+size > end {
			return nil, fmt.Errorf("xfs dir entry name length %d: %w", nameLen, ErrCorrupt)
		}
		out = append(out, dirent{name: string(b[p+9 : p+9+nameLen]), ino: ino})
		p += size
	}
	return out, nil
}
