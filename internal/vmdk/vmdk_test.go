package vmdk

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kurabackup/kura/internal/testenv"
)

const mib = 1 << 20

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

// rawImage writes a raw image with data at a few places and holes
// elsewhere, and returns its path and bytes.
func rawImage(t *testing.T, dir string, size int64, seed uint64) (string, []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, size)
	for _, span := range [][2]int64{{0, 100 << 10}, {3 * mib, mib + 4096}, {size - 70<<10, 70 << 10}} {
		for i := span[0]; i < span[0]+span[1]; i++ {
			b[i] = byte(r.Uint32())
		}
	}
	p := filepath.Join(dir, fmt.Sprintf("src-%d.raw", seed))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func readDisk(t *testing.T, path string) (*Disk, []byte) {
	t.Helper()
	d, err := OpenFile(path)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	t.Cleanup(func() { d.Close() })
	got := make([]byte, d.Size())
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatalf("ReadAt %s: %v", path, err)
	}
	return d, got
}

// TestReadQemuSubformats reads every VMDK subformat qemu-img writes and
// compares with the raw image.
func TestReadQemuSubformats(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	src, want := rawImage(t, dir, 9*mib+512*3, 1)
	for _, sub := range []string{"monolithicFlat", "monolithicSparse", "streamOptimized", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"} {
		t.Run(sub, func(t *testing.T) {
			p := filepath.Join(dir, sub+".vmdk")
			run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, src, p)
			d, got := readDisk(t, p)
			if !bytes.Equal(got, want) {
				t.Fatal("content differs from the raw image")
			}
			// Unaligned reads across grains and extents.
			for _, r := range [][2]int64{{1, 7}, {64<<10 - 3, 9}, {3*mib - 1, 2*mib + 5}, {int64(len(want)) - 11, 11}} {
				buf := make([]byte, r[1])
				if _, err := d.ReadAt(buf, r[0]); err != nil || !bytes.Equal(buf, want[r[0]:r[0]+r[1]]) {
					t.Fatalf("ReadAt(%d, %d): %v", r[0], r[1], err)
				}
			}
			alloc, err := d.Allocated()
			if err != nil {
				t.Fatal(err)
			}
			checkAllocated(t, alloc, want, strings.Contains(sub, "Flat"))
		})
	}
}

// checkAllocated checks that every non-zero byte is in an allocated
// range, and, for sparse disks, that holes were found.
func checkAllocated(t *testing.T, alloc []Range, want []byte, flat bool) {
	t.Helper()
	in := make([]bool, len(want))
	var total int64
	for _, r := range alloc {
		for i := r.Offset; i < r.Offset+r.Length; i++ {
			in[i] = true
		}
		total += r.Length
	}
	for i, c := range want {
		if c != 0 && !in[i] {
			t.Fatalf("non-zero byte at %d outside the allocated ranges %v", i, alloc)
		}
	}
	if flat && total != int64(len(want)) {
		t.Errorf("flat disk: allocated %d of %d bytes", total, len(want))
	}
	if !flat && total > 4*mib {
		t.Errorf("sparse disk: %d bytes allocated for about 1.2 MiB of data: %v", total, alloc)
	}
}

// TestReadChild reads a child disk (qemu-img create -b) after writes into
// it, through its parent, and checks content ids are enforced.
func TestReadChild(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	testenv.NeedTool(t, "qemu-io")
	dir := t.TempDir()
	src, want := rawImage(t, dir, 8*mib, 2)
	base := filepath.Join(dir, "base.vmdk")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", src, base)
	child := filepath.Join(dir, "child.vmdk")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child)
	run(t, "qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 2M 128k", "-c", "write -P 0x00 0 64k", child)
	copy(want[2*mib:], bytes.Repeat([]byte{0x5a}, 128<<10))
	clear(want[:64<<10])
	d, got := readDisk(t, child)
	if d.Parent == nil || !bytes.Equal(got, want) {
		t.Fatalf("child read through its parent differs (parent %v)", d.Parent != nil)
	}
	if _, b := readDisk(t, base); bytes.Equal(b[2*mib:2*mib+16], want[2*mib:2*mib+16]) {
		t.Fatal("the write reached the parent")
	}
	// A parent changed after the child was made is refused.
	run(t, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 4k", base)
	if _, err := OpenFile(child); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "content id") {
		t.Fatalf("child of a changed parent: %v", err)
	}
}

// TestSparseWriter writes a monolithicSparse disk out of order and from
// several goroutines, partial grains included, and has qemu-img check and
// compare it.
func TestSparseWriter(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	size := int64(5*mib + 512*7)
	src, want := rawImage(t, dir, size, 3)
	p := filepath.Join(dir, "out.vmdk")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewSparseWriter(f, size, "out.vmdk", "lsilogic")
	if err != nil {
		t.Fatal(err)
	}
	type piece struct{ off, n int64 }
	var pieces []piece
	for off := int64(0); off < size; off += 256 << 10 {
		pieces = append(pieces, piece{off, min(256<<10, size-off)})
	}
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	var wg sync.WaitGroup
	errs := make(chan error, len(pieces))
	for _, pc := range pieces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each piece in two unaligned halves: exercises merges.
			half := pc.n/2 + 1000
			if _, err := w.WriteAt(want[pc.off+half:pc.off+pc.n], pc.off+half); err != nil {
				errs <- err
			}
			if _, err := w.WriteAt(want[pc.off:pc.off+half], pc.off); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "qemu-img", "check", "-f", "vmdk", p)
	if out := run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", p, src); !strings.Contains(out, "identical") {
		t.Fatalf("qemu-img compare: %s", out)
	}
	if info := run(t, "qemu-img", "info", p); !strings.Contains(info, "monolithicSparse") {
		t.Fatalf("qemu-img info: %s", info)
	}
	if _, got := readDisk(t, p); !bytes.Equal(got, want) {
		t.Fatal("kura's reader disagrees with its writer")
	}
	if st, _ := os.Stat(p); st.Size() > 3*mib {
		t.Errorf("sparse file of %d bytes for about 1.2 MiB of data", st.Size())
	}
}

// TestFlatDescriptorForQemu checks that a descriptor kura writes for a flat
// extent is read by qemu-img the same as the raw bytes.
func TestFlatDescriptorForQemu(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	src, _ := rawImage(t, dir, 6*mib, 4)
	if err := os.Rename(src, filepath.Join(dir, "d-flat.vmdk")); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"monolithicFlat", "vmfs"} {
		ext := ExtentFlat
		if typ == "vmfs" {
			ext = ExtentVMFS
		}
		d := NewDescriptor(typ, 6*mib, "lsilogic", Extent{Access: "RW", Sectors: 6 * mib / SectorSize, Type: ext, File: "d-flat.vmdk"})
		p := filepath.Join(dir, "d-"+typ+".vmdk")
		if err := os.WriteFile(p, d.Encode(), 0o600); err != nil {
			t.Fatal(err)
		}
		if typ == "monolithicFlat" { // qemu reads createType vmfs as well, but names it differently
			if out := run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", p, filepath.Join(dir, "d-flat.vmdk")); !strings.Contains(out, "identical") {
				t.Fatalf("%s: %s", typ, out)
			}
		}
		if _, err := OpenFile(p); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
}
