// Package storagetest is the conformance suite for storage.Backend
// implementations. Every backend and every fake calls Run from its tests;
// a backend that passes gives the guarantees documented in package storage.
//
// The checks, each a subtest of Run:
//
//   - InvalidNames: every method rejects malformed names with ErrInvalidName.
//   - PutGet: bytes round-trip under nested names; Stat reports size and a
//     plausible ModTime.
//   - EmptyObject: a zero-length object exists, has size 0 and reads back.
//   - Overwrite: Put on an existing name replaces it (shorter and longer).
//   - NotFound: Get, GetRange, Stat and Delete of a missing name wrap
//     ErrNotFound.
//   - Range: exact sub-ranges, zero-length reads, reads to the end, and
//     ErrRange for ranges past the end or negative.
//   - Large: a 16 MiB object round-trips, whole and by ranges.
//   - Isolation: mutating a slice passed to Put or returned by Get does not
//     change the stored object.
//   - List: prefixes "", directory-like ("chunks/"), partial ("chunks/a"),
//     exact names and non-matching prefixes report exactly the right names
//     and sizes; an error from fn stops the listing and is returned.
//   - Delete: a deleted object disappears from Get, Stat and List and can be
//     put again.
//   - ReadAfterWrite: every Put/Delete is immediately visible to Get, Stat
//     and List.
//   - Concurrent: many goroutines put, get and list distinct objects.
//   - AtomicOverwrite: readers racing with overwriters of one name only
//     ever see one of the complete versions.
//   - Cancel: every method fails with an error wrapping context.Canceled
//     when ctx is already cancelled, and a cancelled Put writes nothing.
//   - Location: Location is not empty.
//
// RunRetainer is the suite of the optional storage.Retainer (object
// retention), for backends that implement it.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// Run runs the conformance suite. newBackend must return a fresh, empty
// backend each time it is called; Run closes it when the subtest ends.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, be storage.Backend)
	}{
		{"InvalidNames", testInvalidNames},
		{"PutGet", testPutGet},
		{"EmptyObject", testEmptyObject},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"Range", testRange},
		{"Large", testLarge},
		{"Isolation", testIsolation},
		{"List", testList},
		{"Delete", testDelete},
		{"ReadAfterWrite", testReadAfterWrite},
		{"Concurrent", testConcurrent},
		{"AtomicOverwrite", testAtomicOverwrite},
		{"Cancel", testCancel},
		{"Location", testLocation},
		{"GetBuffer", testGetBuffer},
		{"GetOwned", testGetOwned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			t.Cleanup(func() {
				if err := be.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, be)
		})
	}
}

// randBytes returns n pseudo-random bytes derived from seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustPut(t *testing.T, be storage.Backend, name string, data []byte) {
	t.Helper()
	if err := be.Put(context.Background(), name, data); err != nil {
		t.Fatalf("put %q: %v", name, err)
	}
}

func mustGet(t *testing.T, be storage.Backend, name string, want []byte) {
	t.Helper()
	got, err := be.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("get %q: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %q: got %d bytes, want %d bytes (content differs)", name, len(got), len(want))
	}
}

// testGetOwned: the caller owns what Get and GetRange return (the
// repository decrypts chunks where they lie): changing it changes nothing
// stored, nor what Put was given.
func testGetOwned(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	data := randBytes(11, 64<<10)
	put := bytes.Clone(data)
	mustPut(t, be, "owned/x", put)
	got, err := be.Get(ctx, "owned/x")
	if err != nil {
		t.Fatal(err)
	}
	clear(got)
	r, err := be.GetRange(ctx, "owned/x", 100, 1000)
	if err != nil {
		t.Fatal(err)
	}
	clear(r)
	mustGet(t, be, "owned/x", data)
	clear(put)
	mustGet(t, be, "owned/x", data)
}

// testGetBuffer reads objects into reused buffers (storage.GetBuffer, the
// backend's BufferGetter when it has one): too small, large enough, empty
// objects and missing ones.
func testGetBuffer(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	big, small := randBytes(7, 300<<10), randBytes(8, 1000)
	mustPut(t, be, "gb/big", big)
	mustPut(t, be, "gb/small", small)
	mustPut(t, be, "gb/empty", nil)
	buf := make([]byte, 10)
	for _, c := range []struct {
		name string
		want []byte
	}{{"gb/big", big}, {"gb/small", small}, {"gb/empty", nil}, {"gb/big", big}} {
		got, err := storage.GetBuffer(ctx, be, c.name, buf)
		if err != nil {
			t.Fatalf("get buffer %s: %v", c.name, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Fatalf("get buffer %s: %d bytes, want %d (content differs)", c.name, len(got), len(c.want))
		}
		if cap(got) > cap(buf) {
			buf = got
		}
	}
	if _, err := storage.GetBuffer(ctx, be, "gb/missing", buf); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get buffer of a missing object: %v, want ErrNotFound", err)
	}
}

func listAll(t *testing.T, be storage.Backend, prefix string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	err := be.List(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		if _, dup := m[oi.Name]; dup {
			return fmt.Errorf("name %q listed twice", oi.Name)
		}
		m[oi.Name] = oi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return m
}

func testInvalidNames(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	bad := []string{"", "/abs", "a/../b", "..", "../x", "a/..", "a//b", "a/", "/", "A", "a b",
		`a\b`, "a/./b", ".", "é", "a\x00b", "chunks/AB", "x:y"}
	for _, name := range bad {
		checks := map[string]error{
			"put":      be.Put(ctx, name, []byte("x")),
			"delete":   be.Delete(ctx, name),
			"getrange": func() error { _, err := be.GetRange(ctx, name, 0, 1); return err }(),
			"get":      func() error { _, err := be.Get(ctx, name); return err }(),
			"stat":     func() error { _, err := be.Stat(ctx, name); return err }(),
		}
		for op, err := range checks {
			if !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("%s %q: got %v, want ErrInvalidName", op, name, err)
			}
		}
	}
	if n := len(listAll(t, be, "")); n != 0 {
		t.Errorf("invalid puts stored %d objects", n)
	}
	for _, prefix := range []string{"/abs", "../", "A", "a//"} {
		err := be.List(ctx, prefix, func(storage.ObjectInfo) error { return nil })
		if !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("list %q: got %v, want ErrInvalidName", prefix, err)
		}
	}
}

func testPutGet(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	before := time.Now()
	names := []string{"config", "keys/0123abcd", "chunks/ab/ab12cd34ef", "a/b/c/d/e.f_g-h", "index/x.1"}
	for i, name := range names {
		data := randBytes(uint64(i), 1000+i*4096)
		mustPut(t, be, name, data)
		mustGet(t, be, name, data)
		oi, err := be.Stat(ctx, name)
		if err != nil {
			t.Fatalf("stat %q: %v", name, err)
		}
		if oi.Name != name || oi.Size != int64(len(data)) {
			t.Errorf("stat %q: got %+v, want name %q size %d", name, oi, name, len(data))
		}
		// Filesystem timestamps may be coarse; allow slack both ways.
		if oi.ModTime.Before(before.Add(-2*time.Second)) || oi.ModTime.After(time.Now().Add(2*time.Second)) {
			t.Errorf("stat %q: implausible mod time %v (test started %v)", name, oi.ModTime, before)
		}
	}
}

func testEmptyObject(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	mustPut(t, be, "empty", nil)
	got, err := be.Get(ctx, "empty")
	if err != nil || len(got) != 0 {
		t.Fatalf("get empty: %d bytes, %v", len(got), err)
	}
	oi, err := be.Stat(ctx, "empty")
	if err != nil || oi.Size != 0 {
		t.Fatalf("stat empty: %+v, %v", oi, err)
	}
	if got, err := be.GetRange(ctx, "empty", 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("getrange empty 0,0: %d bytes, %v", len(got), err)
	}
	if _, err := be.GetRange(ctx, "empty", 0, 1); !errors.Is(err, storage.ErrRange) {
		t.Fatalf("getrange empty 0,1: got %v, want ErrRange", err)
	}
	if m := listAll(t, be, "empty"); len(m) != 1 || m["empty"] != 0 {
		t.Fatalf("list empty: %v", m)
	}
}

func testOverwrite(t *testing.T, be storage.Backend) {
	for i, size := range []int{5000, 100, 0, 70000, 70000} {
		data := randBytes(uint64(100+i), size)
		mustPut(t, be, "over/write", data)
		mustGet(t, be, "over/write", data)
		oi, err := be.Stat(context.Background(), "over/write")
		if err != nil || oi.Size != int64(size) {
			t.Fatalf("stat after overwrite %d: %+v, %v", i, oi, err)
		}
	}
	if m := listAll(t, be, ""); len(m) != 1 {
		t.Fatalf("after overwrites list has %v, want one object", m)
	}
}

func testNotFound(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	mustPut(t, be, "present/x", []byte("x"))
	for _, name := range []string{"missing", "present/y", "present/x/z", "present"} {
		if _, err := be.Get(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("get %q: got %v, want ErrNotFound", name, err)
		}
		if _, err := be.GetRange(ctx, name, 0, 0); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("getrange %q: got %v, want ErrNotFound", name, err)
		}
		if _, err := be.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("stat %q: got %v, want ErrNotFound", name, err)
		}
		if err := be.Delete(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("delete %q: got %v, want ErrNotFound", name, err)
		}
	}
}

func testRange(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	data := randBytes(7, 10000)
	mustPut(t, be, "range", data)
	ok := [][2]int64{{0, 10000}, {0, 1}, {9999, 1}, {1234, 5678}, {10000, 0}, {0, 0}, {5000, 5000}}
	for _, r := range ok {
		got, err := be.GetRange(ctx, "range", r[0], r[1])
		if err != nil {
			t.Errorf("getrange %v: %v", r, err)
			continue
		}
		if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Errorf("getrange %v: wrong bytes (len %d)", r, len(got))
		}
	}
	bad := [][2]int64{{0, 10001}, {9999, 2}, {10000, 1}, {10001, 0}, {-1, 5}, {5, -1}, {1 << 62, 1 << 62}}
	for _, r := range bad {
		if _, err := be.GetRange(ctx, "range", r[0], r[1]); !errors.Is(err, storage.ErrRange) {
			t.Errorf("getrange %v: got %v, want ErrRange", r, err)
		}
	}
}

func testLarge(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	data := randBytes(16, 16<<20)
	mustPut(t, be, "large/object", data)
	mustGet(t, be, "large/object", data)
	for _, r := range [][2]int64{{0, 4 << 20}, {12 << 20, 4 << 20}, {(16 << 20) - 3, 3}, {1<<20 + 17, 3<<20 + 5}} {
		got, err := be.GetRange(ctx, "large/object", r[0], r[1])
		if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("getrange %v: %d bytes, %v", r, len(got), err)
		}
	}
	if oi, err := be.Stat(ctx, "large/object"); err != nil || oi.Size != 16<<20 {
		t.Fatalf("stat: %+v, %v", oi, err)
	}
}

func testIsolation(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	orig := randBytes(3, 4096)
	in := bytes.Clone(orig)
	mustPut(t, be, "iso", in)
	in[0] ^= 0xff
	in[4095] ^= 0xff
	mustGet(t, be, "iso", orig)
	got, err := be.Get(ctx, "iso")
	if err != nil {
		t.Fatal(err)
	}
	got[10] ^= 0xff
	mustGet(t, be, "iso", orig)
	part, err := be.GetRange(ctx, "iso", 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	part[0] ^= 0xff
	mustGet(t, be, "iso", orig)
}
