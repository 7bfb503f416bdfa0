package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	extXattrMagic = 0xEA020000
	// xattrMaxValue is Linux's limit on one xattr value (XATTR_SIZE_MAX).
	xattrMaxValue = 64 << 10
)

// extXattrPrefix maps ext4's name indexes to Linux xattr prefixes; index
// 7 ("system.data", inline data) is internal and not listed, as the
// kernel does not list it.
var extXattrPrefix = map[byte]string{
	1:  "user.",
	2:  aclXattrAccess,
	3:  aclXattrDefault,
	4:  "trusted.",
	6:  "security.",
	10: "gnu.",
}

type extXattrRaw struct {
	index       byte
	name        string
	value       []byte
	inum, vsize uint32
}

// parseExtXattrs decodes the entries at ents; value offsets are relative
// to base.
func parseExtXattrs(ents, base []byte) ([]extXattrRaw, error) {
	le := binary.LittleEndian
	var out []extXattrRaw
	for p := 0; p+16 <= len(ents); {
		if le.Uint32(ents[p:]) == 0 {
			break
		}
		nameLen := int(ents[p])
		if p+16+nameLen > len(ents) {
			return nil, fmt.Errorf("xattr name out of range: %w", ErrCorrupt)
		}
		x := extXattrRaw{index: ents[p+1], name: string(ents[p+16 : p+16+nameLen]),
			inum: le.Uint32(ents[p+4:]), vsize: le.Uint32(ents[p+8:])}
		if x.vsize > xattrMaxValue {
			return nil, fmt.Errorf("xattr value of %d bytes: %w", x.vsize, ErrCorrupt)
		}
		if x.inum == 0 {
			voff := int(le.Uint16(ents[p+2:]))
			if voff+int(x.vsize) > len(base) {
				return nil, fmt.Errorf("xattr value out of range: %w", ErrCorrupt)
			}
			x.value = base[voff : voff+int(x.vsize)]
		}
		out = append(out, x)
		p += (16 + nameLen + 3) &^ 3
	}
	return out, nil
}

func (e *extFS) xattrs(ctx context.Context, n *node) ([]Xattr, error) {
	in := n.impl.(*extInode)
	le := binary.LittleEndian
	var raw []extXattrRaw
	if x := in.extra; len(x) >= 4 && le.Uint32(x) == extXattrMagic {
		r, err := parseExtXattrs(x[4:], x[4:])
		if err != nil {
			return nil, err
		}
		raw = r
	}
	if in.fileACL != 0 {
		blk, err := e.readBlock(in.fileACL)
		if err != nil {
			return nil, err
		}
		if le.Uint32(blk) != extXattrMagic || le.Uint32(blk[8:]) != 1 {
			return nil, fmt.Errorf("xattr block %d header: %w", in.fileACL, ErrCorrupt)
		}
		r, err := parseExtXattrs(blk[32:], blk)
		if err != nil {
			return nil, err
		}
		raw = append(raw, r...)
	}
	var out []Xattr
	for _, x := range raw {
		prefix, ok := extXattrPrefix[x.index]
		if !ok {
			continue
		}
		if x.inum != 0 {
			v, err := e.eaInodeValue(ctx, x.inum, x.vsize)
			if err != nil {
				return nil, err
			}
			x.value = v
		}
		v := append([]byte(nil), x.value...)
		if x.index == 2 || x.index == 3 {
			var err error
			if v, err = extACL(v); err != nil {
				return nil, err
			}
			x.name = ""
		}
		out = append(out, Xattr{Name: prefix + x.name, Value: v})
	}
	return out, nil
}

// eaInodeValue reads a value stored in its own inode (ea_inode feature).
func (e *extFS) eaInodeValue(ctx context.Context, inum, size uint32) ([]byte, error) {
	if e.sb.incompat&extIncompatEAInode == 0 {
		return nil, fmt.Errorf("xattr in inode %d without ea_inode feature: %w", inum, ErrCorrupt)
	}
	n, err := e.getNode(ctx, uint64(inum))
	if err != nil {
		return nil, err
	}
	ra, _, err := e.data(ctx, n)
	if err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if k, err := ra.ReadAt(b, 0); k != len(b) && err != nil && err != io.EOF {
		return nil, err
	} else if k != len(b) {
		return nil, fmt.Errorf("xattr inode %d shorter than value: %w", inum, ErrCorrupt)
	}
	return b, nil
}
