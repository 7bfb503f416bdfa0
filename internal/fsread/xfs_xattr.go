package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// XFS extended attributes: short form in the inode's attribute fork, or
// leaf blocks (under a dabtree node when there are several) in the blocks
// the attribute fork maps. Large values live in "remote" blocks.
const (
	xfsAttrLocal      = 0x01
	xfsAttrRoot       = 0x02
	xfsAttrSecure     = 0x04
	xfsAttrParent     = 0x08
	xfsAttrIncomplete = 0x80
	xfsAttrLeafMagic  = 0xfbee
	xfsAttr3LeafMagic = 0x3bee
	xfsDANodeMagic    = 0xfebe
	xfsDA3NodeMagic   = 0x3ebe
	xfsAttrMaxBlocks  = 1 << 16
	xfsRemoteHdr      = 56
)

type xfsAttrRaw struct {
	flags    uint8
	name     string
	value    []byte
	valueBlk uint32 // remote value: first attr-fork block
	valueLen uint32
}

func (x *xfsFS) xattrs(_ context.Context, n *node) ([]Xattr, error) {
	in := n.impl.(*xfsInode)
	if in.afork == nil {
		return nil, nil
	}
	var raw []xfsAttrRaw
	var br *blockReader
	switch in.aformat {
	case xfsFmtLocal:
		r, err := parseXFSAttrShort(in.afork)
		if err != nil {
			return nil, err
		}
		raw = r
	case xfsFmtExtents, xfsFmtBtree:
		var err error
		if br, err = x.blocks(in.afork, in.aformat, in.anextent, xfsDirLeafOffset, x.meta); err != nil {
			return nil, err
		}
		if _, n, ok, err := br.m.mapBlock(0); err != nil || !ok || n == 0 {
			return nil, err // an empty attribute fork (all attributes removed)
		}
		if raw, err = x.attrLeaves(br); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	var out []Xattr
	for _, a := range raw {
		if a.flags&(xfsAttrIncomplete|xfsAttrParent) != 0 {
			continue
		}
		v := a.value
		if v == nil && a.valueLen > 0 {
			var err error
			if v, err = x.remoteValue(br, a.valueBlk, a.valueLen); err != nil {
				return nil, err
			}
		}
		v = append([]byte(nil), v...)
		name := "user." + a.name
		switch {
		case a.flags&xfsAttrRoot != 0 && (a.name == "SGI_ACL_FILE" || a.name == "SGI_ACL_DEFAULT"):
			name = aclXattrAccess
			if a.name == "SGI_ACL_DEFAULT" {
				name = aclXattrDefault
			}
			var err error
			if v, err = xfsACL(v); err != nil {
				return nil, err
			}
		case a.flags&xfsAttrRoot != 0:
			name = "trusted." + a.name
		case a.flags&xfsAttrSecure != 0:
			name = "security." + a.name
		}
		out = append(out, Xattr{Name: name, Value: v})
	}
	return out, nil
}

// parseXFSAttrShort decodes a short-form attribute fork.
func parseXFSAttrShort(b []byte) ([]xfsAttrRaw, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("xfs attr short form header: %w", ErrCorrupt)
	}
	total := int(binary.BigEndian.Uint16(b))
	count := int(b[2])
	if total > len(b) {
		return nil, fmt.Errorf("xfs attr short form size %d: %w", total, ErrCorrupt)
	}
	var out []xfsAttrRaw
	p := 4
	for i := 0; i < count; i++ {
		if p+3 > total {
			return nil, fmt.Errorf("xfs attr short form entry %d: %w", i, ErrCorrupt)
		}
		nl, vl, fl := int(b[p]), int(b[p+1]), b[p+2]
		if p+3+nl+vl > total {
			return nil, fmt.Errorf("xfs attr short form entry %d length: %w", i, ErrCorrupt)
		}
		out = append(out, xfsAttrRaw{flags: fl, name: string(b[p+3 : p+3+nl]), value: b[p+3+nl : p+3+nl+vl], valueLen: uint32(vl)})
		p += 3 + nl + vl
	}
	return out, nil
}

// attrLeaves walks the attribute dabtree from block 0 down to its first
// leaf, then along the leaves' forward links.
func (x *xfsFS) attrLeaves(br *blockReader) ([]xfsAttrRaw, error) {
	bs := x.sb.blockSize
	buf := make([]byte, bs)
	read := func(blk uint32) error {
		if _, err := br.ReadAt(buf, int64(blk)*bs); err != nil && err != io.EOF {
			return err
		}
		return nil
	}
	be := binary.BigEndian
	blk := uint32(0)
	var out []xfsAttrRaw
	seen := map[uint32]bool{}
	for steps := 0; ; steps++ {
		if steps > xfsAttrMaxBlocks || seen[blk] {
			return nil, fmt.Errorf("xfs attr tree loops or too large: %w", ErrCorrupt)
		}
		seen[blk] = true
		if err := read(blk); err != nil {
			return nil, err
		}
		switch be.Uint16(buf[8:]) {
		case xfsDANodeMagic, xfsDA3NodeMagic:
			hdr, countOff := 16, 12
			if x.sb.v5 {
				hdr, countOff = 64, 56
			}
			if be.Uint16(buf[countOff:]) == 0 || hdr+8 > len(buf) {
				return nil, fmt.Errorf("xfs attr node block %d empty: %w", blk, ErrCorrupt)
			}
			blk = be.Uint32(buf[hdr+4:]) // leftmost child
		case xfsAttrLeafMagic, xfsAttr3LeafMagic:
			ents, err := parseXFSAttrLeaf(buf, x.sb.v5)
			if err != nil {
				return nil, fmt.Errorf("xfs attr leaf block %d: %w", blk, err)
			}
			out = append(out, ents...)
			if blk = be.Uint32(buf[0:]); blk == 0 {
				return out, nil
			}
		default:
			return nil, fmt.Errorf("xfs attr block %d magic %#x: %w", blk, be.Uint16(buf[8:]), ErrCorrupt)
		}
	}
}

// parseXFSAttrLeaf decodes the entries of one attribute leaf block.
func parseXFSAttrLeaf(b []byte, v5 bool) ([]xfsAttrRaw, error) {
	be := binary.BigEndian
	hdr, countOff := 32, 12
	if v5 {
		hdr, countOff = 80, 56
	}
	if len(b) < hdr {
		return nil, fmt.Errorf("xfs attr leaf too small: %w", ErrCorrupt)
	}
	count := int(be.Uint16(b[countOff:]))
	if hdr+8*count > len(b) {
		return nil, fmt.Errorf("xfs attr leaf count %d: %w", count, ErrCorrupt)
	}
	var out []xfsAttrRaw
	for i := 0; i < count; i++ {
		ent := b[hdr+8*i:]
		idx, flags := int(be.Uint16(ent[4:])), ent[6]
		if flags&xfsAttrLocal != 0 {
			if idx+3 > len(b) {
				return nil, fmt.Errorf("xfs attr local name offset: %w", ErrCorrupt)
			}
			vl, nl := int(be.Uint16(b[idx:])), int(b[idx+2])
			if idx+3+nl+vl > len(b) {
				return nil, fmt.Errorf("xfs attr local entry length: %w", ErrCorrupt)
			}
			out = append(out, xfsAttrRaw{flags: flags, name: string(b[idx+3 : idx+3+nl]),
				value: b[idx+3+nl : idx+3+nl+vl], valueLen: uint32(vl)})
			continue
		}
		if idx+9 > len(b) {
			return nil, fmt.Errorf("xfs attr remote name offset: %w", ErrCorrupt)
		}
		vb, vl, nl := be.Uint32(b[idx:]), be.Uint32(b[idx+4:]), int(b[idx+8])
		if idx+9+nl > len(b) || vl > xattrMaxValue {
			return nil, fmt.Errorf("xfs attr remote entry: %w", ErrCorrupt)
		}
		out = append(out, xfsAttrRaw{flags: flags, name: string(b[idx+9 : idx+9+nl]), valueBlk: vb, valueLen: vl})
	}
	return out, nil
}

// remoteValue reads a value kept in attribute-fork blocks; on v5 each
// block starts with a 56-byte header.
func (x *xfsFS) remoteValue(br *blockReader, blk, size uint32) ([]byte, error) {
	if br == nil || size > xattrMaxValue {
		return nil, fmt.Errorf("xfs remote attr value: %w", ErrCorrupt)
	}
	bs := x.sb.blockSize
	if !x.sb.v5 {
		b := make([]byte, size)
		if _, err := br.ReadAt(b, int64(blk)*bs); err != nil && err != io.EOF {
			return nil, err
		}
		return b, nil
	}
	out := make([]byte, 0, size)
	buf := make([]byte, bs)
	for uint32(len(out)) < size {
		if _, err := br.ReadAt(buf, int64(blk)*bs); err != nil && err != io.EOF {
			return nil, err
		}
		if string(buf[:4]) != "XARM" {
			return nil, fmt.Errorf("xfs remote attr block magic: %w", ErrCorrupt)
		}
		n := min(int(size)-len(out), int(bs)-xfsRemoteHdr)
		out = append(out, buf[xfsRemoteHdr:xfsRemoteHdr+n]...)
		blk++
	}
	return out, nil
}
