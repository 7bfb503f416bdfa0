package fsread

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// NTFS, read directly: boot sector, $MFT (bootstrapped from its own
// record), records with their attribute lists, $I30 indexes, data
// streams (resident, sparse, compressed). Entries are shown as ntfs-3g
// shows them: DOS 8.3 aliases and metafiles (records below 16) are
// hidden, Interix special files (ntfs-3g's FIFOs, sockets, devices and
// symlinks) and reparse-point symlinks get their types, named data
// streams are listed as "file:stream" and read as "user.NAME" xattrs.
const (
	ntfsRootMFT       = 5
	ntfsFirstUserMFT  = 16
	ntfsTagSymlink    = 0xA000000C
	ntfsTagMountPoint = 0xA0000003
	ntfsTagLXSymlink  = 0xA000001D
	ntfsTagAFUnix     = 0x80000023
	ntfsTagLXFIFO     = 0x80000024
	ntfsTagLXChr      = 0x80000025
	ntfsTagLXBlk      = 0x80000026

	ntfsAttrReadOnly = 0x0001
	ntfsAttrHidden   = 0x0002
	ntfsAttrSystem   = 0x0004
	ntfsAttrSparse   = 0x0200
	ntfsAttrReparseP = 0x0400

	ntfsEpochDelta = 116444736000000000 // 1601-01-01 to 1970-01-01 in 100 ns
	ntfsFileCache  = 4096
)

type ntfsFS struct {
	r       io.ReaderAt // the volume, for file data
	meta    *metaCache  // the volume, for metadata
	size    int64
	cs      int64 // cluster size
	recSize int64
	mft     *ntfsStream

	mu    sync.Mutex
	files map[uint64]*ntfsFile // recently loaded records
}

// ntfsFile is a file's base record with the attributes of all its
// records, fragments merged.
type ntfsFile struct {
	num   uint64
	links uint16
	dir   bool
	attrs []ntfsAttr
}

func (f *ntfsFile) attr(typ uint32, name string) *ntfsAttr {
	for i := range f.attrs {
		if f.attrs[i].typ == typ && f.attrs[i].name == name {
			return &f.attrs[i]
		}
	}
	return nil
}

func openNTFS(ctx context.Context, r io.ReaderAt, size int64) (f FS, err error) {
	defer recoverCorrupt(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	boot := make([]byte, 512)
	if _, err := r.ReadAt(boot, 0); err != nil {
		return nil, fmt.Errorf("read ntfs boot sector: %w", err)
	}
	le := binary.LittleEndian
	bps := int64(le.Uint16(boot[0x0B:]))
	spc := int64(boot[0x0D])
	if spc > 0x80 {
		spc = 1 << (256 - spc)
	}
	cs := bps * spc
	rec := int64(int8(boot[0x40]))
	if rec > 0 {
		rec *= cs
	} else if rec < 0 && rec > -32 {
		rec = 1 << -rec
	}
	mftLCN := int64(le.Uint64(boot[0x30:]))
	switch {
	case string(boot[3:11]) != "NTFS    ":
		return nil, fmt.Errorf("ntfs boot sector signature: %w", ErrCorrupt)
	case bps < 256 || bps > 4096 || bps&(bps-1) != 0 || cs == 0 || cs > 2<<20:
		return nil, fmt.Errorf("ntfs sector size %d, cluster size %d: %w", bps, cs, ErrCorrupt)
	case rec < 256 || rec > 64<<10 || rec&(rec-1) != 0:
		return nil, fmt.Errorf("ntfs mft record size %d: %w", rec, ErrCorrupt)
	case mftLCN <= 0 || mftLCN > size/cs-1:
		return nil, fmt.Errorf("ntfs $MFT at cluster %d: %w", mftLCN, ErrCorrupt)
	}
	n := &ntfsFS{r: r, meta: newMetaCache(r, size), size: size, cs: cs, recSize: rec, files: map[uint64]*ntfsFile{}}
	if err := n.bootstrapMFT(mftLCN * cs); err != nil {
		return nil, err
	}
	root, err := n.load(ntfsRootMFT)
	if err != nil {
		return nil, fmt.Errorf("ntfs root directory: %w", err)
	}
	if !root.dir {
		return nil, fmt.Errorf("ntfs root record is not a directory: %w", ErrCorrupt)
	}
	return n, nil
}

// bootstrapMFT reads $MFT's own record at off and builds the stream of
// all records (following its attribute list when $MFT is fragmented).
func (n *ntfsFS) bootstrapMFT(off int64) error {
	b := make([]byte, n.recSize)
	if _, err := n.meta.ReadAt(b, off); err != nil {
		return fmt.Errorf("read $MFT record: %w", err)
	}
	if err := applyFixups(b); err != nil {
		return fmt.Errorf("$MFT record: %w", err)
	}
	rec, err := parseNTFSRecord(b, 0)
	if err != nil {
		return err
	}
	data := (&ntfsFile{attrs: rec.attrs}).attr(ntfsAttrData, "")
	if data == nil || data.resident {
		return fmt.Errorf("$MFT has no non-resident data: %w", ErrCorrupt)
	}
	if n.mft, err = newNTFSStream(n.meta, n.cs, n.size, data); err != nil {
		return err
	}
	if list := (&ntfsFile{attrs: rec.attrs}).attr(ntfsAttrList, ""); list != nil {
		f, err := n.withExtensions(rec)
		if err != nil {
			return fmt.Errorf("$MFT attribute list: %w", err)
		}
		if data = f.attr(ntfsAttrData, ""); data == nil {
			return fmt.Errorf("$MFT data lost in its attribute list: %w", ErrCorrupt)
		}
		if n.mft, err = newNTFSStream(n.meta, n.cs, n.size, data); err != nil {
			return err
		}
	}
	return nil
}

// record reads and parses MFT record num.
func (n *ntfsFS) record(num uint64) (*ntfsRecord, error) {
	if num > uint64(n.mft.size/n.recSize) {
		return nil, fmt.Errorf("mft record %d beyond $MFT: %w", num, ErrCorrupt)
	}
	b := make([]byte, n.recSize)
	if _, err := n.mft.ReadAt(b, int64(num)*n.recSize); err != nil {
		return nil, fmt.Errorf("read mft record %d: %w", num, err)
	}
	if err := applyFixups(b); err != nil {
		return nil, fmt.Errorf("mft record %d: %w", num, err)
	}
	return parseNTFSRecord(b, num)
}

// load returns file num with all its attributes.
func (n *ntfsFS) load(num uint64) (*ntfsFile, error) {
	n.mu.Lock()
	f, ok := n.files[num]
	n.mu.Unlock()
	if ok {
		return f, nil
	}
	rec, err := n.record(num)
	if err != nil {
		return nil, err
	}
	if rec.flags&ntfsRecInUse == 0 || rec.base != 0 {
		return nil, fmt.Errorf("mft record %d is not a file in use: %w", num, ErrCorrupt)
	}
	if f, err = n.withExtensions(rec); err != nil {
		return nil, fmt.Errorf("mft record %d: %w", num, err)
	}
	n.mu.Lock()
	if len(n.files) >= ntfsFileCache {
		clear(n.files)
	}
	n.files[num] = f
	n.mu.Unlock()
	return f, nil
}

// withExtensions gathers the attributes of rec and of the extension
// records its attribute list names.
func (n *ntfsFS) withExtensions(rec *ntfsRecord) (*ntfsFile, error) {
	f := &ntfsFile{num: rec.num, links: rec.links, dir: rec.flags&ntfsRecDir != 0}
	attrs := rec.attrs
	if list := (&ntfsFile{attrs: rec.attrs}).attr(ntfsAttrList, ""); list != nil {
		b, err := n.value(list, 16<<20)
		if err != nil {
			return nil, err
		}
		ents, err := parseAttrList(b)
		if err != nil {
			return nil, err
		}
		seen := map[uint64]bool{rec.num: true}
		for _, e := range ents {
			if seen[e.ref] {
				continue
			}
			seen[e.ref] = true
			if len(seen) > ntfsMaxExtRecs {
				return nil, fmt.Errorf("more than %d extension records: %w", ntfsMaxExtRecs, ErrCorrupt)
			}
			ext, err := n.record(e.ref)
			if err != nil {
				return nil, err
			}
			if ext.base != rec.num {
				return nil, fmt.Errorf("extension record %d belongs to %d: %w", e.ref, ext.base, ErrCorrupt)
			}
			attrs = append(attrs, ext.attrs...)
		}
	}
	merged, err := mergeNTFSAttrs(attrs)
	if err != nil {
		return nil, err
	}
	f.attrs = merged
	return f, nil
}

// value reads a whole attribute value of at most limit bytes.
func (n *ntfsFS) value(a *ntfsAttr, limit int64) ([]byte, error) {
	if a.resident {
		return a.value, nil
	}
	if a.dataSize > limit {
		return nil, fmt.Errorf("attribute of %d bytes: %w", a.dataSize, ErrCorrupt)
	}
	st, err := newNTFSStream(n.meta, n.cs, n.size, a)
	if err != nil {
		return nil, err
	}
	b := make([]byte, a.dataSize)
	if _, err := st.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// attrBytes reads the value of attribute (typ, name) of f, nil if absent.
func (n *ntfsFS) attrBytes(f *ntfsFile, typ uint32, name string, limit int64) ([]byte, error) {
	a := f.attr(typ, name)
	if a == nil {
		return nil, nil
	}
	return n.value(a, limit)
}

func (n *ntfsFS) Type() string { return "ntfs" }

// visible reports whether ntfs-3g lists an index entry.
func (e ntfsIndexEntry) visible() bool {
	return e.namespace != ntfsNamespaceDOS && e.num >= ntfsFirstUserMFT && e.name != "" && e.name != "."
}

func (n *ntfsFS) children(ctx context.Context, p string, dir *ntfsFile) ([]Entry, error) {
	if !dir.dir {
		return nil, fmt.Errorf("%s: %w", p, ErrNotDir)
	}
	idx, err := n.dirEntries(dir)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, ie := range idx {
		if !ie.visible() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cp := childPath(p, ie.name)
		f, err := n.load(ie.num)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cp, err)
		}
		e, err := n.entry(cp, ie.name, f)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		out = append(out, streams(f, e)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// lookup walks p from the root; names match exactly, then
// case-insensitively (NTFS names are case-insensitive by default). A
// final "name:stream" that names no file names a data stream.
func (n *ntfsFS) lookup(ctx context.Context, p string) (*ntfsFile, Entry, error) {
	clean, parts := cleanPath(p)
	cur, err := n.load(ntfsRootMFT)
	if err != nil {
		return nil, Entry{}, err
	}
	if len(parts) == 0 {
		e, err := n.entry("/", "/", cur)
		return cur, e, err
	}
	for i, name := range parts {
		if err := ctx.Err(); err != nil {
			return nil, Entry{}, err
		}
		if !cur.dir {
			return nil, Entry{}, fmt.Errorf("%s: %w", clean, ErrNotDir)
		}
		idx, err := n.dirEntries(cur)
		if err != nil {
			return nil, Entry{}, err
		}
		last := i == len(parts)-1
		stream := ""
		found := findIndex(idx, name)
		if found == nil && last {
			if k := strings.LastIndexByte(name, ':'); k > 0 {
				if found = findIndex(idx, name[:k]); found != nil {
					stream = name[k+1:]
				}
			}
		}
		if found == nil {
			return nil, Entry{}, fmt.Errorf("%s: %w", clean, ErrNotExist)
		}
		if cur, err = n.load(found.num); err != nil {
			return nil, Entry{}, fmt.Errorf("%s: %w", clean, err)
		}
		if last {
			ep := clean
			if stream != "" {
				ep = clean[:len(clean)-len(stream)-1]
			}
			e, err := n.entry(ep, found.name, cur)
			if err != nil || stream == "" {
				return cur, e, err
			}
			for _, s := range streams(cur, e) {
				if s.Stream == stream {
					return cur, s, nil
				}
			}
			return nil, Entry{}, fmt.Errorf("%s: %w", clean, ErrNotExist)
		}
	}
	return nil, Entry{}, fmt.Errorf("%s: %w", clean, ErrNotExist)
}

func findIndex(idx []ntfsIndexEntry, name string) *ntfsIndexEntry {
	for i := range idx {
		if idx[i].visible() && idx[i].name == name {
			return &idx[i]
		}
	}
	for i := range idx {
		if idx[i].visible() && strings.EqualFold(idx[i].name, name) {
			return &idx[i]
		}
	}
	return nil
}

func (n *ntfsFS) Stat(ctx context.Context, p string) (e Entry, err error) {
	defer recoverCorrupt(&err)
	_, e, err = n.lookup(ctx, p)
	return e, err
}

func (n *ntfsFS) ReadDir(ctx context.Context, p string) (out []Entry, err error) {
	defer recoverCorrupt(&err)
	f, e, err := n.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	if e.Type == TypeStream {
		return nil, fmt.Errorf("%s: %w", e.Path, ErrNotDir)
	}
	return n.children(ctx, e.Path, f)
}

func (n *ntfsFS) List(ctx context.Context, dir Entry) (out []Entry, err error) {
	defer recoverCorrupt(&err)
	f, err := n.load(dir.Ino)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir.Path, err)
	}
	if dir.Type == TypeStream {
		return nil, fmt.Errorf("%s: %w", dir.Path, ErrNotDir)
	}
	return n.children(ctx, dir.Path, f)
}

func (n *ntfsFS) Open(ctx context.Context, p string) (fl File, err error) {
	defer recoverCorrupt(&err)
	f, e, err := n.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	return n.open(f, e)
}

func (n *ntfsFS) OpenEntry(ctx context.Context, e Entry) (fl File, err error) {
	defer recoverCorrupt(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := n.load(e.Ino)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	cur, err := n.entry(e.Path, e.Name, f)
	if err != nil {
		return nil, err
	}
	if e.Type == TypeStream {
		cur.Type, cur.Stream = TypeStream, e.Stream
	}
	return n.open(f, cur)
}

func (n *ntfsFS) open(f *ntfsFile, e Entry) (File, error) {
	name := ""
	switch e.Type {
	case TypeDir:
		return nil, fmt.Errorf("open %s: %w", e.Path, ErrIsDir)
	case TypeStream:
		name = e.Stream
	case TypeFile:
	default:
		return nil, fmt.Errorf("open %s: %w", e.Path, ErrNotRegular)
	}
	a := f.attr(ntfsAttrData, name)
	if a == nil {
		if name != "" {
			return nil, fmt.Errorf("open %s: %w", e.Path, ErrNotExist)
		}
		return newFile(&byteReader{}, 0, nil), nil
	}
	st, err := newNTFSStream(n.r, n.cs, n.size, a)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", e.Path, err)
	}
	return newFile(safeReaderAt{st}, st.size, st.extents()), nil
}

func (n *ntfsFS) Xattrs(ctx context.Context, e Entry) (x []Xattr, err error) {
	defer recoverCorrupt(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := n.load(e.Ino)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	for i := range f.attrs {
		a := &f.attrs[i]
		if a.typ != ntfsAttrData || a.name == "" || a.dataSize > xattrMaxValue {
			continue
		}
		st, err := newNTFSStream(n.r, n.cs, n.size, a)
		if err != nil {
			return nil, fmt.Errorf("%s: stream %s: %w", e.Path, a.name, err)
		}
		v := make([]byte, a.dataSize)
		if _, err := st.ReadAt(v, 0); err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: stream %s: %w", e.Path, a.name, err)
		}
		x = append(x, Xattr{Name: "user." + a.name, Value: v})
	}
	sort.Slice(x, func(i, j int) bool { return x[i].Name < x[j].Name })
	return x, nil
}
