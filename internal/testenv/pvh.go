package testenv

import (
	"debug/elf"
	"encoding/binary"
	"io"
)

// xenElfnotePhys32Entry is the ELF note (owner "Xen") that makes an
// uncompressed kernel bootable by QEMU through PVH.
const xenElfnotePhys32Entry = 18

// pvhBootable reports whether path is an ELF kernel with the PVH entry note,
// which QEMU boots directly (no bzImage decompression in the emulated CPU).
func pvhBootable(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<20 {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		if hasNote(b, f.ByteOrder, "Xen", xenElfnotePhys32Entry) {
			return true
		}
	}
	return false
}

// hasNote scans an ELF note segment for a note with the given owner and type.
func hasNote(b []byte, bo binary.ByteOrder, owner string, typ uint32) bool {
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(b) >= 12 {
		namesz, descsz, t := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		b = b[12:]
		if align(namesz) > uint64(len(b)) {
			return false
		}
		name := b[:namesz]
		b = b[align(namesz):]
		if align(descsz) > uint64(len(b)) {
			return false
		}
		b = b[align(descsz):]
		if t == typ && string(name) == owner+"\x00" {
			return true
		}
	}
	return false
}
