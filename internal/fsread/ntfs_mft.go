package fsread

import (
	"encoding/binary"
	"fmt"
	"sort"
	"unicode/utf16"
	"unicode/utf8"
)

// NTFS MFT records and their attributes.
const (
	ntfsAttrStdInfo    = 0x10
	ntfsAttrList       = 0x20
	ntfsAttrFileName   = 0x30
	ntfsAttrData       = 0x80
	ntfsAttrIndexRoot  = 0x90
	ntfsAttrIndexAlloc = 0xA0
	ntfsAttrBitmap     = 0xB0
	ntfsAttrReparse    = 0xC0
	ntfsAttrEnd        = 0xFFFFFFFF

	ntfsRecInUse = 0x1
	ntfsRecDir   = 0x2

	ntfsFlagCompressed = 0x0001
	ntfsFlagEncrypted  = 0x4000
	ntfsFlagSparse     = 0x8000

	ntfsMaxAttrs     = 4096
	ntfsMaxRuns      = 1 << 22
	ntfsMaxExtRecs   = 1024
	ntfsMFTRefMask   = 1<<48 - 1
	ntfsNamespaceDOS = 2
)

// ntfsRun is a run of clusters: n clusters at vcn stored at lcn, or a
// hole when lcn < 0.
type ntfsRun struct{ vcn, lcn, n int64 }

// ntfsAttr is one attribute (all fragments merged when non-resident).
type ntfsAttr struct {
	typ      uint32
	name     string
	flags    uint16
	id       uint16
	resident bool
	value    []byte // resident value
	startVCN int64
	runs     []ntfsRun
	cuShift  uint8
	// Sizes of a non-resident attribute (from its first fragment).
	allocSize, dataSize, initSize, compSize int64
}

// ntfsRecord is one MFT record's header and attributes.
type ntfsRecord struct {
	num   uint64
	seq   uint16
	links uint16
	flags uint16
	base  uint64
	attrs []ntfsAttr
}

// applyFixups checks and undoes the update sequence array of a
// multi-sector record (MFT or index record) in place.
func applyFixups(b []byte) error {
	le := binary.LittleEndian
	if len(b) < 8 {
		return fmt.Errorf("ntfs record too short: %w", ErrCorrupt)
	}
	off, count := int(le.Uint16(b[4:])), int(le.Uint16(b[6:]))
	if count == 0 || off+2*count > len(b) || (count-1)*512 > len(b) {
		return fmt.Errorf("ntfs update sequence %d at %d: %w", count, off, ErrCorrupt)
	}
	usn := b[off : off+2]
	for i := 1; i < count; i++ {
		end := i*512 - 2
		if b[end] != usn[0] || b[end+1] != usn[1] {
			return fmt.Errorf("ntfs update sequence mismatch in sector %d: %w", i, ErrCorrupt)
		}
		copy(b[end:end+2], b[off+2*i:off+2*i+2])
	}
	return nil
}

// parseNTFSRecord decodes a fixed-up MFT record.
func parseNTFSRecord(b []byte, num uint64) (*ntfsRecord, error) {
	le := binary.LittleEndian
	if len(b) < 48 || string(b[:4]) != "FILE" {
		return nil, fmt.Errorf("mft record %d magic: %w", num, ErrCorrupt)
	}
	rec := &ntfsRecord{num: num, seq: le.Uint16(b[0x10:]), links: le.Uint16(b[0x12:]),
		flags: le.Uint16(b[0x16:]), base: le.Uint64(b[0x20:]) & ntfsMFTRefMask}
	used := int(le.Uint32(b[0x18:]))
	if used > len(b) {
		used = len(b)
	}
	for p := int(le.Uint16(b[0x14:])); ; {
		if p+8 > used || len(rec.attrs) > ntfsMaxAttrs {
			return nil, fmt.Errorf("mft record %d: attribute list runs off the record: %w", num, ErrCorrupt)
		}
		typ := le.Uint32(b[p:])
		if typ == ntfsAttrEnd {
			return rec, nil
		}
		alen := int(le.Uint32(b[p+4:]))
		if alen < 16 || p+alen > used {
			return nil, fmt.Errorf("mft record %d: attribute length %d: %w", num, alen, ErrCorrupt)
		}
		a, err := parseNTFSAttr(b[p : p+alen])
		if err != nil {
			return nil, fmt.Errorf("mft record %d: %w", num, err)
		}
		rec.attrs = append(rec.attrs, a)
		p += alen
	}
}

// parseNTFSAttr decodes one attribute record (header, value or runlist).
func parseNTFSAttr(b []byte) (ntfsAttr, error) {
	le := binary.LittleEndian
	a := ntfsAttr{typ: le.Uint32(b), flags: le.Uint16(b[0x0C:]), id: le.Uint16(b[0x0E:]), resident: b[8] == 0}
	if nl, no := int(b[9]), int(le.Uint16(b[0x0A:])); nl > 0 {
		if no+2*nl > len(b) {
			return a, fmt.Errorf("attribute name out of range: %w", ErrCorrupt)
		}
		a.name = utf16le(b[no : no+2*nl])
	}
	if a.resident {
		if len(b) < 0x18 {
			return a, fmt.Errorf("resident attribute header: %w", ErrCorrupt)
		}
		vl, vo := int(le.Uint32(b[0x10:])), int(le.Uint16(b[0x14:]))
		if vo+vl > len(b) {
			return a, fmt.Errorf("resident value out of range: %w", ErrCorrupt)
		}
		a.value = b[vo : vo+vl]
		a.dataSize, a.initSize, a.allocSize = int64(vl), int64(vl), int64(vl)
		return a, nil
	}
	if len(b) < 0x40 {
		return a, fmt.Errorf("non-resident attribute header: %w", ErrCorrupt)
	}
	a.startVCN = int64(le.Uint64(b[0x10:]))
	lastVCN := int64(le.Uint64(b[0x18:]))
	ro := int(le.Uint16(b[0x20:]))
	a.cuShift = uint8(le.Uint16(b[0x22:]))
	a.allocSize, a.dataSize, a.initSize = int64(le.Uint64(b[0x28:])), int64(le.Uint64(b[0x30:])), int64(le.Uint64(b[0x38:]))
	if a.flags&(ntfsFlagCompressed|ntfsFlagSparse) != 0 && len(b) >= 0x48 {
		a.compSize = int64(le.Uint64(b[0x40:]))
	}
	if a.startVCN < 0 || lastVCN < a.startVCN-1 || ro > len(b) || a.dataSize < 0 || a.initSize < 0 || a.cuShift > 16 {
		return a, fmt.Errorf("non-resident attribute geometry: %w", ErrCorrupt)
	}
	runs, err := parseRunlist(b[ro:], a.startVCN)
	if err != nil {
		return a, err
	}
	a.runs = runs
	return a, nil
}

// parseRunlist decodes a mapping pairs array starting at vcn.
func parseRunlist(b []byte, vcn int64) ([]ntfsRun, error) {
	var out []ntfsRun
	lcn := int64(0)
	for p := 0; p < len(b) && b[p] != 0; {
		h := b[p]
		ls, os := int(h&0xF), int(h>>4)
		if ls == 0 || ls > 8 || os > 8 || p+1+ls+os > len(b) || len(out) >= ntfsMaxRuns {
			return nil, fmt.Errorf("ntfs runlist entry %#x: %w", h, ErrCorrupt)
		}
		n := int64(leUint(b[p+1 : p+1+ls]))
		if n <= 0 {
			return nil, fmt.Errorf("ntfs run length %d: %w", n, ErrCorrupt)
		}
		run := ntfsRun{vcn: vcn, lcn: -1, n: n}
		if os > 0 {
			lcn += leInt(b[p+1+ls : p+1+ls+os])
			if lcn < 0 {
				return nil, fmt.Errorf("ntfs run at negative cluster: %w", ErrCorrupt)
			}
			run.lcn = lcn
		}
		out = append(out, run)
		vcn += n
		p += 1 + ls + os
	}
	return out, nil
}

func leUint(b []byte) uint64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func leInt(b []byte) int64 {
	v := leUint(b)
	if len(b) < 8 && len(b) > 0 && b[len(b)-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * len(b))
	}
	return int64(v)
}

// utf16le decodes a UTF-16LE name; unpaired surrogates are kept as their
// 3-byte WTF-8 form so no name is altered or merged with another.
func utf16le(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	out := make([]byte, 0, len(u))
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case utf16.IsSurrogate(rune(c)) && c < 0xDC00 && i+1 < len(u) && u[i+1] >= 0xDC00 && u[i+1] < 0xE000:
			out = utf8.AppendRune(out, utf16.DecodeRune(rune(c), rune(u[i+1])))
			i++
		case utf16.IsSurrogate(rune(c)):
			out = append(out, 0xE0|byte(c>>12), 0x80|byte(c>>6)&0x3F, 0x80|byte(c)&0x3F)
		default:
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return string(out)
}

// mergeNTFSAttrs joins the fragments of non-resident attributes (same
// type and name, consecutive VCN ranges, possibly in several records).
func mergeNTFSAttrs(attrs []ntfsAttr) ([]ntfsAttr, error) {
	type key struct {
		typ  uint32
		name string
	}
	var out []ntfsAttr
	frags := map[key][]ntfsAttr{}
	var order []key
	for _, a := range attrs {
		if a.resident {
			out = append(out, a)
			continue
		}
		k := key{a.typ, a.name}
		if _, ok := frags[k]; !ok {
			order = append(order, k)
		}
		frags[k] = append(frags[k], a)
	}
	for _, k := range order {
		fs := frags[k]
		sort.Slice(fs, func(i, j int) bool { return fs[i].startVCN < fs[j].startVCN })
		if fs[0].startVCN != 0 {
			return nil, fmt.Errorf("attribute %#x %q has no first fragment: %w", k.typ, k.name, ErrCorrupt)
		}
		m := fs[0]
		m.runs = nil
		next := int64(0)
		for _, f := range fs {
			if f.startVCN != next {
				return nil, fmt.Errorf("attribute %#x %q fragments not contiguous: %w", k.typ, k.name, ErrCorrupt)
			}
			m.runs = append(m.runs, f.runs...)
			if len(f.runs) > 0 {
				last := f.runs[len(f.runs)-1]
				next = last.vcn + last.n
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// attrListEntry is one entry of an $ATTRIBUTE_LIST.
type attrListEntry struct {
	typ uint32
	ref uint64 // record number
}

func parseAttrList(b []byte) ([]attrListEntry, error) {
	le := binary.LittleEndian
	var out []attrListEntry
	for p := 0; p+0x1A <= len(b); {
		l := int(le.Uint16(b[p+4:]))
		if l < 0x1A || p+l > len(b) || len(out) > ntfsMaxAttrs {
			return nil, fmt.Errorf("attribute list entry length %d: %w", l, ErrCorrupt)
		}
		out = append(out, attrListEntry{typ: le.Uint32(b[p:]), ref: le.Uint64(b[p+0x10:]) & ntfsMFTRefMask})
		p += l
	}
	return out, nil
}
