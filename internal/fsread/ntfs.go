package fsread

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"unicode/utf16"

	ntfs "www.velocidex.com/golang/go-ntfs/parser"
)

const (
	ntfsRootMFT       = 5
	ntfsFirstUserMFT  = 24 // records below this are metafiles ($MFT, $Bitmap, ...)
	ntfsAttrReparse   = 0xC0
	ntfsTagSymlink    = 0xA000000C
	ntfsTagMountPoint = 0xA0000003
	ntfsPageSize      = 64 << 10
	ntfsCachePages    = 64
)

// ntfsFS reads NTFS through www.velocidex.com/golang/go-ntfs, adding exact
// (then case-insensitive) path lookup, symlink reparse points and panic
// containment.
type ntfsFS struct {
	c *ntfs.NTFSContext
}

func openNTFS(ctx context.Context, r io.ReaderAt, _ int64) (f FS, err error) {
	defer recoverCorrupt(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pr, err := ntfs.NewPagedReader(r, ntfsPageSize, ntfsCachePages)
	if err != nil {
		return nil, fmt.Errorf("ntfs page cache: %w", err)
	}
	c, err := ntfs.GetNTFSContext(pr, 0)
	if err != nil {
		return nil, fmt.Errorf("ntfs boot sector: %v: %w", err, ErrCorrupt)
	}
	if _, err := c.GetMFT(ntfsRootMFT); err != nil {
		return nil, fmt.Errorf("ntfs root directory: %v: %w", err, ErrCorrupt)
	}
	return &ntfsFS{c: c}, nil
}

func (n *ntfsFS) Type() string { return "ntfs" }

type ntfsChild struct {
	name string
	mft  int64
}

// children lists a directory's index by name. DOS 8.3 aliases are
// skipped; hard links appear under each of their names.
func (n *ntfsFS) children(dir *ntfs.MFT_ENTRY, root bool) []ntfsChild {
	byName := map[string]ntfsChild{}
	for _, rec := range dir.Dir(n.c) {
		fn := rec.File()
		id := int64(rec.MftReference())
		if fn.NameType().Name == "DOS" || (root && id < ntfsFirstUserMFT) {
			continue
		}
		name := fn.Name()
		if name == "." || name == "" {
			continue
		}
		byName[name] = ntfsChild{name: name, mft: id}
	}
	out := make([]ntfsChild, 0, len(byName))
	for _, c := range byName {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// lookup walks p from the root; intermediate symlinks are not followed
// (NTFS reparse targets are host paths).
func (n *ntfsFS) lookup(ctx context.Context, p string) (*ntfs.MFT_ENTRY, string, error) {
	clean, parts := cleanPath(p)
	cur, err := n.c.GetMFT(ntfsRootMFT)
	if err != nil {
		return nil, clean, fmt.Errorf("ntfs root: %v: %w", err, ErrCorrupt)
	}
	for i, name := range parts {
		if err := ctx.Err(); err != nil {
			return nil, clean, err
		}
		if !cur.IsDir(n.c) {
			return nil, clean, fmt.Errorf("%s: %w", clean, ErrNotDir)
		}
		kids := n.children(cur, i == 0)
		found := int64(-1)
		for _, k := range kids {
			if k.name == name {
				found = k.mft
				break
			}
		}
		if found < 0 { // NTFS names are case-insensitive by default
			for _, k := range kids {
				if strings.EqualFold(k.name, name) {
					found = k.mft
					break
				}
			}
		}
		if found < 0 {
			return nil, clean, fmt.Errorf("%s: %w", clean, ErrNotExist)
		}
		if cur, err = n.c.GetMFT(found); err != nil {
			return nil, clean, fmt.Errorf("%s: mft %d: %v: %w", clean, found, err, ErrCorrupt)
		}
	}
	return cur, clean, nil
}

func (n *ntfsFS) entry(p string, m *ntfs.MFT_ENTRY) (Entry, error) {
	var info *ntfs.FileInfo
	for _, fi := range ntfs.Stat(n.c, m) {
		if !strings.Contains(fi.Name, ":") {
			info = fi
			break
		}
	}
	if info == nil {
		return Entry{}, fmt.Errorf("%s: no standard information or name: %w", p, ErrCorrupt)
	}
	e := Entry{Name: path.Base(p), Path: p, ModTime: info.Mtime.UTC()}
	si, err := m.StandardInformation(n.c)
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %v: %w", p, err, ErrCorrupt)
	}
	flags := si.Flags()
	if flags.IsSet("REPARSE_POINT") {
		if target, ok := n.reparseTarget(m); ok {
			e.Type, e.Mode, e.Target = "symlink", fs.ModeSymlink|0o777, target
			return e, nil
		}
	}
	if m.IsDir(n.c) {
		e.Type, e.Mode = "dir", fs.ModeDir|0o755
		return e, nil
	}
	// ntfs-3g (and Interix/SFU) store symlinks as system files holding
	// "IntxLNK\x01" and the UTF-16 target.
	if flags.IsSet("SYSTEM") && info.Size > 8 && info.Size <= 8+2*4096 {
		if target, ok := n.interixTarget(m, info.Size); ok {
			e.Type, e.Mode, e.Target = "symlink", fs.ModeSymlink|0o777, target
			return e, nil
		}
	}
	e.Type, e.Mode, e.Size = "file", 0o644, info.Size
	return e, nil
}

// reparseTarget decodes a symlink or junction reparse point.
func (n *ntfsFS) reparseTarget(m *ntfs.MFT_ENTRY) (string, bool) {
	rng, err := ntfs.OpenStream(n.c, m, ntfsAttrReparse, ntfs.WILDCARD_STREAM_ID, ntfs.WILDCARD_STREAM_NAME)
	if err != nil {
		return "", false
	}
	buf := make([]byte, 16<<10)
	k, _ := rng.ReadAt(buf, 0)
	t, err := parseReparse(buf[:k])
	return t, err == nil
}

func (n *ntfsFS) interixTarget(m *ntfs.MFT_ENTRY, size int64) (string, bool) {
	rng, err := ntfs.OpenStream(n.c, m, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, "")
	if err != nil {
		return "", false
	}
	buf := make([]byte, size)
	k, _ := rng.ReadAt(buf, 0)
	t, err := parseInterix(buf[:k])
	return t, err == nil
}

// parseInterix decodes an Interix symlink body.
func parseInterix(b []byte) (string, error) {
	const magic = "IntxLNK\x01"
	if len(b) < len(magic) || string(b[:len(magic)]) != magic || (len(b)-len(magic))%2 != 0 {
		return "", fmt.Errorf("not an interix symlink: %w", ErrCorrupt)
	}
	u := make([]uint16, (len(b)-len(magic))/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[len(magic)+2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// parseReparse decodes the print name of a symlink or mount-point reparse
// buffer, converting backslashes to slashes.
func parseReparse(b []byte) (string, error) {
	le := binary.LittleEndian
	if len(b) < 16 {
		return "", fmt.Errorf("reparse buffer too short: %w", ErrCorrupt)
	}
	tag := le.Uint32(b)
	body := 16
	switch tag {
	case ntfsTagSymlink:
		body = 20
	case ntfsTagMountPoint:
	default:
		return "", fmt.Errorf("reparse tag %#x unsupported: %w", tag, ErrCorrupt)
	}
	subOff, subLen := int(le.Uint16(b[8:])), int(le.Uint16(b[10:]))
	prOff, prLen := int(le.Uint16(b[12:])), int(le.Uint16(b[14:]))
	off, l := prOff, prLen
	if l == 0 {
		off, l = subOff, subLen
	}
	if body+off+l > len(b) || l%2 != 0 {
		return "", fmt.Errorf("reparse name out of range: %w", ErrCorrupt)
	}
	u := make([]uint16, l/2)
	for i := range u {
		u[i] = le.Uint16(b[body+off+2*i:])
	}
	return strings.ReplaceAll(string(utf16.Decode(u)), `\`, "/"), nil
}

func (n *ntfsFS) Stat(ctx context.Context, p string) (e Entry, err error) {
	defer recoverCorrupt(&err)
	m, clean, err := n.lookup(ctx, p)
	if err != nil {
		return Entry{}, err
	}
	return n.entry(clean, m)
}

func (n *ntfsFS) ReadDir(ctx context.Context, p string) (out []Entry, err error) {
	defer recoverCorrupt(&err)
	dir, clean, err := n.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	if !dir.IsDir(n.c) {
		return nil, fmt.Errorf("%s: %w", clean, ErrNotDir)
	}
	for _, k := range n.children(dir, clean == "/") {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := n.c.GetMFT(k.mft)
		if err != nil {
			return nil, fmt.Errorf("%s: mft %d: %v: %w", path.Join(clean, k.name), k.mft, err, ErrCorrupt)
		}
		e, err := n.entry(path.Join(clean, k.name), m)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (n *ntfsFS) Open(ctx context.Context, p string) (f File, err error) {
	defer recoverCorrupt(&err)
	m, clean, err := n.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	e, err := n.entry(clean, m)
	if err != nil {
		return nil, err
	}
	switch e.Type {
	case "dir":
		return nil, fmt.Errorf("open %s: %w", clean, ErrIsDir)
	case "symlink":
		return nil, fmt.Errorf("open %s: %w", clean, ErrNotRegular)
	}
	if e.Size == 0 {
		return newFile(&byteReader{}, 0), nil
	}
	rng, err := ntfs.OpenStream(n.c, m, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, "")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open %s: no data stream: %w", clean, ErrCorrupt)
		}
		return nil, fmt.Errorf("open %s: %v: %w", clean, err, ErrCorrupt)
	}
	return newFile(safeReaderAt{rng}, e.Size), nil
}
