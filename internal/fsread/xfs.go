package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

const (
	xfsFmtLocal   = 1
	xfsFmtExtents = 2
	xfsFmtBtree   = 3
	// xfsDirLeafOffset is the byte offset where directory leaf blocks start;
	// data blocks live below it.
	xfsDirLeafOffset = 32 << 30
	xfsIncompatFType = 0x1
	xfsV2FType       = 0x200
	xfsDiflag2Big    = 0x8
	xfsMaxExtents    = 1 << 22
	xfsMaxBmapBlocks = 1 << 16
)

// xfsSuper holds the superblock fields the reader needs.
type xfsSuper struct {
	blockSize int64
	dblocks   uint64
	rootIno   uint64
	agBlocks  uint32
	agCount   uint32
	inodeSize int
	inopbLog  uint8
	agblkLog  uint8
	dirBlkLog uint8
	v5        bool
	ftype     bool
}

// parseXFSSuper decodes the primary XFS superblock (big-endian).
func parseXFSSuper(b []byte) (xfsSuper, error) {
	if len(b) < 264 || string(b[:4]) != "XFSB" {
		return xfsSuper{}, fmt.Errorf("xfs superblock magic missing: %w", ErrCorrupt)
	}
	be := binary.BigEndian
	s := xfsSuper{
		blockSize: int64(be.Uint32(b[4:])),
		dblocks:   be.Uint64(b[8:]),
		rootIno:   be.Uint64(b[56:]),
		agBlocks:  be.Uint32(b[84:]),
		agCount:   be.Uint32(b[88:]),
		inodeSize: int(be.Uint16(b[104:])),
		inopbLog:  b[123],
		agblkLog:  b[124],
		dirBlkLog: b[192],
		v5:        be.Uint16(b[100:])&0xF == 5,
	}
	if s.v5 {
		s.ftype = be.Uint32(b[216:])&xfsIncompatFType != 0
	} else {
		s.ftype = be.Uint32(b[200:])&xfsV2FType != 0
	}
	switch {
	case s.blockSize < 512 || s.blockSize > 65536 || s.blockSize&(s.blockSize-1) != 0:
		return xfsSuper{}, fmt.Errorf("xfs block size %d: %w", s.blockSize, ErrCorrupt)
	case s.inodeSize < 256 || s.inodeSize > 2048 || int64(s.inodeSize) > s.blockSize:
		return xfsSuper{}, fmt.Errorf("xfs inode size %d: %w", s.inodeSize, ErrCorrupt)
	case s.agblkLog > 31 || s.inopbLog > 8 || s.dirBlkLog > 8 || s.agBlocks == 0 || s.agCount == 0:
		return xfsSuper{}, fmt.Errorf("xfs geometry: %w", ErrCorrupt)
	case int64(s.inodeSize)<<s.inopbLog != s.blockSize:
		return xfsSuper{}, fmt.Errorf("xfs inodes per block: %w", ErrCorrupt)
	}
	return s, nil
}

// xfsInode is a decoded XFS inode.
type xfsInode struct {
	mode                        uint32
	format, aformat             uint8
	uid, gid, nlink             uint32
	size                        int64
	nblocks                     uint64
	atime, mtime, ctime, crtime time.Time
	nextent, anextent           uint64
	fork                        []byte // data fork bytes
	afork                       []byte // attribute fork bytes (nil: none)
}

const (
	xfsFmtDev        = 0
	xfsDiflag2NRExt  = 0x10
	xfsInodeCoreV3   = 176
	xfsInodeCoreV1V2 = 100
)

// parseXFSInode decodes one inode record (v1/v2/v3 core).
func parseXFSInode(b []byte, bigtime bool) (xfsInode, error) {
	be := binary.BigEndian
	if len(b) < xfsInodeCoreV3 || string(b[:2]) != "IN" {
		return xfsInode{}, fmt.Errorf("xfs inode magic missing: %w", ErrCorrupt)
	}
	version := b[4]
	in := xfsInode{
		mode:     uint32(be.Uint16(b[2:])),
		format:   b[5],
		aformat:  b[83],
		uid:      be.Uint32(b[8:]),
		gid:      be.Uint32(b[12:]),
		nlink:    be.Uint32(b[16:]),
		size:     int64(be.Uint64(b[56:])),
		nblocks:  be.Uint64(b[64:]),
		nextent:  uint64(be.Uint32(b[76:])),
		anextent: uint64(be.Uint16(b[80:])),
	}
	if version == 1 {
		in.nlink = uint32(be.Uint16(b[6:]))
	}
	core := xfsInodeCoreV1V2
	var flags2 uint64
	if version == 3 {
		core = xfsInodeCoreV3
		flags2 = be.Uint64(b[120:])
		if flags2&xfsDiflag2NRExt != 0 {
			in.nextent = be.Uint64(b[24:])
			in.anextent = uint64(be.Uint32(b[76:]))
		}
	}
	forkoff := int(b[82]) * 8
	end := len(b)
	if forkoff != 0 {
		end = core + forkoff
	}
	if end > len(b) || in.size < 0 {
		return xfsInode{}, fmt.Errorf("xfs inode fork offset %d size %d: %w", forkoff, in.size, ErrCorrupt)
	}
	in.fork = b[core:end]
	if forkoff != 0 {
		in.afork = b[end:]
	}
	big := version == 3 && bigtime && flags2&xfsDiflag2Big != 0
	stamp := func(off int) time.Time {
		if big {
			t := be.Uint64(b[off:])
			return unixTime(int64(t/1e9)-(1<<31), int64(t%1e9))
		}
		return unixTime(int64(int32(be.Uint32(b[off:]))), int64(be.Uint32(b[off+4:])))
	}
	in.atime, in.mtime, in.ctime = stamp(32), stamp(40), stamp(48)
	if version == 3 {
		in.crtime = stamp(144)
	}
	return in, nil
}

// xfsFS reads XFS v4 and v5 filesystems, walking from the root inode.
type xfsFS struct {
	r       io.ReaderAt // the volume, for file data
	meta    *metaCache  // the volume, for metadata
	size    int64
	sb      xfsSuper
	bigtime bool
}

func openXFS(ctx context.Context, r io.ReaderAt, size int64) (FS, error) {
	buf := make([]byte, 512)
	if _, err := r.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read xfs superblock: %w", err)
	}
	sb, err := parseXFSSuper(buf)
	if err != nil {
		return nil, err
	}
	x := &xfsFS{r: r, meta: newMetaCache(r, size), size: size, sb: sb, bigtime: sb.v5 && binary.BigEndian.Uint32(buf[216:])&0x8 != 0}
	if _, err := x.getNode(ctx, sb.rootIno); err != nil {
		return nil, fmt.Errorf("xfs root inode: %w", err)
	}
	return &treeFS{b: x}, nil
}

func (x *xfsFS) typ() string     { return "xfs" }
func (x *xfsFS) rootIno() uint64 { return x.sb.rootIno }

// fsbToByte converts an XFS filesystem block number (agno<<agblklog|agbno)
// to a byte offset in the volume.
func (x *xfsFS) fsbToByte(fsb uint64) (int64, error) {
	agno := fsb >> x.sb.agblkLog
	agbno := fsb & (1<<x.sb.agblkLog - 1)
	if agno >= uint64(x.sb.agCount) || agbno >= uint64(x.sb.agBlocks) {
		return 0, fmt.Errorf("xfs block %#x outside filesystem: %w", fsb, ErrCorrupt)
	}
	return int64(agno*uint64(x.sb.agBlocks)+agbno) * x.sb.blockSize, nil
}

func (x *xfsFS) getNode(ctx context.Context, ino uint64) (*node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fsb := ino >> x.sb.inopbLog
	off, err := x.fsbToByte(fsb)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	off += int64(ino&(1<<x.sb.inopbLog-1)) * int64(x.sb.inodeSize)
	raw := make([]byte, x.sb.inodeSize)
	if _, err := x.meta.ReadAt(raw, off); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", ino, err)
	}
	in, err := parseXFSInode(raw, x.bigtime)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	n := &node{ino: ino, mode: in.mode, size: in.size, alloc: int64(in.nblocks) * x.sb.blockSize,
		uid: in.uid, gid: in.gid, nlink: in.nlink,
		atime: in.atime, mtime: in.mtime, ctime: in.ctime, btime: in.crtime, impl: &in}
	if t := in.mode & sIFMT; (t == sIFCHR || t == sIFBLK) && in.format == xfsFmtDev && len(in.fork) >= 4 {
		dev := binary.BigEndian.Uint32(in.fork)
		n.major, n.minor = (dev>>18)&0x1ff, dev&0x3ffff
	}
	return n, nil
}

// unpackBmbt decodes a 16-byte big-endian bmap extent record.
func unpackBmbt(b []byte) extent {
	hi, lo := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	return extent{
		unwritten: hi>>63 != 0,
		lblk:      (hi >> 9) & (1<<54 - 1),
		pblk:      (hi&(1<<9-1))<<43 | lo>>21,
		n:         lo & (1<<21 - 1),
	}
}

// extents returns the data fork's extent map, converting XFS block numbers
// to linear volume block numbers.
func (x *xfsFS) extents(fork []byte, format uint8, nextent uint64) (extentMap, error) {
	var raw []extent
	switch format {
	case xfsFmtExtents:
		if nextent > uint64(len(fork)/16) {
			return nil, fmt.Errorf("xfs extent count %d: %w", nextent, ErrCorrupt)
		}
		for i := 0; i < int(nextent); i++ {
			raw = append(raw, unpackBmbt(fork[i*16:]))
		}
	case xfsFmtBtree:
		var err error
		if raw, err = x.btreeExtents(fork); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("xfs fork format %d has no extents: %w", format, ErrCorrupt)
	}
	m := make(extentMap, 0, len(raw))
	for _, e := range raw {
		off, err := x.fsbToByte(e.pblk)
		if err != nil {
			return nil, err
		}
		e.pblk = uint64(off / x.sb.blockSize)
		m = append(m, e)
	}
	return m, m.sortAndCheck()
}

// btreeExtents walks a bmap B+tree whose root is in the inode fork.
func (x *xfsFS) btreeExtents(fork []byte) ([]extent, error) {
	be := binary.BigEndian
	if len(fork) < 4 {
		return nil, fmt.Errorf("xfs bmap root too small: %w", ErrCorrupt)
	}
	level, numrecs := int(be.Uint16(fork)), int(be.Uint16(fork[2:]))
	maxrecs := (len(fork) - 4) / 16
	if level == 0 || level > 10 || numrecs > maxrecs {
		return nil, fmt.Errorf("xfs bmap root level %d recs %d: %w", level, numrecs, ErrCorrupt)
	}
	var out []extent
	budget := xfsMaxBmapBlocks
	for i := 0; i < numrecs; i++ {
		ptr := be.Uint64(fork[4+maxrecs*8+i*8:])
		if err := x.bmapBlock(ptr, level-1, &out, &budget); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (x *xfsFS) bmapBlock(fsb uint64, level int, out *[]extent, budget *int) error {
	if *budget--; *budget < 0 {
		return fmt.Errorf("xfs bmap tree too large: %w", ErrCorrupt)
	}
	off, err := x.fsbToByte(fsb)
	if err != nil {
		return err
	}
	b := make([]byte, x.sb.blockSize)
	if _, err := x.meta.ReadAt(b, off); err != nil {
		return fmt.Errorf("read bmap block: %w", err)
	}
	be := binary.BigEndian
	hdr, magic := 24, "BMAP"
	if x.sb.v5 {
		hdr, magic = 72, "BMA3"
	}
	if string(b[:4]) != magic || int(be.Uint16(b[4:])) != level {
		return fmt.Errorf("xfs bmap block %#x magic/level: %w", fsb, ErrCorrupt)
	}
	numrecs := int(be.Uint16(b[6:]))
	if level == 0 {
		if hdr+numrecs*16 > len(b) {
			return fmt.Errorf("xfs bmap leaf recs %d: %w", numrecs, ErrCorrupt)
		}
		for i := 0; i < numrecs; i++ {
			*out = append(*out, unpackBmbt(b[hdr+i*16:]))
		}
		if len(*out) > xfsMaxExtents {
			return fmt.Errorf("too many extents: %w", ErrCorrupt)
		}
		return nil
	}
	maxrecs := (len(b) - hdr) / 16
	if numrecs > maxrecs {
		return fmt.Errorf("xfs bmap node recs %d: %w", numrecs, ErrCorrupt)
	}
	for i := 0; i < numrecs; i++ {
		if err := x.bmapBlock(be.Uint64(b[hdr+maxrecs*8+i*8:]), level-1, out, budget); err != nil {
			return err
		}
	}
	return nil
}

func (x *xfsFS) data(_ context.Context, n *node) (io.ReaderAt, []Extent, error) {
	in := n.impl.(*xfsInode)
	if in.format == xfsFmtLocal {
		if n.size > int64(len(in.fork)) {
			return nil, nil, fmt.Errorf("xfs local fork shorter than size: %w", ErrCorrupt)
		}
		var ext []Extent
		if n.size > 0 {
			ext = []Extent{{Off: 0, Len: n.size, Phys: -1}}
		}
		return &byteReader{b: in.fork[:n.size]}, ext, nil
	}
	br, err := x.blocks(in.fork, in.format, in.nextent, n.size, x.r)
	if err != nil {
		return nil, nil, err
	}
	ext, err := br.extents()
	if err != nil {
		return nil, nil, err
	}
	return br, ext, nil
}

// blocks returns a block reader over r for a fork in extents or btree
// format.
func (x *xfsFS) blocks(fork []byte, format uint8, nextent uint64, size int64, r io.ReaderAt) (*blockReader, error) {
	m, err := x.extents(fork, format, nextent)
	if err != nil {
		return nil, err
	}
	return &blockReader{r: r, bs: x.sb.blockSize, m: m, size: size,
		devBlocks: uint64(x.size / x.sb.blockSize)}, nil
}
