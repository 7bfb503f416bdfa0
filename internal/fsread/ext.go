package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

const (
	extSuperOff       = 1024
	extRootIno        = 2
	extFlagExtents    = 0x80000
	extFlagInline     = 0x10000000
	extIncompatFType  = 0x2
	extIncompatMetaBG = 0x10
	extROSparseSuper  = 0x1
	extExtentMagic    = 0xF30A
	extMaxExtentDepth = 5
	extMaxExtents     = 1 << 22
)

// extSuper holds the superblock fields the reader needs.
type extSuper struct {
	blockSize      int64
	firstDataBlock uint64
	blocksCount    uint64
	inodesCount    uint32
	inodesPerGroup uint32
	blocksPerGroup uint32
	inodeSize      uint32
	descSize       uint32
	incompat       uint32
	compat         uint32
	roCompat       uint32
	firstMetaBG    uint32
	variant        string
}

// parseExtSuper decodes a 1024-byte ext2/3/4 superblock.
func parseExtSuper(b []byte) (extSuper, error) {
	if len(b) < 1024 || binary.LittleEndian.Uint16(b[56:]) != 0xEF53 {
		return extSuper{}, fmt.Errorf("ext superblock magic missing: %w", ErrCorrupt)
	}
	le := binary.LittleEndian
	s := extSuper{
		firstDataBlock: uint64(le.Uint32(b[20:])),
		blocksCount:    uint64(le.Uint32(b[4:])),
		inodesCount:    le.Uint32(b[0:]),
		blocksPerGroup: le.Uint32(b[32:]),
		inodesPerGroup: le.Uint32(b[40:]),
		inodeSize:      128,
		descSize:       32,
		compat:         le.Uint32(b[92:]),
		incompat:       le.Uint32(b[96:]),
		roCompat:       le.Uint32(b[100:]),
		firstMetaBG:    le.Uint32(b[0x104:]),
		variant:        extVariant(b),
	}
	logBS := le.Uint32(b[24:])
	if logBS > 6 {
		return extSuper{}, fmt.Errorf("ext block size 2^%d KiB: %w", logBS, ErrCorrupt)
	}
	s.blockSize = 1024 << logBS
	if le.Uint32(b[76:]) >= 1 {
		s.inodeSize = uint32(le.Uint16(b[88:]))
	}
	if s.incompat&extIncompat64Bit != 0 {
		s.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		s.descSize = uint32(le.Uint16(b[254:]))
	}
	switch {
	case s.inodeSize < 128 || s.inodeSize > uint32(s.blockSize) || s.inodeSize&(s.inodeSize-1) != 0:
		return extSuper{}, fmt.Errorf("ext inode size %d: %w", s.inodeSize, ErrCorrupt)
	case s.descSize < 32 || s.descSize > 1024:
		return extSuper{}, fmt.Errorf("ext descriptor size %d: %w", s.descSize, ErrCorrupt)
	case s.inodesPerGroup == 0 || s.blocksPerGroup == 0:
		return extSuper{}, fmt.Errorf("ext group geometry zero: %w", ErrCorrupt)
	}
	return s, nil
}

// extInode is a decoded ext inode.
type extInode struct {
	mode                        uint32
	uid, gid, nlink             uint32
	size                        int64
	atime, ctime, mtime, crtime time.Time
	flags                       uint32
	block                       [60]byte // i_block: extent root, block pointers or inline data
	extra                       []byte   // in-inode extended attribute area (may be empty)
	blocks                      uint64   // i_blocks, low and high words
	fileACL                     uint64   // external xattr block
}

// ext inode flags and feature bits used beyond the block map.
const (
	extFlagHugeFile    = 0x40000
	extROHugeFile      = 0x8
	extIncompatEAInode = 0x400
)

// parseExtInode decodes one on-disk inode record of size len(b).
func parseExtInode(b []byte) (extInode, error) {
	if len(b) < 128 {
		return extInode{}, fmt.Errorf("inode record %d bytes: %w", len(b), ErrCorrupt)
	}
	le := binary.LittleEndian
	in := extInode{
		mode:    uint32(le.Uint16(b[0:])),
		uid:     uint32(le.Uint16(b[0x02:])) | uint32(le.Uint16(b[0x78:]))<<16,
		gid:     uint32(le.Uint16(b[0x18:])) | uint32(le.Uint16(b[0x7A:]))<<16,
		nlink:   uint32(le.Uint16(b[0x1A:])),
		size:    int64(uint64(le.Uint32(b[4:])) | uint64(le.Uint32(b[0x6C:]))<<32),
		flags:   le.Uint32(b[0x20:]),
		blocks:  uint64(le.Uint32(b[0x1C:])) | uint64(le.Uint16(b[0x74:]))<<32,
		fileACL: uint64(le.Uint32(b[0x68:])) | uint64(le.Uint16(b[0x76:]))<<32,
	}
	copy(in.block[:], b[0x28:0x28+60])
	extraSize := 0
	if len(b) > 0x84 {
		extraSize = int(le.Uint16(b[0x80:]))
		if 0x80+extraSize > len(b) {
			return extInode{}, fmt.Errorf("inode extra size %d: %w", extraSize, ErrCorrupt)
		}
		in.extra = b[0x80+extraSize:]
	}
	// Times: seconds in the base inode; epoch bits and nanoseconds in the
	// extra fields when the inode is large enough to hold them.
	fits := func(off int) bool { return off+4 <= 0x80+extraSize }
	decode := func(secOff, extraOff int) time.Time {
		sec := int64(int32(le.Uint32(b[secOff:])))
		var nsec int64
		if extraSize > 0 && fits(extraOff) {
			x := le.Uint32(b[extraOff:])
			sec += int64(x&3) << 32
			nsec = int64(x >> 2)
		}
		return unixTime(sec, nsec)
	}
	in.atime = decode(0x08, 0x8C)
	in.ctime = decode(0x0C, 0x84)
	in.mtime = decode(0x10, 0x88)
	if extraSize > 0 && fits(0x90) {
		in.crtime = decode(0x90, 0x94)
	}
	if in.size < 0 {
		return extInode{}, fmt.Errorf("inode size negative: %w", ErrCorrupt)
	}
	return in, nil
}

// devNumbers decodes a device inode's numbers from i_block: the old
// 16-bit encoding in the first word, else the new one in the second.
func (in *extInode) devNumbers() (major, minor uint32) {
	le := binary.LittleEndian
	if old := le.Uint32(in.block[0:]); old != 0 {
		return (old >> 8) & 0xff, old & 0xff
	}
	d := le.Uint32(in.block[4:])
	return (d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00)
}

// extFS reads ext2/3/4.
type extFS struct {
	r    io.ReaderAt // the volume, for file data
	meta *metaCache  // the volume, for metadata
	size int64
	sb   extSuper

	mu     sync.Mutex
	tables map[uint32]uint64 // group -> inode table block (lazy)
	ind    map[uint64][]byte // small cache of indirect blocks
}

func openExt(ctx context.Context, r io.ReaderAt, size int64) (FS, error) {
	buf := make([]byte, 1024)
	if _, err := r.ReadAt(buf, extSuperOff); err != nil {
		return nil, fmt.Errorf("read ext superblock: %w", err)
	}
	sb, err := parseExtSuper(buf)
	if err != nil {
		return nil, err
	}
	e := &extFS{r: r, meta: newMetaCache(r, size), size: size, sb: sb, tables: map[uint32]uint64{}, ind: map[uint64][]byte{}}
	if _, err := e.getNode(ctx, extRootIno); err != nil {
		return nil, fmt.Errorf("ext root inode: %w", err)
	}
	return &treeFS{b: e}, nil
}

func (e *extFS) typ() string     { return e.sb.variant }
func (e *extFS) rootIno() uint64 { return extRootIno }

func (e *extFS) readBlock(blk uint64) ([]byte, error) {
	if blk == 0 || int64(blk) >= e.size/e.sb.blockSize {
		return nil, fmt.Errorf("block %d outside volume: %w", blk, ErrCorrupt)
	}
	b := make([]byte, e.sb.blockSize)
	if _, err := e.meta.ReadAt(b, int64(blk)*e.sb.blockSize); err != nil {
		return nil, fmt.Errorf("read block %d: %w", blk, err)
	}
	return b, nil
}

// inodeTable returns the first block of group g's inode table.
func (e *extFS) inodeTable(g uint32) (uint64, error) {
	e.mu.Lock()
	t, ok := e.tables[g]
	e.mu.Unlock()
	if ok {
		return t, nil
	}
	off := e.descOffset(g)
	d := make([]byte, e.sb.descSize)
	if _, err := e.meta.ReadAt(d, off); err != nil {
		return 0, fmt.Errorf("read group descriptor %d: %w", g, err)
	}
	t = uint64(binary.LittleEndian.Uint32(d[8:]))
	if e.sb.descSize >= 64 {
		t |= uint64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	e.mu.Lock()
	e.tables[g] = t
	e.mu.Unlock()
	return t, nil
}

// descOffset locates group g's descriptor: in the table after the
// superblock, or (meta_bg) in the first group of its meta group, after that
// group's superblock backup if it has one.
func (e *extFS) descOffset(g uint32) int64 {
	sb := e.sb
	perBlock := uint32(sb.blockSize) / sb.descSize
	meta := g / perBlock
	if sb.incompat&extIncompatMetaBG == 0 || meta < sb.firstMetaBG {
		return int64(sb.firstDataBlock+1)*sb.blockSize + int64(g)*int64(sb.descSize)
	}
	first := uint64(meta * perBlock)
	blk := sb.firstDataBlock + first*uint64(sb.blocksPerGroup)
	if e.hasSuper(first) {
		blk++
	}
	return int64(blk)*sb.blockSize + int64(g%perBlock)*int64(sb.descSize)
}

// hasSuper reports whether group g holds a superblock backup.
func (e *extFS) hasSuper(g uint64) bool {
	if g <= 1 || e.sb.roCompat&extROSparseSuper == 0 {
		return true
	}
	for _, base := range []uint64{3, 5, 7} {
		p := base
		for p < g {
			p *= base
		}
		if p == g {
			return true
		}
	}
	return false
}

func (e *extFS) getNode(ctx context.Context, ino uint64) (*node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ino == 0 || ino > uint64(e.sb.inodesCount) {
		return nil, fmt.Errorf("inode %d out of range: %w", ino, ErrCorrupt)
	}
	g := uint32((ino - 1) / uint64(e.sb.inodesPerGroup))
	idx := (ino - 1) % uint64(e.sb.inodesPerGroup)
	tbl, err := e.inodeTable(g)
	if err != nil {
		return nil, err
	}
	off := int64(tbl)*e.sb.blockSize + int64(idx)*int64(e.sb.inodeSize)
	if tbl == 0 || off+int64(e.sb.inodeSize) > e.size {
		return nil, fmt.Errorf("inode %d outside volume: %w", ino, ErrCorrupt)
	}
	raw := make([]byte, e.sb.inodeSize)
	if _, err := e.meta.ReadAt(raw, off); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", ino, err)
	}
	in, err := parseExtInode(raw)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	if in.mode == 0 {
		return nil, fmt.Errorf("inode %d is free: %w", ino, ErrCorrupt)
	}
	n := &node{ino: ino, mode: in.mode, size: in.size, uid: in.uid, gid: in.gid, nlink: in.nlink,
		atime: in.atime, mtime: in.mtime, ctime: in.ctime, btime: in.crtime, impl: &in}
	blocks := in.blocks
	if e.sb.roCompat&extROHugeFile == 0 {
		blocks &= 0xFFFFFFFF
	} else if in.flags&extFlagHugeFile != 0 {
		blocks *= uint64(e.sb.blockSize / 512)
	}
	n.alloc = int64(blocks * 512)
	if in.flags&extFlagInline != 0 {
		// As the kernel reports inline data: a sector per 512 bytes, so
		// tools do not take the file for a hole.
		n.alloc += (in.size + 511) / 512 * 512
	}
	if t := in.mode & sIFMT; t == sIFCHR || t == sIFBLK {
		n.major, n.minor = in.devNumbers()
	}
	return n, nil
}

// data returns a reader over an inode's contents and its extents.
func (e *extFS) data(_ context.Context, n *node) (io.ReaderAt, []Extent, error) {
	in := n.impl.(*extInode)
	if in.flags&extFlagInline != 0 {
		b, err := extInlineData(in)
		if err != nil {
			return nil, nil, err
		}
		var ext []Extent
		if len(b) > 0 {
			ext = []Extent{{Off: 0, Len: int64(len(b)), Phys: -1}}
		}
		return &byteReader{b: b}, ext, nil
	}
	br, err := e.blocks(in, n.size, e.r)
	if err != nil {
		return nil, nil, err
	}
	ext, err := br.extents()
	if err != nil {
		return nil, nil, err
	}
	return br, ext, nil
}

// blocks returns a block reader of a non-inline inode over r.
func (e *extFS) blocks(in *extInode, size int64, r io.ReaderAt) (*blockReader, error) {
	m, err := e.mapper(in)
	if err != nil {
		return nil, err
	}
	return &blockReader{r: r, bs: e.sb.blockSize, m: m, size: size,
		devBlocks: uint64(e.size / e.sb.blockSize)}, nil
}

// mapper returns the block map of a non-inline inode.
func (e *extFS) mapper(in *extInode) (blockMapper, error) {
	if in.flags&extFlagExtents != 0 {
		ext, err := e.extents(in.block[:], 0, new(int))
		if err != nil {
			return nil, err
		}
		em := extentMap(ext)
		if err := em.sortAndCheck(); err != nil {
			return nil, err
		}
		return em, nil
	}
	return &extIndirect{fs: e, ptrs: in.block}, nil
}

// extents collects the leaf extents of the extent tree node b.
func (e *extFS) extents(b []byte, depth int, count *int) ([]extent, error) {
	le := binary.LittleEndian
	if len(b) < 12 || le.Uint16(b[0:]) != extExtentMagic {
		return nil, fmt.Errorf("extent header magic: %w", ErrCorrupt)
	}
	entries := int(le.Uint16(b[2:]))
	level := int(le.Uint16(b[6:]))
	if 12+12*entries > len(b) || level > extMaxExtentDepth || depth > extMaxExtentDepth {
		return nil, fmt.Errorf("extent node entries %d depth %d: %w", entries, level, ErrCorrupt)
	}
	var out []extent
	for i := 0; i < entries; i++ {
		x := b[12+12*i:]
		if level == 0 {
			n := uint64(le.Uint16(x[4:]))
			unwritten := n > 32768
			if unwritten {
				n -= 32768
			}
			p := uint64(le.Uint16(x[6:]))<<32 | uint64(le.Uint32(x[8:]))
			out = append(out, extent{lblk: uint64(le.Uint32(x[0:])), pblk: p, n: n, unwritten: unwritten})
			if *count++; *count > extMaxExtents {
				return nil, fmt.Errorf("too many extents: %w", ErrCorrupt)
			}
			continue
		}
		// Index blocks count against the same budget, so a corrupt tree
		// with huge fan-out cannot make us read forever.
		if *count += 64; *count > extMaxExtents {
			return nil, fmt.Errorf("extent tree too large: %w", ErrCorrupt)
		}
		child := uint64(le.Uint16(x[8:]))<<32 | uint64(le.Uint32(x[4:]))
		blk, err := e.readBlock(child)
		if err != nil {
			return nil, err
		}
		sub, err := e.extents(blk, depth+1, count)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// byteReader is a ReaderAt over an in-memory slice.
type byteReader struct{ b []byte }

func (r *byteReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
