package fsread

import (
	"encoding/binary"
	"fmt"
)

// NTFS directories are $I30 indexes: entries in $INDEX_ROOT and in the
// index blocks of $INDEX_ALLOCATION that $BITMAP marks in use (blocks not
// in use may hold stale entries and are skipped, as Windows and ntfs-3g
// skip them).

type ntfsIndexEntry struct {
	num       uint64
	name      string
	namespace uint8
}

const ntfsMaxIndexBlocks = 1 << 20

// dirEntries lists the $I30 index of directory f.
func (n *ntfsFS) dirEntries(f *ntfsFile) ([]ntfsIndexEntry, error) {
	root := f.attr(ntfsAttrIndexRoot, "$I30")
	if root == nil || !root.resident {
		return nil, fmt.Errorf("mft record %d has no $I30 index root: %w", f.num, ErrCorrupt)
	}
	v := root.value
	if len(v) < 32 {
		return nil, fmt.Errorf("mft record %d: index root too short: %w", f.num, ErrCorrupt)
	}
	blockSize := int64(binary.LittleEndian.Uint32(v[8:]))
	out, err := parseIndexNode(v[16:], nil)
	if err != nil {
		return nil, fmt.Errorf("mft record %d index root: %w", f.num, err)
	}
	alloc := f.attr(ntfsAttrIndexAlloc, "$I30")
	if alloc == nil {
		return out, nil
	}
	if blockSize < 512 || blockSize > 64<<10 || blockSize&(blockSize-1) != 0 {
		return nil, fmt.Errorf("mft record %d: index block size %d: %w", f.num, blockSize, ErrCorrupt)
	}
	bmp, err := n.attrBytes(f, ntfsAttrBitmap, "$I30", 1<<20)
	if err != nil {
		return nil, fmt.Errorf("mft record %d index bitmap: %w", f.num, err)
	}
	st, err := newNTFSStream(n.meta, n.cs, n.size, alloc)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, blockSize)
	for i := int64(0); i*blockSize < alloc.dataSize; i++ {
		if i >= ntfsMaxIndexBlocks || i/8 >= int64(len(bmp)) {
			break
		}
		if bmp[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		if _, err := st.ReadAt(buf, i*blockSize); err != nil {
			return nil, fmt.Errorf("mft record %d index block %d: %w", f.num, i, err)
		}
		if string(buf[:4]) != "INDX" {
			return nil, fmt.Errorf("mft record %d index block %d magic: %w", f.num, i, ErrCorrupt)
		}
		if err := applyFixups(buf); err != nil {
			return nil, fmt.Errorf("mft record %d index block %d: %w", f.num, i, err)
		}
		if out, err = parseIndexNode(buf[0x18:], out); err != nil {
			return nil, fmt.Errorf("mft record %d index block %d: %w", f.num, i, err)
		}
		if len(out) > maxDirEntries {
			return nil, fmt.Errorf("mft record %d: over %d index entries: %w", f.num, maxDirEntries, ErrCorrupt)
		}
	}
	return out, nil
}

// parseIndexNode appends the $FILE_NAME entries of one index node (b
// starts at the node header) to out.
func parseIndexNode(b []byte, out []ntfsIndexEntry) ([]ntfsIndexEntry, error) {
	le := binary.LittleEndian
	if len(b) < 16 {
		return nil, fmt.Errorf("index node header: %w", ErrCorrupt)
	}
	start, end := int(le.Uint32(b)), int(le.Uint32(b[4:]))
	if start < 16 || end > len(b) || start > end {
		return nil, fmt.Errorf("index node entries %d-%d: %w", start, end, ErrCorrupt)
	}
	for p := start; ; {
		if p+16 > end {
			return nil, fmt.Errorf("index entry runs off the node: %w", ErrCorrupt)
		}
		l, kl, flags := int(le.Uint16(b[p+8:])), int(le.Uint16(b[p+10:])), le.Uint16(b[p+12:])
		if flags&2 != 0 { // last entry: no key
			return out, nil
		}
		if l < 16 || p+l > end || 16+kl > l || kl < 66 {
			return nil, fmt.Errorf("index entry length %d key %d: %w", l, kl, ErrCorrupt)
		}
		key := b[p+16 : p+16+kl]
		nl := int(key[64])
		if 66+2*nl > kl {
			return nil, fmt.Errorf("index entry name length %d: %w", nl, ErrCorrupt)
		}
		out = append(out, ntfsIndexEntry{num: le.Uint64(b[p:]) & ntfsMFTRefMask,
			name: utf16le(key[66 : 66+2*nl]), namespace: key[65]})
		p += l
	}
}
