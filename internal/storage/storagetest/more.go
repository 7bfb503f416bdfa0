package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
)

func testList(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	all := map[string]int64{
		"config":              10,
		"chunks/ab/ab01":      11,
		"chunks/ab/ab02":      12,
		"chunks/ac/ac01":      13,
		"chunks/b0/b001":      14,
		"chunksx":             15,
		"index/vm1/2026-11-1": 16,
		"locks/backup-01":     0,
	}
	for name, size := range all {
		mustPut(t, be, name, randBytes(uint64(size), int(size)))
	}
	want := func(prefix string) map[string]int64 {
		m := map[string]int64{}
		for name, size := range all {
			if len(name) >= len(prefix) && name[:len(prefix)] == prefix {
				m[name] = size
			}
		}
		return m
	}
	for _, prefix := range []string{"", "c", "chunks", "chunks/", "chunks/a", "chunks/ab", "chunks/ab/",
		"chunks/ab/ab01", "chunks/ab/ab0", "chunks/zz/", "nothing", "index/vm1/", "locks/", "config", "configx"} {
		got := listAll(t, be, prefix)
		if w := want(prefix); !maps.Equal(got, w) {
			t.Errorf("list %q: got %v, want %v", prefix, got, w)
		}
	}
	stop := errors.New("stop here")
	calls := 0
	err := be.List(ctx, "chunks/", func(storage.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("list with failing fn: err %v after %d calls, want the fn's error after 1 call", err, calls)
	}
	// fn may call back into the backend (e.g. Get each listed object).
	err = be.List(ctx, "chunks/ab/", func(oi storage.ObjectInfo) error {
		data, err := be.Get(ctx, oi.Name)
		if err == nil && int64(len(data)) != oi.Size {
			err = fmt.Errorf("%s: listed size %d, got %d bytes", oi.Name, oi.Size, len(data))
		}
		return err
	})
	if err != nil {
		t.Errorf("list with nested get: %v", err)
	}
}

func testDelete(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	mustPut(t, be, "del/a", []byte("a"))
	mustPut(t, be, "del/b", []byte("bb"))
	if err := be.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := be.Get(ctx, "del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := be.Stat(ctx, "del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if err := be.Delete(ctx, "del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if m := listAll(t, be, "del/"); !maps.Equal(m, map[string]int64{"del/b": 2}) {
		t.Fatalf("list after delete: %v", m)
	}
	mustGet(t, be, "del/b", []byte("bb"))
	mustPut(t, be, "del/a", []byte("again"))
	mustGet(t, be, "del/a", []byte("again"))
	if err := be.Delete(ctx, "del/b"); err != nil {
		t.Fatal(err)
	}
	if err := be.Delete(ctx, "del/a"); err != nil {
		t.Fatal(err)
	}
	if m := listAll(t, be, ""); len(m) != 0 {
		t.Fatalf("list after deleting all: %v", m)
	}
}

func testReadAfterWrite(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	for i := range 50 {
		name := fmt.Sprintf("raw/%02x/obj%d", i%4, i)
		data := randBytes(uint64(1000+i), i*37)
		mustPut(t, be, name, data)
		if oi, err := be.Stat(ctx, name); err != nil || oi.Size != int64(len(data)) {
			t.Fatalf("stat right after put %q: %+v, %v", name, oi, err)
		}
		if m := listAll(t, be, name); m[name] != int64(len(data)) || len(m) != 1 {
			t.Fatalf("list right after put %q: %v", name, m)
		}
		mustGet(t, be, name, data)
		if i%3 == 0 {
			if err := be.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
			if m := listAll(t, be, name); len(m) != 0 {
				t.Fatalf("list right after delete %q: %v", name, m)
			}
		}
	}
}

func testConcurrent(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	const workers, per = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				name := fmt.Sprintf("conc/%02x/w%d-%d", (w*per+i)%16, w, i)
				data := randBytes(uint64(w*1000+i), 1+(w*per+i)*97%20000)
				if err := be.Put(ctx, name, data); err != nil {
					errs <- err
					return
				}
				got, err := be.Get(ctx, name)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("get %q: %d bytes, %v", name, len(got), err)
					return
				}
				if i%10 == 0 {
					err := be.List(ctx, "conc/", func(storage.ObjectInfo) error { return nil })
					if err != nil {
						errs <- fmt.Errorf("list during puts: %w", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m := listAll(t, be, "conc/"); len(m) != workers*per {
		t.Errorf("listed %d objects, want %d", len(m), workers*per)
	}
}

func testAtomicOverwrite(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	versions := make([][]byte, 4)
	for i := range versions {
		versions[i] = randBytes(uint64(500+i), 256<<10+i*1000)
	}
	mustPut(t, be, "atomic/obj", versions[0])
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 30; i++ {
				if err := be.Put(context.Background(), "atomic/obj", versions[(w+i)%len(versions)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 60 {
				got, err := be.Get(context.Background(), "atomic/obj")
				if err != nil {
					errs <- fmt.Errorf("get during overwrite: %w", err)
					return
				}
				match := false
				for _, v := range versions {
					match = match || bytes.Equal(got, v)
				}
				if !match {
					errs <- fmt.Errorf("get during overwrite returned %d bytes matching no version", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCancel(t *testing.T, be storage.Backend) {
	mustPut(t, be, "cancel/x", []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checks := map[string]error{
		"put":      be.Put(ctx, "cancel/new", []byte("new")),
		"delete":   be.Delete(ctx, "cancel/x"),
		"getrange": func() error { _, err := be.GetRange(ctx, "cancel/x", 0, 1); return err }(),
		"get":      func() error { _, err := be.Get(ctx, "cancel/x"); return err }(),
		"stat":     func() error { _, err := be.Stat(ctx, "cancel/x"); return err }(),
		"list":     be.List(ctx, "", func(storage.ObjectInfo) error { return nil }),
	}
	for op, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with cancelled ctx: got %v, want context.Canceled", op, err)
		}
	}
	if m := listAll(t, be, "cancel/"); !maps.Equal(m, map[string]int64{"cancel/x": 1}) {
		t.Errorf("after cancelled put/delete: %v, want only cancel/x", m)
	}
	// Cancelling during a listing stops it.
	for i := range 20 {
		mustPut(t, be, fmt.Sprintf("cancel/l%02d", i), nil)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := be.List(ctx, "cancel/", func(storage.ObjectInfo) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("list cancelled in fn: err %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

func testLocation(t *testing.T, be storage.Backend) {
	if be.Location() == "" {
		t.Error("empty Location")
	}
}
