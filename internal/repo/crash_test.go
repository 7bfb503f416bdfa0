package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/faulty"
	"github.com/kurabackup/kura/internal/storage/mem"
)

// A write interrupted at any Put leaves no visible point, verify passes,
// and the next run completes.
func TestInterruptedWriteAtEveryPut(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New(), faulty.Options{})
	r, err := Init(ctx, fb, InitOptions{Password: "p", ChunkSize: testCS, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	base := randomBytes(20, 4*testCS)
	m0, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(base), Size: int64(len(base))})
	img := append(bytes.Clone(base[:2*testCS]), randomBytes(21, 3*testCS)...)
	for n := 1; ; n++ {
		fb.SetOptions(faulty.Options{FailPutN: n})
		w, err := r.NewWriter(ctx, "crash")
		if err != nil {
			fb.SetOptions(faulty.Options{})
			continue // the lock Put itself failed
		}
		id, _, err := w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
		if err == nil {
			err = w.Commit(ctx, &Manifest{Disks: []DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: testCS, Index: id}}})
		}
		w.Close()
		fb.SetOptions(faulty.Options{})
		ps, lerr := r.ListPoints(ctx)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if v, verr := r.Verify(ctx, VerifyOptions{ReadData: true}); verr != nil || !v.OK() {
			t.Fatalf("after failing put %d: verify %v %+v", n, verr, v)
		}
		if err == nil {
			if len(ps) != 2 {
				t.Fatalf("committed write left %d points", len(ps))
			}
			for _, p := range ps {
				if p.ID != m0.ID {
					readBack(t, r, p.ID, img)
				}
			}
			if n < 4 {
				t.Fatalf("write succeeded with put %d failing", n)
			}
			break
		}
		if !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("put %d: unexpected error %v", n, err)
		}
		if len(ps) != 1 {
			t.Fatalf("failed write at put %d left %d points", n, len(ps))
		}
	}
	readBack(t, r, m0.ID, base)
}

func TestFullDisk(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New(), faulty.Options{})
	r, err := Init(ctx, fb, InitOptions{ChunkSize: testCS})
	if err != nil {
		t.Fatal(err)
	}
	fb.SetOptions(faulty.Options{NoSpaceAfter: 3 * testCS})
	w, err := r.NewWriter(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	img := randomBytes(22, 8*testCS)
	_, _, err = w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
	if !errors.Is(err, storage.ErrNoSpace) || !strings.Contains(err.Error(), "gc") {
		t.Fatalf("full disk: %v", err)
	}
}
