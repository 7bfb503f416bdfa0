package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

func open(t *testing.T, opts Options) *Backend {
	t.Helper()
	be, err := OpenOptions(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestOpenNeedsDirectory(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open missing dir: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f); err == nil {
		t.Fatal("open of a regular file succeeded")
	}
}

func TestLayoutAndReservedTmp(t *testing.T) {
	ctx := context.Background()
	be := open(t, Options{})
	if err := be.Put(ctx, "chunks/ab/abcd", []byte("data")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(be.Dir(), "chunks", "ab", "abcd"))
	if err != nil || string(got) != "data" {
		t.Fatalf("object file: %q, %v", got, err)
	}
	for _, name := range []string{"tmp", "tmp/put-123"} {
		if err := be.Put(ctx, name, nil); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("put %q: %v, want ErrInvalidName", name, err)
		}
	}
	// A temporary file left by a killed writer is invisible.
	if err := os.WriteFile(filepath.Join(be.Dir(), "tmp", "put-leftover"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := be.List(ctx, "", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "chunks/ab/abcd" {
		t.Fatalf("list: %v", names)
	}
	entries, _ := os.ReadDir(filepath.Join(be.Dir(), "tmp"))
	if len(entries) != 1 {
		t.Fatalf("tmp holds %d files, want only the leftover (puts must not leave temp files)", len(entries))
	}
}

func TestCleanTemp(t *testing.T) {
	ctx := context.Background()
	be := open(t, Options{})
	if n, err := be.CleanTemp(ctx, time.Hour); n != 0 || err != nil {
		t.Fatalf("clean with no tmp dir: %d, %v", n, err)
	}
	if err := be.Put(ctx, "x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(be.Dir(), "tmp")
	old := time.Now().Add(-2 * time.Hour)
	for i := range 3 {
		p := filepath.Join(tmp, fmt.Sprintf("put-old%d", i))
		if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "put-fresh"), []byte("fresh"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := be.CleanTemp(ctx, time.Hour)
	if n != 3 || err != nil {
		t.Fatalf("clean: removed %d, %v; want 3", n, err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "put-fresh")); err != nil {
		t.Fatalf("fresh temp file removed: %v", err)
	}
	if _, err := be.Get(ctx, "x"); err != nil {
		t.Fatalf("object lost by clean: %v", err)
	}
}

func TestListToleratesConcurrentDeletes(t *testing.T) {
	ctx := context.Background()
	be := open(t, Options{NoSync: true})
	for i := range 64 {
		if err := be.Put(ctx, fmt.Sprintf("chunks/%02x/c%d", i%8, i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	err := be.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		seen++
		// Delete a whole other subdirectory's objects and the directory
		// itself, as a concurrent prune might.
		if seen == 1 {
			for i := range 64 {
				_ = be.Delete(ctx, fmt.Sprintf("chunks/%02x/c%d", (i%8+4)%8, i))
			}
			for d := range 8 {
				_ = os.Remove(filepath.Join(be.Dir(), "chunks", fmt.Sprintf("%02x", d)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list with concurrent deletes: %v", err)
	}
	if seen < 1 || seen > 64 {
		t.Fatalf("seen %d", seen)
	}
}

// TestNoSpace fills a small tmpfs and checks ErrNoSpace and cleanup.
func TestNoSpace(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	ctx := context.Background()
	be, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	small := bytes.Repeat([]byte{1}, 100<<10)
	if err := be.Put(ctx, "small", small); err != nil {
		t.Fatalf("put small: %v", err)
	}
	err = be.Put(ctx, "big", make([]byte, 2<<20))
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("put 2 MiB on 1 MiB fs: %v, want ErrNoSpace", err)
	}
	if _, err := be.Stat(ctx, "big"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("failed put left an object: %v", err)
	}
	// Overwriting an existing object with too much data keeps the old one.
	if err := be.Put(ctx, "small", make([]byte, 2<<20)); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := be.Get(ctx, "small")
	if err != nil || !bytes.Equal(got, small) {
		t.Fatalf("old object damaged by failed overwrite: %d bytes, %v", len(got), err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(entries) != 0 {
		t.Fatalf("%d temp files left after ENOSPC", len(entries))
	}
	// Space is usable again.
	if err := be.Put(ctx, "after", make([]byte, 500<<10)); err != nil {
		t.Fatalf("put after ENOSPC: %v", err)
	}
}
