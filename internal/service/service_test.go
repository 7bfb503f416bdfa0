package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/retention"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/mem"
)

func newService(t *testing.T) (*Service, *fake.Connector, storage.Backend) {
	t.Helper()
	ctx := context.Background()
	be := mem.New()
	r, err := repo.Init(ctx, be, repo.InitOptions{Password: "pw", Encrypt: true, ChunkSize: 64 << 10,
		KDF: repo.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cat.Close(); _ = r.Close() })
	hv := fake.New()
	for i, name := range []string{"web-1", "web-2", "db-1"} {
		hv.AddVM(fake.VMSpec{Name: name, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1),
			Disks: []fake.DiskSpec{{Target: "vda", Size: 1 << 20}}})
		if err := hv.Write(name, "vda", 0, bytes.Repeat([]byte(name), 20000)); err != nil {
			t.Fatal(err)
		}
	}
	return &Service{Repo: r, Catalog: cat, Conn: hv}, hv, be
}

func TestBackupSelectorsAndPrune(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t)
	rep, err := svc.Backup(ctx, []string{"name:web-*", "name:typo-*"}, engine.BackupOptions{Tags: []string{"group:web"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != phase.PartiallyFailed || len(rep.VMs) != 3 || !errors.Is(rep.VMs[2].Err, hypervisor.ErrNoMatch) {
		t.Fatalf("backup with a selector matching nothing: %+v", rep)
	}
	if _, err := svc.Backup(ctx, []string{"name:none-*"}, engine.BackupOptions{}); !errors.Is(err, ErrNothingSelected) {
		t.Fatalf("no VM at all: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := svc.Backup(ctx, []string{"name:web-*"}, engine.BackupOptions{Tags: []string{"group:web"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Backup(ctx, []string{"db-1"}, engine.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	// Prune by tag: the group's points only, per VM.
	prep, err := svc.Prune(ctx, PruneOptions{Policy: retention.Policy{Last: 1}, Tag: "group:web", GC: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(prep.Removed) != 4 || prep.GC == nil {
		t.Fatalf("prune: %+v", prep)
	}
	ps, _ := svc.Catalog.Points(ctx, catalog.PointFilter{})
	if len(ps) != 3 {
		t.Errorf("catalog after prune: %d points, want 3 (one per web VM, db untouched)", len(ps))
	}
	if _, err := svc.Prune(ctx, PruneOptions{}); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("empty policy: %v", err)
	}
}

// TestVerifyDamageAndHealing: verify records a corrupt chunk and the
// points it breaks; the next backup stores it again; the next verify finds
// the repository sound and clears the damage.
func TestVerifyDamageAndHealing(t *testing.T) {
	ctx := context.Background()
	svc, _, be := newService(t)
	rep, err := svc.Backup(ctx, []string{"web-1"}, engine.BackupOptions{})
	if err != nil || rep.State != phase.Completed {
		t.Fatalf("backup: %+v %v", rep, err)
	}
	m := rep.VMs[0].Point
	x, err := svc.Repo.LoadIndex(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	var bad string
	for _, d := range x.Digests {
		if !d.IsZero() {
			bad = "chunks/" + d.String()[:2] + "/" + d.String()
			break
		}
	}
	if err := be.Put(ctx, bad, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	vr, err := svc.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil || len(vr.Problems) != 1 {
		t.Fatalf("verify: %+v %v", vr, err)
	}
	p, _ := svc.Catalog.Point(ctx, m.ID)
	if !p.Damaged {
		t.Fatal("point not marked damaged")
	}
	// An incremental backup with nothing changed: the damaged chunk is
	// distrusted, read again and stored again.
	rep, err = svc.Backup(ctx, []string{"web-1"}, engine.BackupOptions{})
	if err != nil || rep.State != phase.Completed || rep.VMs[0].Point.Kind != "incremental" {
		t.Fatalf("healing backup: %+v %v", rep, err)
	}
	vr, err = svc.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil || len(vr.Problems) != 0 {
		t.Fatalf("verify after healing: %+v %v", vr, err)
	}
	if p, _ := svc.Catalog.Point(ctx, m.ID); p.Damaged || p.Verified.IsZero() {
		t.Errorf("healed point: damaged %v verified %v", p.Damaged, p.Verified)
	}
	// Outdated-after: a second verify right away re-reads nothing.
	vr, err = svc.Verify(ctx, VerifyOptions{ReadData: true, OutdatedAfter: time.Hour})
	if err != nil || vr.ChunksRead != 0 || vr.ChunksFresh == 0 {
		t.Errorf("verify of fresh chunks: read %d, fresh %d, %v", vr.ChunksRead, vr.ChunksFresh, err)
	}
}

// TestCleanupScope: without VM names, cleanup looks only at VMs this
// repository backed up.
func TestCleanupScope(t *testing.T) {
	ctx := context.Background()
	svc, hv, _ := newService(t)
	if _, err := svc.Backup(ctx, []string{"web-1"}, engine.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-1", "db-1"} {
		vm, _ := hv.LookupVM(ctx, name)
		if err := hv.Abandon(ctx, vm, hypervisor.BackupOptions{NewCheckpoint: hypervisor.CheckpointName("", "left-"+name)}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := svc.Cleanup(ctx, CleanupOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Leftovers {
		if l.VM == "db-1" {
			t.Errorf("cleanup without names looked at db-1, never backed up here: %+v", l)
		}
	}
	if len(rep.Leftovers) == 0 {
		t.Fatal("cleanup found nothing on web-1")
	}
	rep, err = svc.Cleanup(ctx, CleanupOptions{VMs: []string{"db-1"}})
	if err != nil || rep.Removed == 0 || !strings.Contains(rep.Leftovers[0].VM, "db-1") {
		t.Fatalf("cleanup of a named VM: %+v %v", rep, err)
	}
}

func TestTagVM(t *testing.T) {
	ctx := context.Background()
	hv := fake.New()
	hv.AddVM(fake.VMSpec{Name: "web1", UUID: "11111111-2222-3333-4444-555555555555", Tags: []string{"old"}})
	s := &Service{Conn: hv}
	vm, err := s.TagVM(ctx, "web1", TagEdit{Add: []string{"daily", "team/web"}, Remove: []string{"old"}})
	if err != nil || !slices.Equal(vm.Attributes[hypervisor.TagAttr], []string{"daily", "team/web"}) {
		t.Fatalf("TagVM = %v, %v", vm.Attributes, err)
	}
	if _, err := s.TagVM(ctx, "web1", TagEdit{Add: []string{"x y"}}); !errors.Is(err, hypervisor.ErrBadTag) {
		t.Fatalf("bad tag: %v", err)
	}
	vm, err = s.TagVM(ctx, "web1", TagEdit{Clear: true, Add: []string{"weekly"}})
	if err != nil || !slices.Equal(vm.Attributes[hypervisor.TagAttr], []string{"weekly"}) {
		t.Fatalf("replace = %v, %v", vm.Attributes, err)
	}
	if _, err := s.TagVM(ctx, "nope", TagEdit{Add: []string{"a"}}); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("missing vm: %v", err)
	}
}

// blockAtFirstDisk holds a restore at its first disk until released.
type blockAtFirstDisk struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockAtFirstDisk) Emit(ev progress.Event) {
	if ev.Kind == progress.DiskStart {
		b.once.Do(func() { close(b.started); <-b.release })
	}
}

// TestPruneAndGCWhileRestoring: prune --gc while a (held) restore of that
// very point runs keeps the point and its chunks; the restore completes
// byte-exact, and the next prune removes the point.
func TestPruneAndGCWhileRestoring(t *testing.T) {
	ctx := context.Background()
	svc, hv, _ := newService(t)
	first, err := svc.Backup(ctx, []string{"web-1"}, engine.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := first.VMs[0].Point
	want := make([]byte, 1<<20)
	copy(want, bytes.Repeat([]byte("web-1"), 20000))
	if err := hv.Write("web-1", "vda", 0, bytes.Repeat([]byte("new!"), 1<<18)); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Backup(ctx, []string{"web-1"}, engine.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	hold := &blockAtFirstDisk{started: make(chan struct{}), release: make(chan struct{})}
	restoring := *svc
	restoring.Progress = hold
	store := t.TempDir()
	done := make(chan error, 1)
	go func() {
		_, err := restoring.Engine().Restore(ctx, old, engine.RestoreOptions{Name: "web-1-old", Storage: store, Format: "raw"})
		done <- err
	}()
	<-hold.started
	rep, err := svc.Prune(ctx, PruneOptions{Policy: retention.Policy{Last: 1}, GC: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 0 || rep.Kept[old.ID] == "" {
		t.Fatalf("prune while the point is restored: %+v", rep)
	}
	if _, err := svc.GC(ctx, false); err != nil {
		t.Fatalf("gc while the point is restored: %v", err)
	}
	close(hold.release)
	if err := <-done; err != nil {
		t.Fatalf("restore: %v", err)
	}
	images, _ := filepath.Glob(filepath.Join(store, "*"))
	if len(images) != 1 {
		t.Fatalf("restored images %v", images)
	}
	if got, err := os.ReadFile(images[0]); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored image differs from the point's disk (%v)", err)
	}
	rep, err = svc.Prune(ctx, PruneOptions{Policy: retention.Policy{Last: 1}, GC: true})
	if err != nil || len(rep.Removed) != 1 || rep.Removed[0] != old.ID {
		t.Fatalf("prune after the restore: %+v %v", rep, err)
	}
}
