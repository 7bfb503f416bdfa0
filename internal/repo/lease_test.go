package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/storage"
)

func TestLeaseKeepsPointFromDeletionAndGC(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, true)
	img := randomBytes(21, 4*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	other, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(randomBytes(22, testCS)), Size: testCS})

	l, ms, err := r.LeasePoints(ctx, "restore", m.ID[:len(m.ID)-2], m.ID) // a prefix and the id: one point
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != m.ID || len(l.Points()) != 1 {
		t.Fatalf("lease of one point by prefix and id: %v, %d manifests", l.Points(), len(ms))
	}
	res, err := r.DeletePoints(ctx, []string{m.ID, other.ID}, DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 1 || res.Deleted[0] != other.ID || !strings.HasPrefix(res.Kept[m.ID], "restore by ") {
		t.Fatalf("delete under lease: %+v", res)
	}
	if err := r.DeletePoint(ctx, m.ID); !errors.Is(err, ErrLeased) {
		t.Fatalf("DeletePoint of a leased point: %v", err)
	}
	if _, err := r.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	readBack(t, r, m.ID, img)

	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.DeletePoint(ctx, m.ID); err != nil {
		t.Fatalf("delete after release: %v", err)
	}
	if _, _, err := r.LeasePoint(ctx, "files", m.ID); !errors.Is(err, ErrPointNotFound) {
		t.Fatalf("lease of a deleted point: %v", err)
	}
}

// leaseOnDelete takes a reader lease on a point just before its manifest is
// deleted: a reader that arrived between DeletePoints' look at the leases
// and the deletion.
type leaseOnDelete struct {
	storage.Backend
	lk *lock.Lock
}

func (b *leaseOnDelete) Delete(ctx context.Context, name string) error {
	if id := pointIDFromName(name); id != "" && b.lk == nil {
		lk, err := lock.Acquire(ctx, b.Backend, lock.Read, map[string]string{"purpose": "late reader", "points": id})
		if err != nil {
			return err
		}
		b.lk = lk
	}
	return b.Backend.Delete(ctx, name)
}

func TestDeletionRacingALeaseIsUndone(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, false)
	img := randomBytes(23, 3*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	hook := &leaseOnDelete{Backend: be}
	r.be = hook
	res, err := r.DeletePoints(ctx, []string{m.ID}, DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 0 || !strings.HasPrefix(res.Kept[m.ID], "late reader") {
		t.Fatalf("deletion racing a lease: %+v", res)
	}
	readBack(t, r, m.ID, img)
	_ = hook.lk.Release(ctx)
}

func TestPruneLockExcludesGC(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, false)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(randomBytes(24, testCS)), Size: testCS})
	gc, err := lockAcquireGC(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.DeletePoints(ctx, []string{m.ID}, DeleteOptions{})
	var le *lock.LockedError
	if !errors.As(err, &le) || le.Holder.Kind != lock.GC {
		t.Fatalf("delete during gc: %v", err)
	}
	go func() { time.Sleep(200 * time.Millisecond); _ = gc.Release(ctx) }()
	res, err := r.DeletePoints(ctx, []string{m.ID}, DeleteOptions{Wait: 30 * time.Second})
	if err != nil || len(res.Deleted) != 1 {
		t.Fatalf("delete waiting for gc: %+v, %v", res, err)
	}
}

func TestWriteVersionRange(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, true)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(randomBytes(25, testCS)), Size: testCS})
	defer func(lo, hi int) { writeMin, writeMax = lo, hi }(writeMin, writeMax)
	v := r.Config().Version
	writeMin, writeMax = v+1, v+1 // a kura that reads this version but writes only the next
	msg := fmt.Sprintf("format version %d, this kura writes %d to %d", v, v+1, v+1)
	for what, err := range map[string]error{
		"writer": func() error { _, err := r.NewWriter(ctx, "x"); return err }(),
		"delete": r.DeletePoint(ctx, m.ID),
		"gc":     func() error { _, err := r.GC(ctx, GCOptions{}); return err }(),
		"key":    func() error { _, err := r.AddKey(ctx, "another"); return err }(),
	} {
		if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s on a version it does not write: %v", what, err)
		}
	}
	if _, err := r.GC(ctx, GCOptions{DryRun: true}); err != nil {
		t.Errorf("dry-run gc only reads: %v", err)
	}
	if _, err := r.LoadPoint(ctx, m.ID); err != nil {
		t.Errorf("reading still works: %v", err)
	}
}

func TestVerifyLeasesEveryPoint(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, false)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(randomBytes(26, testCS)), Size: testCS})
	l, err := r.LeaseAll(ctx, "verify")
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.DeletePoints(ctx, []string{m.ID}, DeleteOptions{})
	if err != nil || len(res.Deleted) != 0 || !strings.HasPrefix(res.Kept[m.ID], "verify by") {
		t.Fatalf("delete while every point is leased: %+v, %v", res, err)
	}
	_ = l.Release(ctx)
	// Verify releases its lease when done.
	if _, err := r.Verify(ctx, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeletePoint(ctx, m.ID); err != nil {
		t.Fatalf("delete after verify: %v", err)
	}
}

// TestUndecodableKeyFile: a damaged key file is reported as damaged (and
// how to recover), not as "no key files".
func TestUndecodableKeyFile(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	names, err := r.listNames(ctx, "keys/")
	if err != nil || len(names) != 1 {
		t.Fatalf("keys: %v %v", names, err)
	}
	if err := be.Put(ctx, names[0], []byte(`{"version":1,"kdf":"argon2id","salt":"!!"`)); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, be, "secret", OpenOptions{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "no key file decodes") ||
		!strings.Contains(err.Error(), names[0]) || !strings.Contains(err.Error(), "--master-key-file") {
		t.Fatalf("open with a damaged key file: %v", err)
	}
	if err := be.Delete(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, "secret", OpenOptions{}); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "no key files") {
		t.Fatalf("open without key files: %v", err)
	}
}

// TestDistrustHeals: a chunk verify found corrupt is stored again by the
// next writer that meets the same data — even an incremental one whose
// window is unchanged — and every point using it reads back again.
func TestDistrustHeals(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	img := randomBytes(41, 4*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	x, err := r.LoadIndex(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	bad := chunkName(x.Digests[2])
	if err := be.Put(ctx, bad, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Object != bad {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// An incremental backup where nothing changed: without distrust, the
	// damaged chunk would be reused from the parent.
	w, err := r.NewWriter(ctx, "heal")
	if err != nil {
		t.Fatal(err)
	}
	w.Distrust([]string{bad})
	src := DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img)), Parent: x,
		Extents: []Extent{{Offset: 0, Length: int64(len(img)), Kind: ExtentUnchanged}}}
	id, st, err := w.WriteDisk(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesRead != testCS || st.ChunksNew != 1 {
		t.Errorf("healing write read %d bytes, %d new chunks; want the damaged window only", st.BytesRead, st.ChunksNew)
	}
	if err := w.Commit(ctx, &Manifest{Kind: "incremental", Disks: []DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: testCS, Index: id}}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if rep, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify after healing: %+v %v", rep, err)
	}
	readBack(t, r, m.ID, img)
}
