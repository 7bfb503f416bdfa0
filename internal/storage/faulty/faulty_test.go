package faulty

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/mem"
	"github.com/kurabackup/kura/internal/storage/storagetest"
)

func TestConformanceNoFaults(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return New(mem.New(), Options{}) })
}

func TestFailPutN(t *testing.T) {
	ctx := context.Background()
	be := New(mem.New(), Options{FailPutN: 3})
	for i, name := range []string{"a", "b", "c", "d"} {
		err := be.Put(ctx, name, []byte(name))
		if (i == 2) != errors.Is(err, ErrInjected) {
			t.Fatalf("put #%d: %v", i+1, err)
		}
	}
	if _, err := be.Get(ctx, "c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("failed put stored the object: %v", err)
	}
	if _, err := be.Get(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if s := be.Stats(); s.Puts != 4 || s.Injected != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPrefixFaults(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	if err := inner.Put(ctx, "index/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	be := New(inner, Options{FailPutPrefix: "chunks/", FailGetPrefix: "index/", FailDeletePrefix: "index/"})
	if err := be.Put(ctx, "chunks/ab/1", nil); !errors.Is(err, ErrInjected) {
		t.Fatalf("put under failing prefix: %v", err)
	}
	if err := be.Put(ctx, "chunksx", nil); err != nil {
		t.Fatalf("put outside prefix: %v", err)
	}
	if _, err := be.Get(ctx, "index/x"); !errors.Is(err, ErrInjected) {
		t.Fatalf("get: %v", err)
	}
	if _, err := be.GetRange(ctx, "index/x", 0, 1); !errors.Is(err, ErrInjected) {
		t.Fatalf("getrange: %v", err)
	}
	if _, err := be.Stat(ctx, "index/x"); !errors.Is(err, ErrInjected) {
		t.Fatalf("stat: %v", err)
	}
	if err := be.Delete(ctx, "index/x"); !errors.Is(err, ErrInjected) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := inner.Get(ctx, "index/x"); err != nil {
		t.Fatalf("failed delete removed the object: %v", err)
	}
	be.SetOptions(Options{FailList: true})
	if err := be.List(ctx, "", func(storage.ObjectInfo) error { return nil }); !errors.Is(err, ErrInjected) {
		t.Fatalf("list: %v", err)
	}
	be.SetOptions(Options{})
	if err := be.Delete(ctx, "index/x"); err != nil {
		t.Fatalf("delete after clearing faults: %v", err)
	}
}

func TestNoSpaceAfter(t *testing.T) {
	ctx := context.Background()
	be := New(mem.New(), Options{NoSpaceAfter: 1000})
	// A put the inner backend rejects does not use the budget.
	if err := be.Put(ctx, "BAD", make([]byte, 600)); !errors.Is(err, storage.ErrInvalidName) {
		t.Fatal(err)
	}
	if err := be.Put(ctx, "a", make([]byte, 600)); err != nil {
		t.Fatal(err)
	}
	if err := be.Put(ctx, "b", make([]byte, 401)); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("put past budget: %v", err)
	}
	if _, err := be.Stat(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("out-of-space put stored the object: %v", err)
	}
	if err := be.Put(ctx, "c", make([]byte, 400)); err != nil {
		t.Fatalf("put within budget: %v", err)
	}
	if s := be.Stats(); s.PutBytes != 1000 {
		t.Fatalf("put bytes %d, want 1000", s.PutBytes)
	}
}

func TestLatency(t *testing.T) {
	be := New(mem.New(), Options{Latency: 30 * time.Millisecond})
	start := time.Now()
	if err := be.Put(context.Background(), "a", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("put took %v, want >= 30ms", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	be.SetOptions(Options{Latency: time.Hour})
	if _, err := be.Get(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get under latency with short ctx: %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	ctx := context.Background()
	be := New(mem.New(), Options{Corrupt: []string{"chunks/aa/1"}})
	data := bytes.Repeat([]byte("0123456789"), 100)
	for _, n := range []string{"chunks/aa/1", "chunks/aa/2"} {
		if err := be.Put(ctx, n, data); err != nil {
			t.Fatal(err)
		}
	}
	got, err := be.Get(ctx, "chunks/aa/1")
	if err != nil || bytes.Equal(got, data) || len(got) != len(data) {
		t.Fatalf("corrupt get: equal=%v len=%d err=%v", bytes.Equal(got, data), len(got), err)
	}
	part, err := be.GetRange(ctx, "chunks/aa/1", 10, 1)
	if err != nil || part[0] == data[10] {
		t.Fatalf("corrupt getrange: %v %v", part, err)
	}
	if got, _ := be.Get(ctx, "chunks/aa/2"); !bytes.Equal(got, data) {
		t.Fatal("uncorrupted object altered")
	}
	if got, _ := be.Inner().Get(ctx, "chunks/aa/1"); !bytes.Equal(got, data) {
		t.Fatal("stored object altered")
	}
	be.Heal("chunks/aa/1")
	if got, _ := be.Get(ctx, "chunks/aa/1"); !bytes.Equal(got, data) {
		t.Fatal("healed object still corrupt")
	}
	be.Corrupt("chunks/aa/2")
	if got, _ := be.Get(ctx, "chunks/aa/2"); bytes.Equal(got, data) {
		t.Fatal("Corrupt had no effect")
	}
}
