package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// maxDirEntries bounds one directory listing (memory on corrupt input).
const maxDirEntries = 10_000_000

// extIndirect maps blocks through ext2/3 direct/indirect pointers.
type extIndirect struct {
	fs   *extFS
	ptrs [60]byte
}

func (m *extIndirect) mapBlock(lblk uint64) (uint64, uint64, bool, error) {
	apb := uint64(m.fs.sb.blockSize / 4)
	le := binary.LittleEndian
	if lblk < 12 {
		arr := m.ptrs[:48]
		return runIn(arr, lblk)
	}
	lblk -= 12
	// path: which i_block slot, then indices at each level.
	var slot int
	var idx []uint64
	switch {
	case lblk < apb:
		slot, idx = 12, []uint64{lblk}
	case lblk < apb+apb*apb:
		l := lblk - apb
		slot, idx = 13, []uint64{l / apb, l % apb}
	case lblk < apb+apb*apb+apb*apb*apb:
		l := lblk - apb - apb*apb
		slot, idx = 14, []uint64{l / (apb * apb), (l / apb) % apb, l % apb}
	default:
		return 0, 0, false, fmt.Errorf("block %d beyond indirect range: %w", lblk, ErrCorrupt)
	}
	blk := uint64(le.Uint32(m.ptrs[slot*4:]))
	for level, i := range idx {
		if blk == 0 {
			// Hole: the whole subtree under this pointer is absent; skip to
			// its end.
			span, off := uint64(1), uint64(0)
			for _, j := range idx[level:] {
				span *= apb
				off = off*apb + j
			}
			return 0, span - off, false, nil
		}
		b, err := m.fs.indirectBlock(blk)
		if err != nil {
			return 0, 0, false, err
		}
		if level == len(idx)-1 {
			return runIn(b, i)
		}
		blk = uint64(le.Uint32(b[i*4:]))
	}
	return 0, 0, false, fmt.Errorf("unreachable indirect walk: %w", ErrCorrupt)
}

// runIn returns the pointer at index i of a 32-bit pointer array and how
// many following pointers continue it contiguously (or as holes).
func runIn(arr []byte, i uint64) (uint64, uint64, bool, error) {
	le := binary.LittleEndian
	n := uint64(len(arr) / 4)
	p := uint64(le.Uint32(arr[i*4:]))
	run := uint64(1)
	for j := i + 1; j < n; j++ {
		q := uint64(le.Uint32(arr[j*4:]))
		if (p == 0 && q != 0) || (p != 0 && q != p+(j-i)) {
			break
		}
		run++
	}
	return p, run, p != 0, nil
}

func (e *extFS) indirectBlock(blk uint64) ([]byte, error) {
	e.mu.Lock()
	b, ok := e.ind[blk]
	e.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := e.readBlock(blk)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if len(e.ind) > 256 {
		clear(e.ind)
	}
	e.ind[blk] = b
	e.mu.Unlock()
	return b, nil
}

// extInlineData returns the contents of an inline-data inode: i_block
// followed by the "system.data" extended attribute.
func extInlineData(in *extInode) ([]byte, error) {
	out := append([]byte(nil), in.block[:]...)
	if in.size <= int64(len(out)) {
		return out[:in.size], nil
	}
	le := binary.LittleEndian
	x := in.extra
	if len(x) < 4 || le.Uint32(x) != 0xEA020000 {
		return nil, fmt.Errorf("inline data xattr header missing: %w", ErrCorrupt)
	}
	ents := x[4:]
	for p := 0; p+16 <= len(ents); {
		nameLen := int(ents[p])
		if nameLen == 0 && le.Uint32(ents[p:]) == 0 {
			break
		}
		idx := ents[p+1]
		voff := int(le.Uint16(ents[p+2:]))
		vsize := int(le.Uint32(ents[p+8:]))
		if p+16+nameLen > len(ents) {
			break
		}
		name := string(ents[p+16 : p+16+nameLen])
		if idx == 7 && name == "data" {
			if voff+vsize > len(ents) {
				return nil, fmt.Errorf("inline data xattr value out of range: %w", ErrCorrupt)
			}
			out = append(out, ents[voff:voff+vsize]...)
			if int64(len(out)) < in.size {
				return nil, fmt.Errorf("inline data shorter than size: %w", ErrCorrupt)
			}
			return out[:in.size], nil
		}
		p += (16 + nameLen + 3) &^ 3
	}
	return nil, fmt.Errorf("inline data xattr not found: %w", ErrCorrupt)
}

func (e *extFS) readlink(_ context.Context, n *node) (string, error) {
	in := n.impl.(*extInode)
	if n.size > 4096 {
		return "", fmt.Errorf("symlink %d target length %d: %w", n.ino, n.size, ErrCorrupt)
	}
	if in.flags&(extFlagExtents|extFlagInline) == 0 && n.size < 60 {
		return string(in.block[:n.size]), nil
	}
	if in.flags&extFlagInline != 0 {
		b, err := extInlineData(in)
		return string(b), err
	}
	br, err := e.blocks(in, n.size, e.meta)
	if err != nil {
		return "", err
	}
	b := make([]byte, n.size)
	if _, err := br.ReadAt(b, 0); err != nil && err != io.EOF {
		return "", err
	}
	return string(b), nil
}

func (e *extFS) list(ctx context.Context, dir *node) ([]dirent, error) {
	in := dir.impl.(*extInode)
	ftype := e.sb.incompat&extIncompatFType != 0
	if in.flags&extFlagInline != 0 {
		b, err := extInlineData(in)
		if err != nil {
			return nil, err
		}
		if len(b) < 4 {
			return nil, fmt.Errorf("inline dir too short: %w", ErrCorrupt)
		}
		ents := []dirent{{name: "..", ino: uint64(binary.LittleEndian.Uint32(b))}}
		// i_block holds the first part; the xattr continuation is a separate
		// run of entries that starts at byte 60.
		first := b[4:min(len(b), 60)]
		more, err := parseExtDirBlock(first, ftype)
		if err != nil {
			return nil, err
		}
		ents = append(ents, more...)
		if len(b) > 60 {
			more, err = parseExtDirBlock(b[60:], ftype)
			if err != nil {
				return nil, err
			}
			ents = append(ents, more...)
		}
		return ents, nil
	}
	m, err := e.mapper(in)
	if err != nil {
		return nil, err
	}
	var ents []dirent
	nblocks := uint64((dir.size + e.sb.blockSize - 1) / e.sb.blockSize)
	// Visit mapped blocks only: holes (and a corrupt, huge i_size) are
	// skipped a run at a time.
	for lblk := uint64(0); lblk < nblocks; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pblk, n, ok, err := m.mapBlock(lblk)
		if err != nil {
			return nil, err
		}
		if !ok {
			lblk += max(n, 1)
			continue
		}
		blk, err := e.readBlock(pblk)
		if err != nil {
			return nil, err
		}
		more, err := parseExtDirBlock(blk, ftype)
		if err != nil {
			return nil, fmt.Errorf("directory inode %d: %w", dir.ino, err)
		}
		ents = append(ents, more...)
		if len(ents) > maxDirEntries {
			return nil, fmt.Errorf("directory inode %d has over %d entries: %w", dir.ino, maxDirEntries, ErrCorrupt)
		}
		lblk++
	}
	return ents, nil
}

// parseExtDirBlock decodes the linear directory entries in b. Hash-tree
// index blocks look like one empty entry spanning the block, so reading
// every block linearly also handles htree directories.
func parseExtDirBlock(b []byte, ftype bool) ([]dirent, error) {
	le := binary.LittleEndian
	var out []dirent
	for p := 0; p+8 <= len(b); {
		ino := le.Uint32(b[p:])
		recLen := int(le.Uint16(b[p+4:]))
		nameLen := int(b[p+6])
		if !ftype {
			nameLen |= int(b[p+7]) << 8
		}
		if recLen < 8 || p+recLen > len(b) || 8+nameLen > recLen {
			if ino == 0 && recLen == 0 && allZero(b[p:]) {
				break // zero-filled tail (inline dirs)
			}
			return nil, fmt.Errorf("dir entry at %d: rec_len %d name_len %d: %w", p, recLen, nameLen, ErrCorrupt)
		}
		if ino != 0 && nameLen > 0 {
			out = append(out, dirent{name: string(b[p+8 : p+8+nameLen]), ino: uint64(ino)})
		}
		p += recLen
	}
	return out, nil
}
