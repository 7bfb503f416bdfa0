package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// RunRetainer checks a storage.Retainer on a store that can lock objects:
// a retained object reports its date, cannot be deleted before it, has
// its date extended but never shortened, and can be deleted once the date
// passed. Lock periods are a few seconds, so the subtest sleeps.
func RunRetainer(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Helper()
	ctx := context.Background()
	be := newBackend(t)
	t.Cleanup(func() { _ = be.Close() })
	rt, ok := be.(storage.Retainer)
	if !ok {
		t.Fatalf("%T is not a storage.Retainer", be)
	}
	if ok, err := rt.RetentionSupported(ctx); err != nil || !ok {
		t.Fatalf("RetentionSupported: %v, %v", ok, err)
	}
	until := time.Now().Add(3 * time.Second).Truncate(time.Second)
	if err := rt.PutRetained(ctx, "ret/a", []byte("locked"), until); err != nil {
		t.Fatal(err)
	}
	mustPut(t, be, "ret/free", []byte("free"))
	oi, err := be.Stat(ctx, "ret/a")
	if err != nil || oi.RetainUntil.Before(until) {
		t.Fatalf("stat of a retained object: %+v, %v (want retained until %s)", oi, err, until)
	}
	if oi, _ := be.Stat(ctx, "ret/free"); !oi.RetainUntil.IsZero() {
		t.Errorf("object put without retention reports %s", oi.RetainUntil)
	}
	if err := be.Delete(ctx, "ret/a"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("delete before the date: %v, want ErrRetained", err)
	}
	mustGet(t, be, "ret/a", []byte("locked"))
	later := until.Add(2 * time.Second)
	if err := rt.ExtendRetention(ctx, "ret/a", later); err != nil {
		t.Fatalf("extend: %v", err)
	}
	if err := rt.ExtendRetention(ctx, "ret/a", until); err != nil {
		t.Fatalf("extend to an earlier date (a no-op): %v", err)
	}
	if oi, err := be.Stat(ctx, "ret/a"); err != nil || oi.RetainUntil.Before(later) {
		t.Fatalf("after extending: %+v, %v (want %s)", oi, err, later)
	}
	if err := be.Delete(ctx, "ret/free"); err != nil {
		t.Fatalf("delete of an object without retention: %v", err)
	}
	time.Sleep(time.Until(later.Add(1500 * time.Millisecond)))
	if err := be.Delete(ctx, "ret/a"); err != nil {
		t.Fatalf("delete after the date: %v", err)
	}
	if m := listAll(t, be, "ret/"); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
}
