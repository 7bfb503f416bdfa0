package fsread

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strings"
)

// LVM2 physical volumes: a label in one of the first four sectors points
// to the PV header (uuid, data and metadata areas); the metadata area's
// header points to the current copy of the volume group's metadata, a
// text document. Linear logical volumes (segments of type "striped" with
// one stripe on this PV) are mapped onto the disk; others are listed with
// the reason they cannot be read.
const (
	lvmLabel        = "LABELONE"
	lvmType         = "LVM2 001"
	lvmMDAMagic     = " LVM2 x[5A%r0N*>"
	lvmInitialCRC   = 0xf597a6cf
	lvmMDAHeader    = 512
	lvmMaxMetadata  = 4 << 20
	lvmMaxSegments  = 1 << 16
	lvmMaxAreas     = 16
	lvmMaxDepth     = 32
	lvmMaxTokens    = 1 << 20
	lvmSectorsBytes = 512
)

// segment maps size bytes of a logical volume at off to disk bytes at
// disk.
type segment struct{ off, size, disk int64 }

// lvmCRC is LVM's CRC-32 (reflected IEEE polynomial, no inversion).
func lvmCRC(b []byte) uint32 {
	return ^crc32.Update(^uint32(lvmInitialCRC), crc32.IEEETable, b)
}

// lvmVolumes lists the logical volumes of the PV at pv (a volume of the
// disk r). The PV itself stays in the caller's list.
func lvmVolumes(r io.ReaderAt, pv Volume) ([]Volume, error) {
	uuid, mdas, err := lvmPVHeader(r, pv)
	if err != nil {
		return nil, err
	}
	var text []byte
	for _, m := range mdas {
		if text, err = lvmMetadata(r, pv, m[0], m[1]); err == nil {
			break
		}
	}
	if text == nil {
		if err == nil {
			err = fmt.Errorf("lvm physical volume has no metadata area: %w", ErrCorrupt)
		}
		return nil, err
	}
	root, err := parseLVMText(text)
	if err != nil {
		return nil, err
	}
	return lvmLogical(root, uuid, pv)
}

// lvmPVHeader finds the label and returns the PV uuid and the metadata
// areas (offset, size from the start of the PV).
func lvmPVHeader(r io.ReaderAt, pv Volume) (string, [][2]int64, error) {
	buf := make([]byte, 4*lvmSectorsBytes)
	if _, err := r.ReadAt(buf, pv.Offset); err != nil && err != io.EOF {
		return "", nil, fmt.Errorf("read lvm label: %w", err)
	}
	for s := 0; s < 4; s++ {
		sec := buf[s*lvmSectorsBytes : (s+1)*lvmSectorsBytes]
		if string(sec[:8]) != lvmLabel || string(sec[24:32]) != lvmType {
			continue
		}
		le := binary.LittleEndian
		if lvmCRC(sec[20:]) != le.Uint32(sec[16:]) {
			return "", nil, fmt.Errorf("lvm label checksum mismatch: %w", ErrCorrupt)
		}
		off := int(le.Uint32(sec[20:]))
		if off < 32 || off+32+16 > len(sec) {
			return "", nil, fmt.Errorf("lvm pv header offset %d: %w", off, ErrCorrupt)
		}
		h := sec[off:]
		uuid := string(h[:32])
		p := 40 // after uuid and device size
		skip := func() ([][2]int64, error) {
			var out [][2]int64
			for i := 0; ; i++ {
				if p+16 > len(h) || i > lvmMaxAreas {
					return nil, fmt.Errorf("lvm pv header area list: %w", ErrCorrupt)
				}
				o, n := int64(le.Uint64(h[p:])), int64(le.Uint64(h[p+8:]))
				p += 16
				if o == 0 && n == 0 {
					return out, nil
				}
				out = append(out, [2]int64{o, n})
			}
		}
		if _, err := skip(); err != nil { // data areas
			return "", nil, err
		}
		mdas, err := skip()
		if err != nil {
			return "", nil, err
		}
		return uuid, mdas, nil
	}
	return "", nil, fmt.Errorf("lvm label not found: %w", ErrCorrupt)
}

// lvmMetadata reads the current metadata text of the area at off (from
// the PV start), following its circular buffer.
func lvmMetadata(r io.ReaderAt, pv Volume, off, size int64) ([]byte, error) {
	if off <= 0 || size <= lvmMDAHeader || off+size > pv.Size {
		return nil, fmt.Errorf("lvm metadata area %d+%d outside the volume: %w", off, size, ErrCorrupt)
	}
	h := make([]byte, lvmMDAHeader)
	if _, err := r.ReadAt(h, pv.Offset+off); err != nil {
		return nil, fmt.Errorf("read lvm metadata header: %w", err)
	}
	le := binary.LittleEndian
	if string(h[4:20]) != lvmMDAMagic || lvmCRC(h[4:]) != le.Uint32(h) {
		return nil, fmt.Errorf("lvm metadata header magic or checksum: %w", ErrCorrupt)
	}
	loff, lsize, lcrc := int64(le.Uint64(h[40:])), int64(le.Uint64(h[48:])), le.Uint32(h[56:])
	if loff < lvmMDAHeader || loff >= size || lsize <= 0 || lsize > lvmMaxMetadata || lsize > size-lvmMDAHeader {
		return nil, fmt.Errorf("lvm metadata location %d+%d: %w", loff, lsize, ErrCorrupt)
	}
	text := make([]byte, lsize)
	first := min(lsize, size-loff)
	if _, err := r.ReadAt(text[:first], pv.Offset+off+loff); err != nil {
		return nil, fmt.Errorf("read lvm metadata: %w", err)
	}
	if first < lsize { // wrapped around to just after the header
		if _, err := r.ReadAt(text[first:], pv.Offset+off+lvmMDAHeader); err != nil {
			return nil, fmt.Errorf("read lvm metadata: %w", err)
		}
	}
	if lvmCRC(text) != lcrc {
		return nil, fmt.Errorf("lvm metadata checksum mismatch: %w", ErrCorrupt)
	}
	return bytes.TrimRight(text, "\x00"), nil
}

// lvmLogical turns the parsed metadata into volumes.
func lvmLogical(root *lvmSection, uuid string, pv Volume) ([]Volume, error) {
	var out []Volume
	for _, vgName := range root.order {
		vg := root.sections[vgName]
		if vg == nil {
			continue
		}
		extent := vg.num("extent_size") * lvmSectorsBytes
		pvs, lvs := vg.sections["physical_volumes"], vg.sections["logical_volumes"]
		if extent <= 0 || pvs == nil || lvs == nil {
			continue
		}
		// This PV's name in the VG, and where its extents start.
		var self string
		var peStart int64
		for _, name := range pvs.order {
			p := pvs.sections[name]
			if p != nil && strings.ReplaceAll(p.str("id"), "-", "") == uuid {
				self, peStart = name, p.num("pe_start")*lvmSectorsBytes
			}
		}
		if self == "" {
			return nil, fmt.Errorf("lvm volume group %s does not list this physical volume: %w", vgName, ErrCorrupt)
		}
		for _, lvName := range lvs.order {
			lv := lvs.sections[lvName]
			if lv == nil || !lv.has("status", "VISIBLE") {
				continue
			}
			v := Volume{Index: pv.Index, Scheme: "lvm", LV: vgName + "/" + lvName, Type: "lvm"}
			v.segs, v.Size, v.Note = lvmSegments(lv, self, extent, pv.Offset+peStart, pv.Offset+pv.Size)
			if len(v.segs) > 0 {
				v.Offset = v.segs[0].disk
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// lvmSegments maps a linear LV; note says why another kind cannot be read.
func lvmSegments(lv *lvmSection, self string, extent, base, end int64) ([]segment, int64, string) {
	var segs []segment
	var size int64
	names := append([]string(nil), lv.order...)
	sort.Slice(names, func(i, j int) bool {
		a, b := lv.sections[names[i]], lv.sections[names[j]]
		return a != nil && b != nil && a.num("start_extent") < b.num("start_extent")
	})
	for _, name := range names {
		s := lv.sections[name]
		if s == nil || !strings.HasPrefix(name, "segment") {
			continue
		}
		if len(segs) >= lvmMaxSegments {
			return nil, 0, "too many segments"
		}
		typ := s.str("type")
		stripes := s.list("stripes")
		switch {
		case typ != "striped":
			return nil, 0, fmt.Sprintf("segment type %q (kura reads linear volumes only)", typ)
		case s.num("stripe_count") != 1 || len(stripes) != 2:
			return nil, 0, fmt.Sprintf("striped over %d physical volumes (kura reads linear volumes only)", s.num("stripe_count"))
		case stripes[0].s != self:
			return nil, 0, fmt.Sprintf("uses physical volume %s, which is not on this disk", stripes[0].s)
		}
		start, count, pe := s.num("start_extent"), s.num("extent_count"), stripes[1].n
		if count <= 0 || start < 0 || pe < 0 || start*extent != size {
			return nil, 0, "segments are not contiguous"
		}
		disk := base + pe*extent
		if disk+count*extent > end {
			return nil, 0, "extends past the end of its physical volume"
		}
		segs = append(segs, segment{off: size, size: count * extent, disk: disk})
		size += count * extent
	}
	if len(segs) == 0 {
		return nil, 0, "no segments"
	}
	return segs, size, ""
}

// segReader reads a logical volume through its segments.
type segReader struct {
	r    io.ReaderAt
	segs []segment
	size int64
}

func (s *segReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos >= s.size {
			return done, io.EOF
		}
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].off+s.segs[i].size > pos })
		if i == len(s.segs) {
			return done, io.EOF
		}
		sg := s.segs[i]
		n := int(min(int64(len(p)-done), sg.off+sg.size-pos))
		k, err := s.r.ReadAt(p[done:done+n], sg.disk+pos-sg.off)
		done += k
		if err != nil && !(err == io.EOF && k == n) {
			return done, err
		}
	}
	return done, nil
}
