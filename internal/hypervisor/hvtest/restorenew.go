package hvtest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// ReadLocalImage is a Target.ReadDisk for images on this host: raw files
// as they are, other formats converted to raw by qemu-img.
func ReadLocalImage(t *testing.T, path, format string) []byte {
	t.Helper()
	if format != "raw" {
		raw := filepath.Join(t.TempDir(), "image.raw")
		if out, err := exec.Command("qemu-img", "convert", "-f", format, "-O", "raw", path, raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert %s: %v: %s", path, err, out)
		}
		path = raw
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAll reads a whole session disk.
func readAll(t *testing.T, d hypervisor.SessionDisk) []byte {
	t.Helper()
	b := make([]byte, d.Size)
	if _, err := d.Reader.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read disk %s: %v", d.Target, err)
	}
	return b
}

// testRestoreNewVM restores a session's VM as a new VM through the
// Restorer interface alone, the way the engine does: plan, plan file,
// rendered configuration, disk sinks, define.
func testRestoreNewVM(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	c := tg.Connector
	caps := c.Capabilities()
	vm, write := tg.MakeVM(t)
	disk := firstProtectable(t, vm)
	write(3*mib, pattern(0xd4))
	s, err := tg.begin(t, ctx, vm, "", "kura-hvt-r1", nil)
	if err != nil {
		t.Fatalf("BeginBackup: %v", err)
	}
	cfg, format := s.Config()
	src := &hypervisor.RestoreSource{Point: "hvt-point", VMName: vm.Name, VMUUID: vm.UUID, Hypervisor: caps.Kind,
		Config: cfg, ConfigFormat: format}
	data := map[string][]byte{}
	for _, d := range s.Disks() {
		src.Disks = append(src.Disks, hypervisor.SourceDisk{Target: d.Target, Source: d.Source, Format: d.Format, Size: d.Size})
		data[d.Target] = readAll(t, d)
	}
	if err := s.Close(ctx, true); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !bytes.Equal(data[disk.Target][3*mib:4*mib], pattern(0xd4)) {
		t.Fatal("the session does not show what was written")
	}

	unknown := *src
	unknown.ConfigFormat = "hvtest-unknown-format"
	if _, err := c.PlanRestore(ctx, &unknown, hypervisor.RestoreRequest{Name: "x", Storage: tg.Storage(t)}); !errors.Is(err, hypervisor.ErrIncompatible) {
		t.Errorf("PlanRestore of an unknown configuration format: %v, want ErrIncompatible", err)
	}

	name := "kura-hvt-r-" + randomUUID()[:8]
	plan, err := c.PlanRestore(ctx, src, hypervisor.RestoreRequest{Name: name, Storage: tg.Storage(t)})
	if err != nil {
		t.Fatalf("PlanRestore: %v", err)
	}
	if plan.Name != name || plan.Hypervisor != caps.Kind || sameUUID(plan.UUID, vm.UUID) {
		t.Errorf("plan %+v: want name %s, hypervisor %s, not the original's uuid", plan, name, caps.Kind)
	}
	// The plan goes through its file form, as with kura restore --plan-file.
	y, err := hypervisor.EncodePlanYAML(plan)
	if err != nil {
		t.Fatalf("EncodePlanYAML: %v", err)
	}
	plan, err = hypervisor.DecodePlanYAML(y)
	if err != nil {
		t.Fatalf("DecodePlanYAML of the connector's plan: %v\n%s", err, y)
	}
	other := *plan
	other.Hypervisor = "hvtest-other-kind"
	if _, _, err := c.PrepareRestore(ctx, src, &other); !errors.Is(err, hypervisor.ErrInvalidPlan) {
		t.Errorf("PrepareRestore of a plan for another hypervisor: %v, want ErrInvalidPlan", err)
	}
	config, _, err := c.PrepareRestore(ctx, src, plan)
	if err != nil {
		t.Fatalf("PrepareRestore: %v\n%s", err, y)
	}
	if !hypervisor.ValidUUID(plan.UUID) {
		t.Errorf("PrepareRestore left the plan without a uuid (%q)", plan.UUID)
	}
	planned := map[string]hypervisor.PlanDisk{}
	for _, pd := range plan.Disks {
		if pd.Skip {
			continue
		}
		planned[pd.Target] = pd
		writeSink(t, tg, pd, data[pd.Target])
	}
	for _, d := range src.Disks {
		if _, ok := planned[d.Target]; !ok {
			t.Errorf("the plan does not restore disk %s", d.Target)
		}
	}
	got, err := c.DefineVM(ctx, config)
	if err != nil {
		t.Fatalf("DefineVM of the rendered configuration: %v", err)
	}
	t.Cleanup(func() { _ = c.UndefineVM(ctx, got.UUID) })
	if got.Name != name || !sameUUID(got.UUID, plan.UUID) {
		t.Errorf("defined %s %s, plan %s %s", got.Name, got.UUID, name, plan.UUID)
	}
	got, err = c.LookupVM(ctx, name)
	if err != nil {
		t.Fatalf("LookupVM(%s): %v", name, err)
	}
	for target, pd := range planned {
		found := false
		for _, d := range got.Disks {
			found = found || (d.Target == target && d.Source == pd.Path)
		}
		if !found {
			t.Errorf("restored vm has no disk %s at %s: %+v", target, pd.Path, got.Disks)
		}
	}
	// An aborted sink leaves nothing.
	for _, pd := range planned {
		pd.Path = alongside(pd.Path, "-aborted")
		sink, err := c.CreateDisk(ctx, hypervisor.NewDisk{Path: pd.Path, Format: pd.Format, Size: pd.Size, ScratchDir: tg.ScratchDir(t)})
		if err != nil {
			t.Fatalf("CreateDisk: %v", err)
		}
		if err := sink.WriteAt(ctx, pattern(0xe5), 0); err != nil {
			t.Fatalf("WriteAt: %v", err)
		}
		if err := sink.Abort(ctx); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if ok, err := c.DiskExists(ctx, pd.Path); ok || err != nil {
			t.Errorf("DiskExists after Abort = %v, %v", ok, err)
		}
		break
	}
}

// writeSink writes data into a new image at pd through a DiskSink,
// skipping zero MiBs as the engine does, and checks it appears only at
// Commit and holds the data.
func writeSink(t *testing.T, tg Target, pd hypervisor.PlanDisk, data []byte) {
	t.Helper()
	ctx := tg.ctx(t)
	c := tg.Connector
	if ok, err := c.DiskExists(ctx, pd.Path); ok || err != nil {
		t.Fatalf("DiskExists(%s) before the restore = %v, %v", pd.Path, ok, err)
	}
	scratch := tg.ScratchDir(t)
	sink, err := c.CreateDisk(ctx, hypervisor.NewDisk{Path: pd.Path, Format: pd.Format, Size: int64(len(data)), ScratchDir: scratch})
	if err != nil {
		t.Fatalf("CreateDisk(%s): %v", pd.Path, err)
	}
	zero := make([]byte, mib)
	for off := 0; off < len(data); off += mib {
		p := data[off:min(off+mib, len(data))]
		if bytes.Equal(p, zero[:len(p)]) {
			continue
		}
		if err := sink.WriteAt(ctx, p, int64(off)); err != nil {
			t.Fatalf("WriteAt(%s, %d): %v", pd.Path, off, err)
		}
	}
	if ok, err := c.DiskExists(ctx, pd.Path); ok || err != nil {
		t.Fatalf("DiskExists(%s) before Commit = %v, %v", pd.Path, ok, err)
	}
	remote := c.Capabilities().RemoteDisks
	if remote && countFiles(t, scratch) == 0 {
		t.Errorf("the RemoteDisks capability says disks are staged in the scratch directory, but %s is empty", scratch)
	}
	if err := sink.Commit(ctx); err != nil {
		t.Fatalf("Commit(%s): %v", pd.Path, err)
	}
	if remote && countFiles(t, scratch) != 0 {
		t.Errorf("the staged image is left in %s after Commit", scratch)
	}
	if ok, err := c.DiskExists(ctx, pd.Path); !ok || err != nil {
		t.Fatalf("DiskExists(%s) after Commit = %v, %v", pd.Path, ok, err)
	}
	if !bytes.Equal(tg.ReadDisk(t, pd.Path, pd.Format), data) {
		t.Fatalf("restored image %s differs from the session's disk", pd.Path)
	}
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// alongside inserts suffix before a path's extension.
func alongside(p, suffix string) string {
	ext := filepath.Ext(p)
	return p[:len(p)-len(ext)] + suffix + ext
}
