package fsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestDecodersDetectCorruption(t *testing.T) {
	goodDir := make([]byte, 1024)
	binary.LittleEndian.PutUint32(goodDir[0:], 12)
	binary.LittleEndian.PutUint16(goodDir[4:], 1024)
	goodDir[6] = 1
	goodDir[8] = 'a'
	ents, err := parseExtDirBlock(goodDir, true)
	if err != nil || len(ents) != 1 || ents[0].name != "a" || ents[0].ino != 12 {
		t.Fatalf("parseExtDirBlock(good) = %v, %v", ents, err)
	}
	badRec := bytes.Clone(goodDir)
	binary.LittleEndian.PutUint16(badRec[4:], 2000) // rec_len past block end
	badExtent := make([]byte, 60)
	binary.LittleEndian.PutUint16(badExtent, 0xBEEF)
	e := &extFS{}
	xfsBlock := make([]byte, 4096)
	copy(xfsBlock, "XDB3")
	binary.BigEndian.PutUint32(xfsBlock[4088:], 1000) // leaf count larger than block
	cases := map[string]error{}
	_, cases["ext dir rec_len"] = parseExtDirBlock(badRec, true)
	_, cases["ext extent magic"] = e.extents(badExtent, 0, new(int))
	_, cases["ext superblock magic"] = parseExtSuper(make([]byte, 1024))
	_, cases["xfs superblock magic"] = parseXFSSuper(make([]byte, 512))
	_, cases["xfs inode magic"] = parseXFSInode(make([]byte, 512), false)
	_, cases["xfs block dir leaf count"] = parseXFSDataBlock(xfsBlock, true, true)
	_, cases["xfs short dir truncated"] = parseXFSShortDir([]byte{5, 0, 0, 0, 0, 128, 3}, true)
	_, cases["ntfs reparse truncated"] = parseReparse([]byte{0x0c, 0, 0, 0xa0})
	for name, err := range cases {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v, want ErrCorrupt", name, err)
		}
	}
}

func TestParseReparseSymlink(t *testing.T) {
	name := []byte{'a', 0, '\\', 0, 'b', 0}
	b := make([]byte, 20+2*len(name))
	binary.LittleEndian.PutUint32(b, ntfsTagSymlink)
	binary.LittleEndian.PutUint16(b[8:], 0)                  // substitute offset
	binary.LittleEndian.PutUint16(b[10:], uint16(len(name))) // substitute length
	binary.LittleEndian.PutUint16(b[12:], uint16(len(name))) // print offset
	binary.LittleEndian.PutUint16(b[14:], uint16(len(name))) // print length
	copy(b[20:], name)
	copy(b[20+len(name):], name)
	if got, err := parseReparse(b); err != nil || got != "a/b" {
		t.Fatalf("parseReparse = %q, %v", got, err)
	}
}

func TestIndirectHoleRuns(t *testing.T) {
	// All pointers zero: the map must skip whole subtrees, not block by
	// block, and never report mapped data.
	m := &extIndirect{fs: &extFS{sb: extSuper{blockSize: 1024}}}
	for _, lblk := range []uint64{0, 11, 12, 12 + 255, 12 + 256, 12 + 256 + 256*256 + 5} {
		_, n, ok, err := m.mapBlock(lblk)
		if err != nil || ok || n == 0 {
			t.Fatalf("mapBlock(%d) = n %d ok %v err %v", lblk, n, ok, err)
		}
	}
	if _, n, _, _ := m.mapBlock(12 + 256); n != 256*256 {
		t.Fatalf("double-indirect hole run = %d, want %d", n, 256*256)
	}
}
