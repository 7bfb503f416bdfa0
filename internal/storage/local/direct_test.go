package local

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cachedPages counts the pages of a file that are in the page cache.
func cachedPages(t *testing.T, path string) (cached, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		cached += int(v & 1)
	}
	return cached, len(vec)
}

// Large objects are written past the page cache, whatever their length
// and wherever their buffer lies, and read back byte for byte.
func TestDirectWrites(t *testing.T) {
	ctx := context.Background()
	direct := open(t, Options{Batch: true, Direct: true})
	if !direct.direct {
		t.Skip("the test directory's filesystem takes no direct writes") // not ext4, xfs, btrfs or f2fs
	}
	buffered := open(t, Options{Batch: true})
	src := make([]byte, 9<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	for _, c := range []struct {
		name       string
		data       []byte
		wantDirect bool
	}{
		{"aligned", src[:4<<20], true},
		{"odd-tail", src[:4<<20+1234], true},
		{"minimum", src[:directMin], true},
		{"short", src[:directMin-1], false},     // below directMin: the page cache
		{"misaligned", src[1 : 4<<20+1], false}, // buffer not 4 KiB aligned
	} {
		for _, be := range []*Backend{direct, buffered} {
			if err := be.Put(ctx, "chunks/"+c.name, c.data); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got, err := be.Get(ctx, "chunks/"+c.name)
			if err != nil || !bytes.Equal(got, c.data) {
				t.Fatalf("%s: read back %d bytes (%v), want %d equal", c.name, len(got), err, len(c.data))
			}
		}
		// Reading it back cached it: write again and look before reading.
		for _, be := range []*Backend{direct, buffered} {
			if err := be.Delete(ctx, "chunks/"+c.name); err != nil {
				t.Fatal(err)
			}
			if err := be.Put(ctx, "chunks/"+c.name, c.data); err != nil {
				t.Fatal(err)
			}
			cached, total := cachedPages(t, filepath.Join(be.Dir(), "chunks", c.name))
			past := be == direct && c.wantDirect
			if past && cached > 1 || !past && cached < total-1 {
				t.Errorf("%s (direct %v): %d of %d pages cached after the put", c.name, be == direct, cached, total)
			}
		}
	}
	if direct.directOff.Load() {
		t.Error("the filesystem refused direct writes")
	}
}

// tmpfs (like NFS or SMB) keeps buffered writes, and stores objects all
// the same.
func TestDirectTmpfs(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "kura-direct-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	be, err := OpenOptions(dir, Options{Batch: true, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if be.direct {
		t.Error("direct writes on tmpfs")
	}
	data := bytes.Repeat([]byte("kura"), 1<<20)
	ctx := context.Background()
	for range 2 {
		if err := be.Put(ctx, "chunks/x", data); err != nil {
			t.Fatal(err)
		}
		if got, err := be.Get(ctx, "chunks/x"); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back: %d bytes, %v", len(got), err)
		}
	}
}
