package fsread

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// seedMBR returns a disk with an MBR holding a primary and an extended
// partition with one logical partition.
func seedMBR() []byte {
	d := make([]byte, 8<<10)
	put := func(sec []byte, i int, typ byte, start, count uint32) {
		e := sec[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], count)
	}
	put(d, 0, 0x83, 1, 4)
	put(d, 1, 0x05, 5, 10)
	d[510], d[511] = 0x55, 0xAA
	ebr := d[5*512:]
	put(ebr, 0, 0x83, 2, 8)
	ebr[510], ebr[511] = 0x55, 0xAA
	return d
}

// seedGPT returns a disk with a protective MBR and a valid GPT.
func seedGPT() []byte {
	d := make([]byte, 8<<10)
	e := d[446:]
	e[4] = 0xEE
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], 15)
	d[510], d[511] = 0x55, 0xAA
	tbl := d[2*512 : 2*512+4*128]
	copy(tbl, bytes.Repeat([]byte{0xAF}, 16))
	binary.LittleEndian.PutUint64(tbl[32:], 6)
	binary.LittleEndian.PutUint64(tbl[40:], 14)
	h := d[512:]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 4)
	binary.LittleEndian.PutUint32(h[84:], 128)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(tbl))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	return d
}

func TestPartitionSeeds(t *testing.T) {
	vols, err := Volumes(context.Background(), bytes.NewReader(seedMBR()), 8<<10)
	if err != nil || len(vols) != 2 || vols[0].Offset != 512 || vols[1].Index != 5 || vols[1].Offset != 7*512 {
		t.Fatalf("mbr volumes = %+v, %v", vols, err)
	}
	vols, err = Volumes(context.Background(), bytes.NewReader(seedGPT()), 8<<10)
	if err != nil || len(vols) != 1 || vols[0].Offset != 6*512 || vols[0].Size != 9*512 || vols[0].Scheme != "gpt" {
		t.Fatalf("gpt volumes = %+v, %v", vols, err)
	}
	// A corrupted entry table must be detected, not misread.
	bad := seedGPT()
	bad[2*512+40]++
	if _, err := Volumes(context.Background(), bytes.NewReader(bad), 8<<10); err == nil {
		t.Fatalf("gpt with bad entry checksum accepted")
	}
}

func FuzzPartitions(f *testing.F) {
	f.Add(seedMBR())
	f.Add(seedGPT())
	f.Fuzz(func(t *testing.T, disk []byte) {
		vols, err := Volumes(context.Background(), bytes.NewReader(disk), int64(len(disk)))
		if err != nil {
			return
		}
		for _, v := range vols {
			if v.Offset < 0 || v.Size < 0 || v.Offset+v.Size > int64(len(disk)) {
				t.Fatalf("volume %+v outside disk of %d bytes", v, len(disk))
			}
		}
	})
}

// smallExtImage builds a tiny ext image with mkfs (nil when unavailable).
func smallExtImage(f *testing.F, fsType string, extra ...string) []byte {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return nil
	}
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(src, "d", "b.bin"), bytes.Repeat([]byte("x"), 5000), 0o644)
	os.Symlink("d/b.bin", filepath.Join(src, "l"))
	img := filepath.Join(dir, "img")
	args := append([]string{"-q", "-F", "-t", fsType, "-d", src}, extra...)
	if out, err := exec.Command("mkfs.ext4", append(args, img, "256K")...).CombinedOutput(); err != nil {
		f.Fatalf("mkfs: %v %s", err, out)
	}
	b, _ := os.ReadFile(img)
	return b
}

// walkAll lists and reads everything reachable, bounded, ignoring errors:
// fuzzing checks that corrupt input yields errors, not panics or hangs.
func walkAll(fsys FS) {
	ctx := context.Background()
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		ents, err := fsys.ReadDir(ctx, p)
		if err != nil || depth > 4 {
			return
		}
		for i, e := range ents {
			if i > 50 {
				return
			}
			switch e.Type {
			case "dir":
				walk(e.Path, depth+1)
			case "file":
				if fl, err := fsys.Open(ctx, e.Path); err == nil {
					io.Copy(io.Discard, io.LimitReader(fl, 1<<20))
					fl.Close()
				}
			}
		}
	}
	walk("/", 0)
}

// FuzzExtImage corrupts a real mkfs-built image with a patch at a fuzzed
// offset (metadata lives in the first few KiB) and walks the result.
func FuzzExtImage(f *testing.F) {
	imgs := [][]byte{smallExtImage(f, "ext4"), smallExtImage(f, "ext2", "-b", "1024"),
		smallExtImage(f, "ext4", "-O", "inline_data")}
	if imgs[0] == nil {
		f.Skip("mkfs.ext4 not installed")
	}
	f.Add(uint8(0), uint32(1024), []byte{0})
	f.Add(uint8(1), uint32(2048), []byte{1, 2, 3, 4})
	f.Add(uint8(2), uint32(5000), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, which uint8, off uint32, patch []byte) {
		img := bytes.Clone(imgs[int(which)%len(imgs)])
		copy(img[int(off)%len(img):], patch)
		fsys, err := openExt(context.Background(), bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		walkAll(fsys)
	})
}

func FuzzExtDecoders(f *testing.F) {
	f.Add(make([]byte, 1024), make([]byte, 256), make([]byte, 64))
	f.Fuzz(func(t *testing.T, sb, inode, dir []byte) {
		parseExtSuper(sb)
		if in, err := parseExtInode(inode); err == nil && in.flags&extFlagInline != 0 {
			extInlineData(&in)
		}
		parseExtDirBlock(dir, true)
		parseExtDirBlock(dir, false)
	})
}

func FuzzXFSDecoders(f *testing.F) {
	sb := make([]byte, 512)
	copy(sb, "XFSB")
	f.Add(sb, append([]byte("IN"), make([]byte, 510)...), []byte{1, 0, 0, 0, 0, 128, 1, 0, 0x60, 'a', 0, 0, 0, 0x81}, []byte("XDB3"))
	f.Fuzz(func(t *testing.T, sb, inode, sf, block []byte) {
		parseXFSSuper(sb)
		parseXFSInode(inode, true)
		parseXFSShortDir(sf, true)
		parseXFSShortDir(sf, false)
		parseXFSDataBlock(block, true, true)
		parseXFSDataBlock(block, false, false)
		if len(block) >= 16 {
			unpackBmbt(block)
		}
		if len(inode) >= 4 {
			x := &xfsFS{r: bytes.NewReader(block), size: int64(len(block)),
				sb: xfsSuper{blockSize: 512, agBlocks: 8, agCount: 1, agblkLog: 3}}
			x.btreeExtents(inode)
		}
	})
}

func FuzzNTFSDecoders(f *testing.F) {
	f.Add([]byte("IntxLNK\x01a\x00b\x00"))
	rec := make([]byte, 1024)
	copy(rec, "FILE")
	rec[4], rec[6], rec[0x14] = 0x30, 3, 0x38
	f.Add(rec)
	f.Add([]byte{0x21, 0x10, 0x00, 0x01, 0x11, 0x05, 0xF0, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseReparse(b)
		parseInterix(b)
		c := bytes.Clone(b)
		if applyFixups(c) == nil {
			parseNTFSRecord(c, 7)
		}
		if len(b) >= 16 {
			parseNTFSAttr(b)
		}
		parseRunlist(b, 0)
		parseIndexNode(b, nil)
		parseAttrList(b)
		dst := make([]byte, 16<<10)
		lznt1(dst, b)
		utf16le(b)
	})
}

func FuzzXattrDecoders(f *testing.F) {
	f.Add([]byte{4, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd'})
	f.Add([]byte{0, 0, 0, 2, 1, 0, 6, 0, 2, 0, 4, 0, 0xd2, 4, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseExtXattrs(b, b)
		extACL(b)
		xfsACL(b)
		parseXFSAttrShort(b)
		parseXFSAttrLeaf(b, true)
		parseXFSAttrLeaf(b, false)
	})
}

func FuzzLVMText(f *testing.F) {
	f.Add([]byte(`vg { extent_size = 8192 physical_volumes { pv0 { id = "a-b" pe_start = 2048 } }
logical_volumes { lv { status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 2 type = "striped"
stripe_count = 1 stripes = [ "pv0", 0 ] } } } }
contents = "Text Format Volume Group" # comment`))
	f.Fuzz(func(t *testing.T, b []byte) {
		root, err := parseLVMText(b)
		if err != nil {
			return
		}
		vols, err := lvmLogical(root, "ab", Volume{Offset: 0, Size: 1 << 30})
		if err != nil {
			return
		}
		for _, v := range vols {
			for _, s := range v.segs {
				if s.disk < 0 || s.size <= 0 || s.disk+s.size > 1<<30 {
					t.Fatalf("segment %+v outside the physical volume", s)
				}
			}
		}
	})
}

func FuzzEscape(f *testing.F) {
	f.Add("plain", true)
	f.Add("tab\there\xff\\x41/\\xzz", false)
	f.Fuzz(func(t *testing.T, s string, name bool) {
		e := Escape(s)
		if name {
			e = EscapeName(s)
		}
		if Unescape(e) != s {
			t.Fatalf("Unescape(Escape(%q)) = %q via %q", s, Unescape(e), e)
		}
		if !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q is not UTF-8", s, e)
		}
	})
}

func FuzzBlockReader(f *testing.F) {
	f.Add(uint64(0), uint64(2), uint64(1), int64(100), int64(5))
	f.Fuzz(func(t *testing.T, lblk, pblk, n uint64, size, off int64) {
		if size < 0 || size > 1<<20 {
			return
		}
		vol := bytes.Repeat([]byte{7}, 8*1024)
		m := extentMap{{lblk: lblk % 16, pblk: pblk, n: n % 32}}
		br := &blockReader{r: bytes.NewReader(vol), bs: 1024, m: m, size: size, devBlocks: 8}
		buf := make([]byte, 3000)
		k, err := br.ReadAt(buf, off)
		if k > len(buf) || (err == nil && k != len(buf)) {
			t.Fatalf("ReadAt = %d, %v", k, err)
		}
	})
}
