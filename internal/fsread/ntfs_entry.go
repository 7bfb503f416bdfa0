package fsread

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode/utf16"
)

// How NTFS records become entries: times, types (directories, files,
// reparse-point and Interix symlinks and special files) and streams, as
// ntfs-3g shows them.

func ntfsTime(t uint64) time.Time {
	d := int64(t) - ntfsEpochDelta
	return unixTime(floorDiv(d, 1e7), (d-floorDiv(d, 1e7)*1e7)*100)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

// entry describes file f found as name at path p (as ntfs-3g shows it).
func (n *ntfsFS) entry(p, name string, f *ntfsFile) (Entry, error) {
	si := f.attr(ntfsAttrStdInfo, "")
	if si == nil || !si.resident || len(si.value) < 0x24 {
		return Entry{}, fmt.Errorf("%s: no standard information: %w", p, ErrCorrupt)
	}
	le := binary.LittleEndian
	v := si.value
	attrs := le.Uint32(v[0x20:])
	e := Entry{Name: name, Path: p, Ino: f.num, NoOwner: true, Nlink: uint32(f.links),
		BTime: ntfsTime(le.Uint64(v)), ModTime: ntfsTime(le.Uint64(v[8:])),
		CTime: ntfsTime(le.Uint64(v[0x10:])), ATime: ntfsTime(le.Uint64(v[0x18:]))}
	if attrs&ntfsAttrReparseP != 0 && n.reparse(f, &e) {
		return e, nil
	}
	if f.dir {
		e.Type, e.Mode, e.Nlink = TypeDir, fs.ModeDir|0o755, 1
		if ia := f.attr(ntfsAttrIndexAlloc, "$I30"); ia != nil {
			e.Size, e.Allocated = ia.dataSize, ia.allocSize
		}
		return e, nil
	}
	e.Type, e.Mode = TypeFile, 0o644
	if attrs&ntfsAttrReadOnly != 0 {
		e.Mode = 0o444
	}
	data := f.attr(ntfsAttrData, "")
	if data != nil {
		e.Size, e.Allocated = data.dataSize, allocated(data)
	}
	if attrs&ntfsAttrSystem != 0 && data != nil {
		n.interix(f, data, attrs, &e)
	}
	return e, nil
}

func allocated(a *ntfsAttr) int64 {
	switch {
	case a.resident:
		return 0
	case a.flags&(ntfsFlagCompressed|ntfsFlagSparse) != 0:
		return a.compSize
	}
	return a.allocSize
}

// interix recognises ntfs-3g's special files: system files of 0 bytes
// (FIFO) and 1 byte (socket) unless hidden, and "Intx" files holding a
// device's numbers or a symlink target.
func (n *ntfsFS) interix(f *ntfsFile, data *ntfsAttr, attrs uint32, e *Entry) {
	size := data.dataSize
	if attrs&ntfsAttrHidden == 0 {
		switch size {
		case 0:
			e.Type, e.Mode = TypeFIFO, fs.ModeNamedPipe|0o644
		case 1:
			e.Type, e.Mode = TypeSocket, fs.ModeSocket|0o644
		}
	}
	if size <= 8 || size > 8+2*4096 {
		return
	}
	b, err := n.value(data, size)
	if err != nil {
		return
	}
	le := binary.LittleEndian
	switch magic := string(b[:8]); {
	case (magic == "IntxBLK\x00" || magic == "IntxCHR\x00") && size == 24:
		e.Type, e.Mode = TypeBlockDev, fs.ModeDevice|0o644
		if magic == "IntxCHR\x00" {
			e.Type, e.Mode = TypeCharDev, fs.ModeDevice|fs.ModeCharDevice|0o644
		}
		e.Major, e.Minor = uint32(le.Uint64(b[8:])), uint32(le.Uint64(b[16:]))
	case magic == "IntxLNK\x01":
		if t, err := parseInterix(b); err == nil {
			e.Type, e.Mode, e.Target, e.Size = TypeSymlink, fs.ModeSymlink|0o777, t, int64(len(t))
		}
	}
}

// reparse types a reparse point: symlinks and junctions, WSL symlinks
// and special files. It reports false for tags it does not know.
func (n *ntfsFS) reparse(f *ntfsFile, e *Entry) bool {
	b, err := n.attrBytes(f, ntfsAttrReparse, "", 64<<10)
	if err != nil || len(b) < 8 {
		return false
	}
	switch binary.LittleEndian.Uint32(b) {
	case ntfsTagSymlink, ntfsTagMountPoint:
		t, err := parseReparse(b)
		if err != nil {
			return false
		}
		e.Type, e.Mode, e.Target, e.Size = TypeSymlink, fs.ModeSymlink|0o777, t, int64(len(t))
	case ntfsTagLXSymlink:
		if len(b) < 12 {
			return false
		}
		t := string(b[12:])
		e.Type, e.Mode, e.Target, e.Size = TypeSymlink, fs.ModeSymlink|0o777, t, int64(len(t))
	case ntfsTagAFUnix:
		e.Type, e.Mode = TypeSocket, fs.ModeSocket|0o644
	case ntfsTagLXFIFO:
		e.Type, e.Mode = TypeFIFO, fs.ModeNamedPipe|0o644
	case ntfsTagLXChr:
		e.Type, e.Mode = TypeCharDev, fs.ModeDevice|fs.ModeCharDevice|0o644
	case ntfsTagLXBlk:
		e.Type, e.Mode = TypeBlockDev, fs.ModeDevice|0o644
	default:
		return false
	}
	return true
}

// parseInterix decodes an Interix symlink body.
func parseInterix(b []byte) (string, error) {
	const magic = "IntxLNK\x01"
	if len(b) < len(magic) || string(b[:len(magic)]) != magic || (len(b)-len(magic))%2 != 0 {
		return "", fmt.Errorf("not an interix symlink: %w", ErrCorrupt)
	}
	return utf16le(b[len(magic):]), nil
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

// streams lists f's named data streams as entries next to base.
func streams(f *ntfsFile, base Entry) []Entry {
	var out []Entry
	for _, a := range f.attrs {
		if a.typ != ntfsAttrData || a.name == "" {
			continue
		}
		s := base
		s.Name, s.Path, s.Stream = base.Name+":"+a.name, base.Path+":"+a.name, a.name
		s.Type, s.Mode, s.Size, s.Allocated, s.Target = TypeStream, 0o644, a.dataSize, allocated(&a), ""
		s.Major, s.Minor = 0, 0
		out = append(out, s)
	}
	return out
}
