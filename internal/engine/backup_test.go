package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/mem"
)

const (
	chunk = 1 << 20
	mib   = 1 << 20
)

type world struct {
	t    *testing.T
	repo *repo.Repository
	conn *fake.Connector
	eng  *engine.Engine
	// disks mirrors what was written into each VM disk ("vm/target").
	disks map[string][]byte
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Init(ctx, mem.New(), repo.InitOptions{Password: "pw", ChunkSize: chunk, Encrypt: true,
		KDF: repo.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	conn := fake.New()
	return &world{t: t, repo: r, conn: conn, disks: map[string][]byte{},
		eng: &engine.Engine{Repo: r, Conn: conn, Progress: progress.Nop()}}
}

func (w *world) addVM(name string, sizes ...int64) hypervisor.VM {
	spec := fake.VMSpec{Name: name, UUID: "uuid-" + name}
	for i, s := range sizes {
		target := "vd" + string(rune('a'+i))
		spec.Disks = append(spec.Disks, fake.DiskSpec{Target: target, Size: s})
		w.disks[name+"/"+target] = make([]byte, s)
	}
	return w.conn.AddVM(spec)
}

func (w *world) write(vm, target string, off int64, data []byte) {
	w.t.Helper()
	if err := w.conn.Write(vm, target, off, data); err != nil {
		w.t.Fatal(err)
	}
	copy(w.disks[vm+"/"+target][off:], data)
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// checkPoint reads every disk of the point back and compares it byte for
// byte with the mirror as it was when the point was taken.
func (w *world) checkPoint(m *repo.Manifest, want map[string][]byte) {
	w.t.Helper()
	ctx := context.Background()
	for _, d := range m.Disks {
		exp, ok := want[m.VM.Name+"/"+d.Target]
		if !ok {
			w.t.Fatalf("point %s has unexpected disk %s", m.ID, d.Target)
		}
		dr, err := w.repo.OpenDisk(ctx, d.Index)
		if err != nil {
			w.t.Fatal(err)
		}
		got := make([]byte, dr.Size())
		if _, err := dr.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
			w.t.Fatal(err)
		}
		dr.Close()
		if !bytes.Equal(got, exp) {
			w.t.Fatalf("point %s disk %s differs from the disk at backup time", m.ID, d.Target)
		}
	}
}

func (w *world) snapshot() map[string][]byte {
	s := map[string][]byte{}
	for k, v := range w.disks {
		s[k] = bytes.Clone(v)
	}
	return s
}

func (w *world) backup(vms []hypervisor.VM, opts engine.BackupOptions) *engine.BackupReport {
	w.t.Helper()
	rep, err := w.eng.Backup(context.Background(), vms, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

func TestIncrementalForeverEveryPointRestorable(t *testing.T) {
	w := newWorld(t)
	vm := w.addVM("web", 5*mib+3*64<<10, 3*mib) // not a multiple of the chunk size
	w.write("web", "vda", 0, randBytes(1, 2*mib))
	w.write("web", "vda", 4*mib, randBytes(2, mib+3*64<<10))
	w.write("web", "vdb", mib, randBytes(3, mib))

	rep := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{})
	if rep.State != engine.StateCompleted {
		t.Fatalf("state %s: %+v", rep.State, rep.VMs)
	}
	p1, s1 := rep.VMs[0].Point, w.snapshot()
	if p1.Kind != "full" || p1.Checkpoint == "" {
		t.Fatalf("first point kind %q checkpoint %q", p1.Kind, p1.Checkpoint)
	}

	// A small write: the incremental reads only the chunk window it touched.
	w.write("web", "vda", 2*mib+100, []byte("changed inside the guest"))
	rep = w.backup([]hypervisor.VM{vm}, engine.BackupOptions{})
	p2, s2 := rep.VMs[0].Point, w.snapshot()
	if p2.Kind != "incremental" || p2.Parent != p1.ID {
		t.Fatalf("second point kind %q parent %q", p2.Kind, p2.Parent)
	}
	if p2.Stats.BytesRead > chunk {
		t.Fatalf("incremental read %d bytes for a 24-byte change (at most one %d-byte chunk expected)", p2.Stats.BytesRead, chunk)
	}
	w.checkPoint(p1, s1)
	w.checkPoint(p2, s2)

	// Removing the first point never breaks the second.
	if err := w.repo.DeletePoint(context.Background(), p1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.repo.GC(context.Background(), repo.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	w.checkPoint(p2, s2)
	vr, err := w.repo.Verify(context.Background(), repo.VerifyOptions{ReadData: true})
	if err != nil || len(vr.Problems) > 0 {
		t.Fatalf("verify after deleting the parent: %v %+v", err, vr)
	}
}

func TestOneFailingVMDoesNotFailTheOthers(t *testing.T) {
	w := newWorld(t)
	good := w.addVM("good", 2*mib)
	bad := w.addVM("bad", 2*mib)
	w.write("good", "vda", 0, randBytes(4, 2*mib))
	w.conn.SetFailures("bad", errors.New("libvirt says no"), 0, false)

	start := time.Now()
	rep := w.backup([]hypervisor.VM{bad, good}, engine.BackupOptions{Retries: 2, RetryDelay: 10 * time.Millisecond})
	if rep.State != engine.StatePartiallyFailed {
		t.Fatalf("state %s, want PartiallyFailed", rep.State)
	}
	if r := rep.VMs[0]; r.Err == nil || r.Attempts != 3 || !strings.Contains(r.Error, "libvirt says no") {
		t.Fatalf("bad vm result %+v: want 3 attempts and the cause", r)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatalf("retries did not back off")
	}
	if r := rep.VMs[1]; r.Err != nil {
		t.Fatalf("good vm failed: %v", r.Err)
	}
	w.checkPoint(rep.VMs[1].Point, w.snapshot())
	points, _ := w.repo.ListPoints(context.Background())
	if len(points) != 1 {
		t.Fatalf("%d points visible, want 1", len(points))
	}

	// All failing → Failed.
	w.conn.SetFailures("good", errors.New("down"), 0, false)
	rep = w.backup([]hypervisor.VM{bad, good}, engine.BackupOptions{})
	if rep.State != engine.StateFailed {
		t.Fatalf("state %s, want Failed", rep.State)
	}
}

func TestFailureMidTransferLeavesNoPointAndNextIncrementalWorks(t *testing.T) {
	w := newWorld(t)
	vm := w.addVM("db", 8*mib)
	w.write("db", "vda", 0, randBytes(5, 8*mib))
	p1 := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{}).VMs[0].Point

	w.write("db", "vda", 3*mib, randBytes(6, 3*mib))
	w.conn.SetFailures("db", nil, 2*mib, false) // reads fail half way
	rep := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{})
	if rep.State != engine.StateFailed {
		t.Fatalf("state %s, want Failed", rep.State)
	}
	points, _ := w.repo.ListPoints(context.Background())
	if len(points) != 1 || points[0].ID != p1.ID {
		t.Fatalf("a failed backup left a visible point: %v", points)
	}
	w.conn.SetFailures("db", nil, 0, false)
	p3 := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{}).VMs[0].Point
	if p3.Kind != "incremental" || p3.Parent != p1.ID {
		t.Fatalf("after a failed run: kind %q parent %q, want incremental from %s", p3.Kind, p3.Parent, p1.ID)
	}
	if p3.Stats.BytesRead > 4*chunk {
		t.Fatalf("incremental after failure read %d bytes for a 3 MiB change", p3.Stats.BytesRead)
	}
	w.checkPoint(p3, w.snapshot())
}

func TestCancelLeavesNothingVisible(t *testing.T) {
	w := newWorld(t)
	vm := w.addVM("big", 16*mib)
	w.write("big", "vda", 0, randBytes(7, 16*mib))
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	w.eng.Progress = sinkFunc(func(ev progress.Event) {
		if ev.Kind == "disk-progress" && ev.Done > 0 {
			once.Do(cancel)
		}
	})
	rep, err := w.eng.Backup(ctx, []hypervisor.VM{vm}, engine.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != engine.StateFailed || !errors.Is(rep.VMs[0].Err, context.Canceled) {
		t.Fatalf("cancelled backup: state %s err %v", rep.State, rep.VMs[0].Err)
	}
	points, _ := w.repo.ListPoints(context.Background())
	if len(points) != 0 {
		t.Fatalf("cancelled backup left %d points", len(points))
	}
	if cps := w.conn.Checkpoints("big"); len(cps) != 0 {
		t.Fatalf("cancelled backup left checkpoints %v", cps)
	}
	w.eng.Progress = progress.Nop()
	p := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{}).VMs[0].Point
	w.checkPoint(p, w.snapshot())
}

func TestMissingCheckpointIsRepairedAndReported(t *testing.T) {
	w := newWorld(t)
	vm := w.addVM("app", 4*mib)
	w.write("app", "vda", 0, randBytes(8, 4*mib))
	p1 := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{}).VMs[0].Point
	// Someone deletes kura's checkpoint behind its back.
	err := w.conn.RemoveLeftover(context.Background(), hypervisor.Leftover{VM: "app", Kind: "checkpoint", Name: p1.Checkpoint})
	if err != nil {
		t.Fatal(err)
	}
	w.write("app", "vda", mib, []byte("x"))
	p2 := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{}).VMs[0].Point
	if p2.Kind != "full" || !strings.Contains(strings.Join(p2.Notes, "\n"), "repair") {
		t.Fatalf("repair not reported: kind %s notes %q", p2.Kind, p2.Notes)
	}
	if p2.Stats.BytesNew > chunk {
		t.Fatalf("repair stored %d new bytes; it should deduplicate against the last point", p2.Stats.BytesNew)
	}
	w.checkPoint(p2, w.snapshot())
}

func TestUnprotectedDiskPolicy(t *testing.T) {
	w := newWorld(t)
	vm := w.conn.AddVM(fake.VMSpec{Name: "lun", UUID: "uuid-lun", Disks: []fake.DiskSpec{
		{Target: "vda", Size: mib}, {Target: "sdb", Size: mib, Unprotectable: "pass-through block LUN"}}})
	w.disks["lun/vda"] = make([]byte, mib)
	rep := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{Unprotected: "fail", Retries: 3})
	if r := rep.VMs[0]; !errors.Is(r.Err, engine.ErrUnprotectedDisk) || r.Attempts != 1 {
		t.Fatalf("--unprotected fail: %+v", r)
	}
	rep = w.backup([]hypervisor.VM{vm}, engine.BackupOptions{Unprotected: "skip"})
	p := rep.VMs[0].Point
	if p == nil || len(p.Disks) != 1 || !strings.Contains(strings.Join(p.Notes, " "), "sdb not protected: pass-through block LUN") {
		t.Fatalf("--unprotected skip: %+v", rep.VMs[0])
	}
}

type sinkFunc func(progress.Event)

func (f sinkFunc) Emit(ev progress.Event) { f(ev) }
