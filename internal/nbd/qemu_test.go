package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// makeQcow2WithBitmap builds a 64 MiB qcow2 with data, then a persistent
// bitmap "b0", then more writes that the bitmap records.
func makeQcow2WithBitmap(t *testing.T) string {
	needTool(t, "qemu-img", "qemu-io", "qemu-nbd", "nbdinfo")
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 10M 2M",
		"-c", "write -z 20M 1M", img)
	run(t, "qemu-img", "bitmap", "--add", img, "b0")
	run(t, "qemu-img", "bitmap", "--enable", img, "b0")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 4M 1M", "-c", "write -P 0x44 11M 64K",
		"-c", "write -P 0x55 40M 4K", img)
	return img
}

func TestQemuNbdDirtyBitmapMap(t *testing.T) {
	img := makeQcow2WithBitmap(t)
	sock := startServer(t, "qemu-nbd", "--socket=SOCK", "--shared=8", "-f", "qcow2", "-r", "--persistent",
		"-B", "b0", "-A", "-x", "vda", img)
	const dirty = "qemu:dirty-bitmap:b0"
	c := dialTest(t, sock, Options{Export: "vda",
		MetaContexts: []string{"base:allocation", dirty, "qemu:allocation-depth"}})
	if !c.ReadOnly() || c.Size() != 64<<20 {
		t.Fatalf("read-only %v size %d", c.ReadOnly(), c.Size())
	}
	if got := c.MetaContexts(); len(got) != 3 {
		t.Fatalf("negotiated %v", got)
	}
	ctx := context.Background()
	dm, err := c.Map(ctx, dirty)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{0, 4 << 20, 0}, {4 << 20, 1 << 20, StateDirty}, {5 << 20, 6 << 20, 0},
		{11 << 20, 64 << 10, StateDirty}, {11<<20 + 64<<10, 29<<20 - 64<<10, 0},
		{40 << 20, 64 << 10, StateDirty}, {40<<20 + 64<<10, 24<<20 - 64<<10, 0}}
	sameExtents(t, dm, want)
	sameExtents(t, dm, nbdinfoMapExport(t, sock, "vda", dirty))
	am, err := c.Map(ctx, "base:allocation")
	if err != nil {
		t.Fatal(err)
	}
	sameExtents(t, am, nbdinfoMapExport(t, sock, "vda", "base:allocation"))
	if am[0] != (Extent{0, 1 << 20, 0}) {
		t.Fatalf("first allocation extent %+v", am[0])
	}
	dd, err := c.Map(ctx, "qemu:allocation-depth")
	if err != nil {
		t.Fatal(err)
	}
	sameExtents(t, dd, nbdinfoMapExport(t, sock, "vda", "qemu:allocation-depth"))
	// One BlockStatus request describes at most what was asked.
	exts, err := c.BlockStatus(ctx, dirty, 4<<20+4096, 8192)
	if err != nil || len(exts) != 1 || exts[0] != (Extent{4<<20 + 4096, 8192, StateDirty}) {
		t.Fatalf("block status: %v %v", exts, err)
	}
	// Contents equal qemu-img convert's raw image.
	raw := filepath.Join(t.TempDir(), "disk.raw")
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw)
	want2, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); !bytes.Equal(got, want2) {
		t.Fatal("export contents differ from qemu-img convert")
	}
	if err := c.WriteAt(ctx, []byte{1}, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("write to read-only export: %v", err)
	}
}

func nbdinfoMapExport(t *testing.T, sock, export, metaContext string) []Extent {
	t.Helper()
	out := run(t, "nbdinfo", "--map="+metaContext, "--json", "nbd+unix:///"+export+"?socket="+sock)
	var rows []struct {
		Offset, Length int64
		Type           uint32
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("parse nbdinfo: %v\n%s", err, out)
	}
	var exts []Extent
	for _, r := range rows {
		if n := len(exts); n > 0 && exts[n-1].Flags == r.Type {
			exts[n-1].Length += r.Length
			continue
		}
		exts = append(exts, Extent{r.Offset, r.Length, r.Type})
	}
	return exts
}

func TestQemuNbdUnknownExport(t *testing.T) {
	needTool(t, "qemu-img", "qemu-nbd")
	img := filepath.Join(t.TempDir(), "d.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "1M")
	sock := startServer(t, "qemu-nbd", "--socket=SOCK", "--shared=8", "-f", "qcow2", "-r", "--persistent", "-x", "vda", img)
	_, err := Dial(context.Background(), "unix", sock, Options{Export: "vdb"})
	if err == nil || !errors.Is(err, ErrServer) {
		t.Fatalf("dial of unknown export: %v", err)
	}
}

type qemuMapEntry struct {
	Start  int64  `json:"start"`
	Length int64  `json:"length"`
	Data   bool   `json:"data"`
	Zero   bool   `json:"zero"`
	Offset *int64 `json:"offset"` // host offset: present when clusters are allocated
}

func TestQemuNbdWrite(t *testing.T) {
	needTool(t, "qemu-img", "qemu-nbd")
	dir := t.TempDir()
	img := filepath.Join(dir, "out.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	sock, stop := startServerStop(t, "qemu-nbd", "--socket=SOCK", "--shared=8", "-f", "qcow2", "--persistent",
		"--discard=unmap", img)
	c := dialTest(t, sock, Options{MaxInFlight: 8})
	ctx := context.Background()
	want := make([]byte, 64<<20)
	p := make([]byte, 6<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range p {
		p[i] = byte(rng.Uint32() | 1)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.WriteAt(ctx, p, 0))
	copy(want, p)
	must(c.WriteAt(ctx, p[:1<<20], 30<<20))
	copy(want[30<<20:], p[:1<<20])
	must(c.WriteZeroes(ctx, 1<<20, 1<<20, true))  // allocated range, may be unmapped
	must(c.WriteZeroes(ctx, 40<<20, 8<<20, true)) // never written: stays a hole
	must(c.WriteZeroes(ctx, 4<<20, 1<<20, false)) // must stay allocated
	must(c.Trim(ctx, 30<<20, 1<<20))              // qcow2 reads discarded clusters as zero
	clear(want[1<<20 : 2<<20])
	clear(want[4<<20 : 5<<20])
	clear(want[30<<20 : 31<<20])
	must(c.Flush(ctx))
	must(c.Close())
	stop()

	ref := filepath.Join(dir, "ref.raw")
	must(os.WriteFile(ref, want, 0o644))
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", ref, img)

	var m []qemuMapEntry
	must(json.Unmarshal(run(t, "qemu-img", "map", "--output=json", "-U", img), &m))
	allocated := func(off int64) bool {
		for _, e := range m {
			if off >= e.Start && off < e.Start+e.Length {
				return e.Offset != nil
			}
		}
		t.Fatalf("offset %d not in qemu-img map", off)
		return false
	}
	for _, off := range []int64{1 << 20, 2<<20 - 4096, 40 << 20, 47 << 20, 30 << 20} {
		if allocated(off) {
			t.Errorf("offset %d is allocated; zeroed/trimmed range should be a hole: %+v", off, m)
		}
	}
	for _, off := range []int64{0, 3 << 20, 4 << 20, 5 << 20} {
		if !allocated(off) {
			t.Errorf("offset %d should be allocated: %+v", off, m)
		}
	}
}
