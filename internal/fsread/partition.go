package fsread

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

const sectorSize = 512

// maxLogical bounds the EBR chain walk so a looping chain cannot hang us.
const maxLogical = 128

// Volumes lists the volumes of a disk image: the partitions of a GPT (when
// a protective MBR is present) or MBR table (including logical partitions
// in extended partitions), or the whole disk when it has no partition table.
// Each volume's filesystem is detected from its superblock magic.
func Volumes(ctx context.Context, r io.ReaderAt, size int64) ([]Volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vols, err := partitions(r, size)
	if err != nil {
		return nil, err
	}
	var out []Volume
	for _, v := range vols {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v.FS = DetectFS(io.NewSectionReader(r, v.Offset, v.Size))
		out = append(out, v)
		if v.FS != "lvm2" {
			continue
		}
		lvs, err := lvmVolumes(r, v)
		if err != nil {
			out[len(out)-1].Note = "LVM metadata unreadable: " + err.Error()
			continue
		}
		for _, lv := range lvs {
			if lv.Note == "" {
				lv.FS = DetectFS(volumeReader(r, lv))
			}
			out = append(out, lv)
		}
	}
	return out, nil
}

// partitions parses the partition table without filesystem detection.
func partitions(r io.ReaderAt, size int64) ([]Volume, error) {
	whole := []Volume{{Index: 0, Offset: 0, Size: size, Scheme: "none"}}
	if size < sectorSize {
		return whole, nil
	}
	mbr := make([]byte, sectorSize)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("read mbr: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return whole, nil
	}
	// A filesystem boot sector (NTFS, FAT, XFS) also ends in 55AA: when a
	// filesystem starts at sector 0 the disk is unpartitioned.
	if fs := DetectFS(io.NewSectionReader(r, 0, size)); fs != "" && fs != "lvm2" {
		return whole, nil
	}
	entries := mbrEntries(mbr)
	for _, e := range entries {
		if e.typ == 0xEE {
			vols, err := parseGPT(r, size)
			if err != nil {
				return nil, err
			}
			return vols, nil
		}
	}
	var vols []Volume
	for i, e := range entries {
		if e.typ == 0 || e.count == 0 {
			continue
		}
		if e.status != 0 && e.status != 0x80 {
			return nil, fmt.Errorf("mbr entry %d: bad status %#x: %w", i+1, e.status, ErrCorrupt)
		}
		off, n := int64(e.start)*sectorSize, int64(e.count)*sectorSize
		if off+n > size {
			return nil, fmt.Errorf("mbr entry %d extends past end of disk: %w", i+1, ErrCorrupt)
		}
		if isExtended(e.typ) {
			logical, err := parseEBRChain(r, size, int64(e.start))
			if err != nil {
				return nil, err
			}
			vols = append(vols, logical...)
			continue
		}
		vols = append(vols, Volume{Index: i + 1, Offset: off, Size: n, Scheme: "mbr", Type: fmt.Sprintf("0x%02x", e.typ)})
	}
	if len(vols) == 0 {
		return whole, nil
	}
	sortVolumes(vols)
	return vols, nil
}

type mbrEntry struct {
	status, typ  byte
	start, count uint32
}

func mbrEntries(sec []byte) [4]mbrEntry {
	var out [4]mbrEntry
	for i := range out {
		b := sec[446+16*i:]
		out[i] = mbrEntry{status: b[0], typ: b[4],
			start: binary.LittleEndian.Uint32(b[8:]), count: binary.LittleEndian.Uint32(b[12:])}
	}
	return out
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

// parseEBRChain walks the linked list of extended boot records starting at
// LBA extStart; logical partitions are numbered from 5.
func parseEBRChain(r io.ReaderAt, size, extStart int64) ([]Volume, error) {
	var vols []Volume
	sec := make([]byte, sectorSize)
	ebr := extStart
	seen := map[int64]bool{}
	for idx := 5; idx < 5+maxLogical; idx++ {
		if seen[ebr] || ebr*sectorSize+sectorSize > size {
			return nil, fmt.Errorf("extended partition chain invalid at lba %d: %w", ebr, ErrCorrupt)
		}
		seen[ebr] = true
		if _, err := r.ReadAt(sec, ebr*sectorSize); err != nil {
			return nil, fmt.Errorf("read ebr at lba %d: %w", ebr, err)
		}
		if sec[510] != 0x55 || sec[511] != 0xAA {
			return nil, fmt.Errorf("ebr at lba %d lacks signature: %w", ebr, ErrCorrupt)
		}
		e := mbrEntries(sec)
		if e[0].typ != 0 && e[0].count != 0 {
			off := (ebr + int64(e[0].start)) * sectorSize
			n := int64(e[0].count) * sectorSize
			if off+n > size {
				return nil, fmt.Errorf("logical partition %d extends past end of disk: %w", idx, ErrCorrupt)
			}
			vols = append(vols, Volume{Index: idx, Offset: off, Size: n, Scheme: "mbr", Type: fmt.Sprintf("0x%02x", e[0].typ)})
		}
		if e[1].typ == 0 || e[1].start == 0 {
			return vols, nil
		}
		ebr = extStart + int64(e[1].start)
	}
	return nil, fmt.Errorf("more than %d logical partitions: %w", maxLogical, ErrCorrupt)
}

// parseGPT reads the primary GPT header (falling back to the backup at the
// last LBA when the primary fails its checksum) and its entries.
func parseGPT(r io.ReaderAt, size int64) ([]Volume, error) {
	vols, err := parseGPTAt(r, size, 1)
	if err == nil {
		return vols, nil
	}
	if backup, berr := parseGPTAt(r, size, size/sectorSize-1); berr == nil {
		return backup, nil
	}
	return nil, err
}

func parseGPTAt(r io.ReaderAt, size, lba int64) ([]Volume, error) {
	hdr := make([]byte, sectorSize)
	if _, err := r.ReadAt(hdr, lba*sectorSize); err != nil {
		return nil, fmt.Errorf("read gpt header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, fmt.Errorf("gpt header signature missing: %w", ErrCorrupt)
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if hsize < 92 || hsize > sectorSize {
		return nil, fmt.Errorf("gpt header size %d: %w", hsize, ErrCorrupt)
	}
	want := binary.LittleEndian.Uint32(hdr[16:])
	h := bytes.Clone(hdr[:hsize])
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != want {
		return nil, fmt.Errorf("gpt header checksum mismatch: %w", ErrCorrupt)
	}
	entLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	num := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	if esize < 128 || esize > 4096 || esize%8 != 0 || num > 1024 {
		return nil, fmt.Errorf("gpt entry geometry %d x %d: %w", num, esize, ErrCorrupt)
	}
	tbl := make([]byte, int(num)*int(esize))
	if entLBA <= 0 || entLBA*sectorSize+int64(len(tbl)) > size {
		return nil, fmt.Errorf("gpt entries outside disk: %w", ErrCorrupt)
	}
	if _, err := r.ReadAt(tbl, entLBA*sectorSize); err != nil {
		return nil, fmt.Errorf("read gpt entries: %w", err)
	}
	if crc32.ChecksumIEEE(tbl) != binary.LittleEndian.Uint32(hdr[88:]) {
		return nil, fmt.Errorf("gpt entries checksum mismatch: %w", ErrCorrupt)
	}
	var vols []Volume
	for i := 0; i < int(num); i++ {
		e := tbl[i*int(esize) : (i+1)*int(esize)]
		if allZero(e[:16]) {
			continue
		}
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		if first <= 0 || last < first || last >= size/sectorSize {
			return nil, fmt.Errorf("gpt entry %d range %d-%d invalid: %w", i+1, first, last, ErrCorrupt)
		}
		vols = append(vols, Volume{Index: i + 1, Offset: first * sectorSize, Size: (last - first + 1) * sectorSize,
			Scheme: "gpt", Type: guidString(e[:16]), Label: utf16Name(e[56:128])})
	}
	return vols, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// guidString formats a mixed-endian GPT GUID.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b[0:]),
		binary.LittleEndian.Uint16(b[4:]), binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return strings.TrimSpace(string(utf16.Decode(u)))
}

func sortVolumes(v []Volume) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j].Index < v[j-1].Index; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}
