package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kurabackup/kura/internal/storage/faulty"
	"github.com/kurabackup/kura/internal/storage/mem"
)

// chainPoints writes n points of vm, each an incremental of the previous.
func chainPoints(t *testing.T, r *Repository, vm string, seed uint64, n int) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	var parent *Index
	for i := range n {
		img := killImage(seed + uint64(i))
		m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img)), Parent: parent})
		if vm != "vm1" {
			// writePoint names every VM vm1: rename by rewriting the manifest.
			m.VM.Name = vm
			plain, _ := m.encode()
			if _, err := r.putObject(ctx, typeManifest, pointName(m.ID), plain); err != nil {
				t.Fatal(err)
			}
		}
		out[m.ID] = img
		var err error
		if parent, err = r.LoadIndex(ctx, m.Disks[0].Index); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func checkPoints(t *testing.T, r *Repository, want map[string][]byte) {
	t.Helper()
	for id, img := range want {
		readBack(t, r, id, img)
	}
	if rep, err := r.Verify(context.Background(), VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// A copy into a repository initialised as a copy of the source moves the
// encrypted objects as they are; interrupted at every few writes it never
// leaves a half-visible point, and re-running continues to the end.
func TestCopySameKeysResumes(t *testing.T) {
	ctx := context.Background()
	src, _ := newTestRepo(t, true)
	want := chainPoints(t, src, "vm1", 10, 4)
	fb := faulty.New(mem.New(), faulty.Options{})
	dst, err := Init(ctx, fb, InitOptions{CopyOf: src})
	if err != nil {
		t.Fatal(err)
	}
	if !SameKeys(src, dst) || dst.Config().ChunkSize != src.Config().ChunkSize || dst.Config().CopyOf != src.Config().ID {
		t.Fatalf("copy-of repository: %+v", dst.Config())
	}
	// The same passphrase opens it, with the same keys.
	if dst, err = Open(ctx, fb, "secret", OpenOptions{}); err != nil || !dst.Config().Encrypted || !SameKeys(src, dst) {
		t.Fatalf("open the copy with the source's passphrase: %v, %+v", err, dst.Config())
	}
	interrupted := 0
	for n := 3; ; n += 7 {
		fb.SetOptions(faulty.Options{FailPutN: n})
		rep, err := Copy(ctx, src, dst, CopyOptions{})
		if err == nil {
			if !rep.Raw {
				t.Fatal("same keys but not a raw copy")
			}
			break
		}
		if !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("copy: %v", err)
		}
		interrupted++
		// Whatever is visible is whole.
		points, err := dst.ListPoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range points {
			readBack(t, dst, m.ID, want[m.ID])
		}
	}
	if interrupted < 3 {
		t.Fatalf("only %d interruptions", interrupted)
	}
	fb.SetOptions(faulty.Options{})
	checkPoints(t, dst, want)
	// Objects are byte for byte the source's.
	for id := range want {
		m, _ := src.LoadPoint(ctx, id)
		a, _ := src.be.Get(ctx, indexName(m.Disks[0].Index))
		b, err := dst.be.Get(ctx, indexName(m.Disks[0].Index))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("index of %s not copied as is: %v", id, err)
		}
	}
	// Nothing left to do: every point skipped, nothing written.
	before := fb.Stats().Puts
	rep, err := Copy(ctx, src, dst, CopyOptions{Verify: true})
	if err != nil || rep.Copied != 0 || rep.Skipped != len(want) {
		t.Fatalf("second copy: %+v %v", rep, err)
	}
	if puts := fb.Stats().Puts - before; puts > 4 {
		t.Errorf("second copy wrote %d objects (locks only expected)", puts)
	}
}

// Into a repository with other keys and another chunk size, disks are
// re-chunked and re-encrypted; point ids are kept.
func TestCopyReencodes(t *testing.T) {
	ctx := context.Background()
	src, _ := newTestRepo(t, true)
	want := chainPoints(t, src, "vm1", 20, 3)
	for id, img := range chainPoints(t, src, "vm2", 40, 3) {
		want[id] = img
	}
	dst, err := Init(ctx, mem.New(), InitOptions{Password: "other", ChunkSize: 2 * testCS, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Copy(ctx, src, dst, CopyOptions{VMs: []string{"vm2"}, Latest: 2, Verify: true})
	if err != nil || rep.Raw || rep.Copied != 2 || rep.Verified == 0 {
		t.Fatalf("copy: %+v %v", rep, err)
	}
	for _, p := range rep.Points {
		if p.VM != "vm2" {
			t.Fatalf("copied a point of %s", p.VM)
		}
	}
	rep, err = Copy(ctx, src, dst, CopyOptions{})
	if err != nil || rep.Copied != len(want)-2 || rep.Skipped != 2 {
		t.Fatalf("copy the rest: %+v %v", rep, err)
	}
	checkPoints(t, dst, want)
	m, _ := dst.LoadPoint(ctx, rep.Points[0].ID)
	if m.Disks[0].ChunkSize != 2*testCS {
		t.Errorf("copied disk keeps chunk size %d", m.Disks[0].ChunkSize)
	}
	// Unencrypted destination, too.
	plain, err := Init(ctx, mem.New(), InitOptions{ChunkSize: testCS})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(ctx, src, plain, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkPoints(t, plain, want)
	if _, err := Copy(ctx, src, src, CopyOptions{}); err == nil {
		t.Error("copy of a repository into itself accepted")
	}
}

// A damaged source object is reported, not copied.
func TestCopyRefusesDamagedSource(t *testing.T) {
	ctx := context.Background()
	mb := mem.New()
	src, err := Init(ctx, mb, InitOptions{Password: "secret", ChunkSize: testCS, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	want := chainPoints(t, src, "vm1", 60, 1)
	var id string
	for id = range want {
	}
	m, _ := src.LoadPoint(ctx, id)
	x, _ := src.LoadIndex(ctx, m.Disks[0].Index)
	name := chunkName(x.Digests[0])
	env, _ := mb.Get(ctx, name)
	env[len(env)/2] ^= 1
	if err := mb.Put(ctx, name, env); err != nil {
		t.Fatal(err)
	}
	dst, err := Init(ctx, mem.New(), InitOptions{CopyOf: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(ctx, src, dst, CopyOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("copy of a damaged chunk: %v", err)
	}
	if ids, _ := dst.PointIDs(ctx); len(ids) != 0 {
		t.Fatalf("point committed despite a damaged chunk: %v", ids)
	}
}
