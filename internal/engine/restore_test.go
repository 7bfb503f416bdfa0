package engine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/diskwrite"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	// The libvirt configuration format, for exports.
	_ "github.com/kurabackup/kura/internal/hypervisor/connectors"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

const (
	uuidA = "6f1c2b3a-0000-4000-8000-00000000000a"
	uuidB = "6f1c2b3a-0000-4000-8000-00000000000b"
)

// restoreWorld is a world whose fake VMs have real UUIDs and disk files in
// a directory (so that restores in place have somewhere to write).
func restoreWorld(t *testing.T) (*world, string) {
	w := newWorld(t)
	dir := t.TempDir()
	w.conn.ImageDir = dir
	return w, dir
}

// addRealVM adds a VM with a valid UUID and writes data into it.
func (w *world) addRealVM(name, uuid string, sizes ...int64) hypervisor.VM {
	spec := fake.VMSpec{Name: name, UUID: uuid}
	for i, s := range sizes {
		target := "vd" + string(rune('a'+i))
		spec.Disks = append(spec.Disks, fake.DiskSpec{Target: target, Size: s})
		w.disks[name+"/"+target] = make([]byte, s)
	}
	return w.conn.AddVM(spec)
}

// pointOf backs vm up and returns its point and the disks at that time.
func (w *world) pointOf(vm hypervisor.VM) (*repo.Manifest, map[string][]byte) {
	w.t.Helper()
	rep := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{})
	if rep.State != engine.StateCompleted {
		w.t.Fatalf("backup: %+v", rep.VMs)
	}
	return rep.VMs[0].Point, w.snapshot()
}

func fillVM(w *world, name string) {
	w.write(name, "vda", 0, randBytes(11, 3*mib/2))
	w.write(name, "vda", 5*mib, randBytes(12, mib))
	w.write(name, "vdb", 2*mib, randBytes(13, 64<<10))
}

// readImage returns an image's guest-visible bytes (qcow2 through qemu-img).
func readImage(t *testing.T, path, format string) []byte {
	t.Helper()
	if format == "raw" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	raw := filepath.Join(t.TempDir(), "conv.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", format, "-O", "raw", path, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func noPartials(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, diskwrite.PartialSuffix) {
			t.Errorf("partial image left: %s", p)
		}
		return nil
	})
}

func TestRestoreAsNewVM(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			if format == "qcow2" {
				if _, err := exec.LookPath("qemu-nbd"); err != nil {
					t.Skip("qemu-nbd missing")
				}
			}
			w, _ := restoreWorld(t)
			vm := w.addRealVM("web", uuidA, 8*mib, 4*mib)
			fillVM(w, "web")
			m, snap := w.pointOf(vm)
			w.write("web", "vda", 0, randBytes(99, mib)) // later changes are not restored

			store := t.TempDir()
			rep, err := w.eng.Restore(context.Background(), m, engine.RestoreOptions{Name: "web-copy", Storage: store, Format: format, Start: true})
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if rep.InPlace || !rep.Defined || !rep.Started || rep.VM != "web-copy" || strings.EqualFold(rep.UUID, uuidA) {
				t.Fatalf("report %+v", rep)
			}
			for _, d := range rep.Disks {
				want := snap["web/"+d.Target]
				if got := readImage(t, d.Path, format); !bytes.Equal(got, want) {
					t.Fatalf("disk %s restored differs from the point", d.Target)
				}
				if filepath.Dir(d.Path) != store {
					t.Errorf("disk %s written to %s, not in %s", d.Target, d.Path, store)
				}
				// Thin: no more allocated than the data (plus qcow2 metadata).
				if a := allocated(t, d.Path); a > d.DataBytes+1*mib {
					t.Errorf("disk %s: %d bytes allocated for %d bytes of data", d.Target, a, d.DataBytes)
				}
			}
			got, err := w.conn.LookupVM(context.Background(), "web-copy")
			if err != nil || got.State != hypervisor.PowerOn || len(got.Disks) != 2 {
				t.Fatalf("restored vm %+v, %v", got, err)
			}
			if orig, _ := w.conn.LookupVM(context.Background(), "web"); orig.State != hypervisor.PowerOn {
				t.Errorf("original vm touched: %s", orig.State)
			}
			noPartials(t, store)
		})
	}
}

func TestRestoreConflictPolicies(t *testing.T) {
	ctx := context.Background()
	w, dir := restoreWorld(t)
	vm := w.addRealVM("db", uuidB, 8*mib, 4*mib)
	fillVM(w, "db")
	m, snap := w.pointOf(vm)
	vda, vdb := filepath.Join(dir, "db-vda.raw"), filepath.Join(dir, "db-vdb.raw")
	junk := []byte("existing data that must survive keep")
	if err := os.WriteFile(vda, junk, 0o600); err != nil {
		t.Fatal(err)
	}

	// abort (the default): fails naming every conflict, changes nothing.
	_, err := w.eng.Restore(ctx, m, engine.RestoreOptions{})
	if !errors.Is(err, engine.ErrConflict) || !strings.Contains(err.Error(), "vm db") || !strings.Contains(err.Error(), vda) {
		t.Fatalf("abort: %v", err)
	}
	if _, err := os.Stat(vdb); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("abort wrote %s", vdb)
	}
	if w.conn.DefinedConfig("db") != nil {
		t.Fatal("abort redefined the vm")
	}
	// prompt without a terminal is abort too.
	if _, err := w.eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictPrompt}); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("prompt without prompter: %v", err)
	}

	// keep: the definition and vda stay, vdb (no conflict) is restored.
	rep, err := w.eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictKeep})
	if err != nil {
		t.Fatalf("keep: %v", err)
	}
	if b, _ := os.ReadFile(vda); !bytes.Equal(b, junk) {
		t.Fatal("keep replaced the existing vda")
	}
	if b, _ := os.ReadFile(vdb); !bytes.Equal(b, snap["db/vdb"]) {
		t.Fatal("keep did not restore vdb")
	}
	if rep.Defined || w.conn.DefinedConfig("db") != nil {
		t.Fatal("keep redefined the vm")
	}

	// prompt: the answers decide per conflict.
	var asked []string
	var mu sync.Mutex
	rep, err = w.eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictPrompt,
		Prompt: func(c engine.Conflict) (engine.ConflictPolicy, error) {
			mu.Lock()
			asked = append(asked, c.Kind+":"+c.Target)
			mu.Unlock()
			if c.Target == "vda" {
				return engine.ConflictKeep, nil
			}
			return engine.ConflictOverwrite, nil
		}})
	if err != nil || len(asked) != 3 || !rep.Defined {
		t.Fatalf("prompt: %v, asked %v, defined %v", err, asked, rep.Defined)
	}
	if b, _ := os.ReadFile(vda); !bytes.Equal(b, junk) {
		t.Fatal("prompt: vda answered keep was replaced")
	}
	// A running VM kept while its disk is overwritten: refused.
	if err := w.conn.StartVM(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	_, err = w.eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictPrompt,
		Prompt: func(c engine.Conflict) (engine.ConflictPolicy, error) {
			if c.Kind == "vm" {
				return engine.ConflictKeep, nil
			}
			return engine.ConflictOverwrite, nil
		}})
	if !errors.Is(err, engine.ErrConflict) || !strings.Contains(err.Error(), "in use by running vm db") {
		t.Fatalf("overwriting the disks of a running kept vm: %v", err)
	}

	// overwrite: a running VM is stopped, disks and definition replaced.
	rep, err = w.eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictOverwrite})
	if err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	for target, p := range map[string]string{"vda": vda, "vdb": vdb} {
		if b, _ := os.ReadFile(p); !bytes.Equal(b, snap["db/"+target]) {
			t.Fatalf("overwrite: %s differs from the point", target)
		}
	}
	got, err := w.conn.LookupVM(ctx, uuidB)
	if err != nil || !rep.Defined || !rep.InPlace || got.Name != "db" || got.State != hypervisor.PowerOff || w.conn.DefinedConfig("db") == nil {
		t.Fatalf("overwrite: vm %+v %v, report %+v", got, err, rep)
	}
	noPartials(t, dir)

	// A deleted VM is recreated in place without any conflict.
	if err := w.conn.UndefineVM(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	os.Remove(vda)
	os.Remove(vdb)
	rep, err = w.eng.Restore(ctx, m, engine.RestoreOptions{})
	if err != nil || len(rep.Conflicts) != 0 {
		t.Fatalf("restore of a deleted vm: %v %+v", err, rep)
	}
	if got, err := w.conn.LookupVM(ctx, "db"); err != nil || !strings.EqualFold(got.UUID, uuidB) {
		t.Fatalf("recreated vm %+v %v", got, err)
	}
}

// cancelSink cancels the restore once the second disk has started.
type cancelSink struct {
	cancel context.CancelFunc
	starts int
	mu     sync.Mutex
}

func (s *cancelSink) Emit(ev progress.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Kind == progress.DiskStart {
		s.starts++
		if s.starts == 2 {
			s.cancel()
		}
	}
}

func TestRestoreInterruptedLeavesNothing(t *testing.T) {
	w, _ := restoreWorld(t)
	vm := w.addRealVM("app", uuidA, 8*mib, 8*mib)
	fillVM(w, "app")
	w.write("app", "vdb", 0, randBytes(5, 8*mib))
	m, _ := w.pointOf(vm)
	ctx, cancel := context.WithCancel(context.Background())
	w.eng.Progress = &cancelSink{cancel: cancel}
	store := t.TempDir()
	_, err := w.eng.Restore(ctx, m, engine.RestoreOptions{Name: "app2", Storage: store})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: %v", err)
	}
	if _, err := w.conn.LookupVM(context.Background(), "app2"); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("interrupted restore defined a vm: %v", err)
	}
	if ents, _ := os.ReadDir(store); len(ents) != 0 {
		t.Fatalf("interrupted restore left %v", ents)
	}
}

func TestRestorePlanFileAndExport(t *testing.T) {
	ctx := context.Background()
	w, _ := restoreWorld(t)
	vm := w.addRealVM("mail", uuidA, 8*mib, 4*mib)
	fillVM(w, "mail")
	m, snap := w.pointOf(vm)

	plan, err := w.eng.PlanRestore(ctx, m, engine.RestoreOptions{Name: "mail2", Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	y, err := hypervisor.EncodePlanYAML(plan)
	if err != nil {
		t.Fatal(err)
	}
	edited := t.TempDir()
	p2, err := hypervisor.DecodePlanYAML(y)
	if err != nil {
		t.Fatal(err)
	}
	p2.Name = "mail-edited"
	p2.Disks[0].Path = filepath.Join(edited, "system.img")
	p2.Disks[1].Skip = true
	rep, err := w.eng.Restore(ctx, m, engine.RestoreOptions{Plan: p2})
	if err != nil {
		t.Fatalf("restore with plan: %v", err)
	}
	if b, _ := os.ReadFile(p2.Disks[0].Path); !bytes.Equal(b, snap["mail/vda"]) || len(rep.Disks) != 1 {
		t.Fatalf("plan file: disk not where the plan says (%+v)", rep.Disks)
	}
	if cfg := string(w.conn.DefinedConfig("mail-edited")); !strings.Contains(cfg, "system.img") || strings.Contains(cfg, "vdb") {
		t.Fatalf("defined config does not follow the plan:\n%s", cfg)
	}

	out := t.TempDir()
	ex, err := w.eng.Export(ctx, m, engine.ExportOptions{OutDir: out, Format: "raw"})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	xml, err := os.ReadFile(ex.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ex.Disks {
		if b, _ := os.ReadFile(d.Path); !bytes.Equal(b, snap["mail/"+d.Target]) {
			t.Fatalf("export: %s differs", d.Target)
		}
		if !strings.Contains(string(xml), d.Path) {
			t.Fatalf("export xml does not point at %s:\n%s", d.Path, xml)
		}
	}
	if !strings.Contains(string(xml), "<name>mail</name>") || !strings.Contains(string(xml), uuidA) {
		t.Fatalf("export xml lost the identity:\n%s", xml)
	}
	if _, err := w.eng.Export(ctx, m, engine.ExportOptions{OutDir: out}); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("second export into the same directory: %v", err)
	}
}

func TestRestoreAllIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	w, _ := restoreWorld(t)
	a := w.addRealVM("alpha", uuidA, 2*mib)
	b := w.addRealVM("beta", uuidB, 2*mib)
	w.write("alpha", "vda", 0, randBytes(1, mib))
	w.write("beta", "vda", 0, randBytes(2, mib))
	rep := w.backup([]hypervisor.VM{a, b}, engine.BackupOptions{})
	first := w.snapshot()
	w.write("alpha", "vda", 0, randBytes(3, mib))
	second := w.backup([]hypervisor.VM{a}, engine.BackupOptions{}).VMs[0].Point

	sel, _ := hypervisor.ParseSelectors([]string{"name:*"})
	latest, err := w.eng.ChoosePoints(ctx, sel, time.Time{})
	if err != nil || len(latest) != 2 || latest[0].ID != second.ID {
		t.Fatalf("ChoosePoints latest: %v %d", err, len(latest))
	}
	before, err := w.eng.ChoosePoints(ctx, sel, second.Started)
	if err != nil || len(before) != 2 || before[0].ID != rep.VMs[0].Point.ID {
		t.Fatalf("ChoosePoints before: %v %v", err, before)
	}
	store := t.TempDir()
	// beta's target file exists: with abort it fails, alpha still restores.
	if err := os.WriteFile(filepath.Join(store, "beta-r-vda.raw"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := w.eng.RestoreAll(ctx, before, engine.RestoreOptions{Storage: store}, "-r")
	if err != nil || all.State != engine.StatePartiallyFailed {
		t.Fatalf("RestoreAll: %v %+v", err, all)
	}
	for _, r := range all.VMs {
		switch r.VM {
		case "alpha":
			got, _ := os.ReadFile(filepath.Join(store, "alpha-r-vda.raw"))
			if r.Err != nil || !bytes.Equal(got, first["alpha/vda"]) {
				t.Fatalf("alpha: %v (restored the right point: %v)", r.Err, bytes.Equal(got, first["alpha/vda"]))
			}
		case "beta":
			if !errors.Is(r.Err, engine.ErrConflict) {
				t.Fatalf("beta: %v", r.Err)
			}
		}
	}
}

// TestRestoreRefusesOtherHypervisor: a point of another kind of hypervisor
// is not restored (no conversion exists), and export still writes its
// disks.
func TestRestoreRefusesOtherHypervisor(t *testing.T) {
	ctx := context.Background()
	w, _ := restoreWorld(t)
	vm := w.addRealVM("esx", uuidA, 2*mib)
	w.write("esx", "vda", 0, randBytes(7, mib))
	m, snap := w.pointOf(vm)
	if m.VM.Hypervisor != fake.Kind || m.ConfigFormat != "libvirt-domain-xml" {
		t.Fatalf("point records hypervisor %q, config format %q", m.VM.Hypervisor, m.ConfigFormat)
	}
	other := *m
	other.VM.Hypervisor, other.ConfigFormat = "vsphere", "vsphere-vm-json"
	// Restore plans first (the manifest it plans from is the one read under
	// its lease, so the changed copy is planned directly).
	_, err := w.eng.PlanRestore(ctx, &other, engine.RestoreOptions{Name: "esx2", Storage: t.TempDir()})
	if !errors.Is(err, hypervisor.ErrIncompatible) || !strings.Contains(err.Error(), "taken from vsphere") || !strings.Contains(err.Error(), "kura export") {
		t.Fatalf("restore of a vsphere point on a fake connection: %v", err)
	}
	out := t.TempDir()
	ex, err := (&engine.Engine{Repo: w.repo}).Export(ctx, &other, engine.ExportOptions{OutDir: out, Format: "raw"})
	if err != nil || len(ex.Disks) != 1 {
		t.Fatalf("export of a vsphere point: %v %+v", err, ex)
	}
	if b, _ := os.ReadFile(ex.Disks[0].Path); !bytes.Equal(b, snap["esx/vda"]) {
		t.Fatal("exported disk differs from the point")
	}
	// A plan made for another kind of target is refused before anything
	// is written.
	plan, err := w.eng.PlanRestore(ctx, m, engine.RestoreOptions{Name: "esx3", Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	plan.Hypervisor = "vsphere"
	if _, err := w.eng.Restore(ctx, m, engine.RestoreOptions{Plan: plan}); !errors.Is(err, hypervisor.ErrInvalidPlan) {
		t.Fatalf("a vsphere plan on a fake connection: %v", err)
	}
}
