package testenv

import (
	"encoding/binary"
	"testing"
)

func note(owner string, typ uint32, desc []byte) []byte {
	name := append([]byte(owner), 0)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, name...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestHasNote(t *testing.T) {
	le := binary.LittleEndian
	seg := append(note("GNU", 3, []byte{1, 2, 3, 4, 5}), note("Xen", 18, []byte{0, 0, 0, 1})...)
	if !hasNote(seg, le, "Xen", 18) {
		t.Fatal("PVH note not found")
	}
	if hasNote(seg, le, "Xen", 17) || hasNote(seg, le, "Xe", 18) {
		t.Fatal("wrong note matched")
	}
	if hasNote(seg[:len(seg)-3], le, "Xen", 18) {
		t.Fatal("truncated note matched")
	}
}

func TestPVHBootableRejectsNonELF(t *testing.T) {
	if pvhBootable("/proc/self/cmdline") || pvhBootable("/nonexistent") {
		t.Fatal("non-ELF file reported bootable")
	}
}

func FuzzHasNote(f *testing.F) {
	f.Add(note("Xen", 18, []byte{1, 2, 3, 4}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 18, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = hasNote(b, binary.LittleEndian, "Xen", 18)
		_ = hasNote(b, binary.BigEndian, "Xen", 18)
	})
}
