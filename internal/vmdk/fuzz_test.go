package vmdk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"
)

// Descriptors as VMware and qemu write them (facts of the format: key
// spelling, quoting, extent lines with and without offsets).
var seedDescriptors = []string{
	"# Disk DescriptorFile\nversion=1\nCID=9dfe8f58\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 16384 FLAT \"x-flat.vmdk\" 0\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"ide\"\n",
	"# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\nisNativeSnapshot=\"no\"\ncreateType=\"vmfs\"\n\n# Extent description\nRW 83886080 VMFS \"web 01-flat.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.uuid = \"60 00 C2 9b 1a 2c 3d 4e-5f 60 71 82 93 a4 b5 c6\"\nddb.changeTrackPath = \"web 01-ctk.vmdk\"\n",
	"# Disk DescriptorFile\nversion=1\nCID=3a4b5c6d\nparentCID=fffffffe\ncreateType=\"vmfsSparse\"\nparentFileNameHint=\"web01.vmdk\"\n# Extent description\nRW 83886080 VMFSSPARSE \"web01-000001-delta.vmdk\"\n",
	"# Disk DescriptorFile\r\nversion=1\r\nCID=1\r\ncreateType=\"monolithicSparse\"\r\nRW 2048 SPARSE \"a.vmdk\"\r\nRW 2048 ZERO\r\n",
}

func TestParseDescriptor(t *testing.T) {
	d, err := ParseDescriptor([]byte(seedDescriptors[1]))
	if err != nil {
		t.Fatal(err)
	}
	if d.CreateType != "vmfs" || d.Capacity() != 40<<30 || d.Extents[0].File != "web 01-flat.vmdk" || d.Extents[0].Type != ExtentVMFS ||
		d.Get("ddb.changeTrackPath") != "web 01-ctk.vmdk" || d.CID != 0xfffffffe || d.ParentCID != NoParent {
		t.Fatalf("parsed %+v", d)
	}
	// qemu's extent line with a trailing offset keeps the name intact.
	q, err := ParseDescriptor([]byte(seedDescriptors[0]))
	if err != nil || q.Extents[0].File != "x-flat.vmdk" || q.Extents[0].Offset != 0 {
		t.Fatalf("qemu descriptor: %+v %v", q, err)
	}
	r, err := ParseDescriptor(d.Encode())
	if err != nil || !reflect.DeepEqual(r, d) {
		t.Fatalf("round trip:\n%+v\n%+v %v", d, r, err)
	}
	for _, bad := range []string{
		"CID=1\nRW 10 FLAT \"a\"\n",                             // no createType
		"createType=\"x\"\nRW 10 FLAT \"a\"\n",                  // no CID
		"CID=1\ncreateType=\"x\"\n",                             // no extent
		"CID=zz\ncreateType=\"x\"\nRW 10 FLAT \"a\"\n",          // bad CID
		"CID=1\ncreateType=\"x\"\nRW -1 FLAT \"a\"\n",           // bad size
		"CID=1\ncreateType=\"x\"\nRW 10 FLAT a\n",               // unquoted
		"CID=1\ncreateType=\"x\"\nRW 10 FLAT \"../../etc\"\n",   // path
		"CID=1\ncreateType=\"x\"\nRW 10 FLAT \"a\" x\n",         // bad offset
		"CID=1\ncreateType=\"x\"\nRW 10 ZERO \"a\"\n",           // zero with a file
		"CID=1\ncreateType=\"x\"\nRW 10 FLAT \"a\"\ngarbage\n",  // not key=value
		"CID=1\ncreateType=\"x\"\nRW 10 FLAT \"a\"\x00zz\x00\n", // NUL inside
	} {
		if _, err := ParseDescriptor([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v, want ErrFormat", bad, err)
		}
	}
}

func FuzzParseDescriptor(f *testing.F) {
	for _, s := range seedDescriptors {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDescriptor(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		r, err := ParseDescriptor(d.Encode())
		if err != nil {
			t.Fatalf("re-parse of an encoded descriptor: %v\n%s", err, d.Encode())
		}
		if r.Capacity() != d.Capacity() || len(r.Extents) != len(d.Extents) || r.CID != d.CID || r.CreateType != d.CreateType {
			t.Fatalf("round trip differs:\n%+v\n%+v", d, r)
		}
	})
}

// memFile is a File in memory.
type memFile []byte

func (m memFile) Size() int64 { return int64(len(m)) }
func (m memFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzOpenSparse opens arbitrary bytes as a monolithic sparse (or
// stream-optimized) file and reads from it: errors, never panics or
// unbounded allocations.
func FuzzOpenSparse(f *testing.F) {
	f.Add(sparseSeed(f, false))
	f.Add(sparseSeed(f, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Open(func(name string) (File, error) {
			if name != "x.vmdk" {
				return nil, os.ErrNotExist
			}
			return memFile(data), nil
		}, "x.vmdk")
		if err != nil {
			return
		}
		defer d.Close()
		buf := make([]byte, 256<<10)
		for _, off := range []int64{0, d.Size() / 2, d.Size() - 1} {
			_, _ = d.ReadAt(buf, off)
		}
		if d.Size() <= 1<<30 {
			_, _ = d.Allocated()
		}
	})
}

// sparseSeed builds a small sparse file with kura's writer (and, for the
// stream-optimized seed, marks it compressed so the grain decoder runs).
func sparseSeed(f *testing.F, compressed bool) []byte {
	p := f.TempDir() + "/x.vmdk"
	file, err := os.Create(p)
	if err != nil {
		f.Fatal(err)
	}
	w, err := NewSparseWriter(file, 1<<20, "x.vmdk", "ide")
	if err != nil {
		f.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte{7}, 64<<10), 128<<10); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	file.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	if compressed {
		h, _ := ParseSparseHeader(b)
		h.Flags |= flagCompressed | flagMarkers
		h.CompressAlgorithm = compressionDeflat
		copy(b, h.encode())
	}
	return b
}

func FuzzDecodeGrain(f *testing.F) {
	f.Add(make([]byte, 512))
	f.Add(append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x0c, 0x77}, make([]byte, 489)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 12 {
			return
		}
		head := make([]byte, 512)
		copy(head, data)
		out, err := decodeGrain(head, memFile(data), 0, 64<<10)
		if err == nil && len(out) != 64<<10 {
			t.Fatalf("grain of %d bytes", len(out))
		}
	})
}
