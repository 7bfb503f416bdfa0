package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/vsphere/vcsim"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/testenv"
)

// vsWorld is a simulated vCenter (package vcsim: the govmomi simulator with
// a real datastore directory, CBT and delta disks added) and a repository
// used through the kura command line.
type vsWorld struct {
	sim *vcsim.Sim
	*cliRepo
	connect []string
}

func newVSWorld(t *testing.T) *vsWorld {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io", "mkfs.ext4", "mkntfs", "ntfscp"} {
		testenv.NeedTool(t, tool)
	}
	w := &vsWorld{sim: vcsim.Start(t), cliRepo: newCLIRepo(t)}
	pw := filepath.Join(t.TempDir(), "vcenter-password")
	if err := os.WriteFile(pw, []byte(vcsim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.connect = []string{"--connect", w.sim.URI(""), "--connect-password-file", pw}
	return w
}

func (w *vsWorld) kura(t *testing.T, args ...string) string {
	t.Helper()
	return w.ok(t, append(w.connect, args...)...)
}

func (w *vsWorld) kuraCode(args ...string) (string, string, int) {
	return w.run(append(w.connect, args...)...)
}

func (w *vsWorld) backup(t *testing.T, want int, args ...string) *engine.BackupReport {
	t.Helper()
	return w.cliRepo.backup(t, want, append(w.connect, args...)...)
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// ext4Image makes a raw ext4 image holding files.
func ext4Image(t *testing.T, size int64, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	for name, content := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "ext4.raw")
	runTool(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", src, img, fmt.Sprintf("%dk", size>>10))
	return img
}

// ntfsImage makes a raw NTFS image holding one file (ntfscp writes into
// the image without mounting it).
func ntfsImage(t *testing.T, size int64, name, content string) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.raw")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	runTool(t, "mkntfs", "-q", "-F", "-f", img)
	local := filepath.Join(dir, "file")
	if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, "ntfscp", "-q", img, local, name)
	return img
}

func findPoint(t *testing.T, ps []repo.Manifest, id string) *repo.Manifest {
	t.Helper()
	for i := range ps {
		if ps[i].ID == id {
			return &ps[i]
		}
	}
	t.Fatalf("point %s not listed", id)
	return nil
}

// TestVSphereBackupRestore: a full then an incremental backup of a vSphere
// VM after writing into its disk, every point's disks byte-equal to the
// disks at that time; files from the ext4 and NTFS filesystems inside the
// point's VMDKs; a restore as a new VM on a chosen folder, byte-compared;
// an export as VMDK files and .vmx; a restore in place over the running
// VM, and the next backup after it.
func TestVSphereBackupRestore(t *testing.T) {
	w := newVSWorld(t)
	ctx := context.Background()
	sim := w.sim
	motd := "kura restored this file from a vSphere point\n"
	disk0 := ext4Image(t, 32<<20, map[string]string{"etc/motd": motd, "srv/www/index.html": "<h1>web</h1>\n"})
	disk1 := ntfsImage(t, 16<<20, "/report.txt", "quarterly numbers\r\n")
	sim.NewVM(t, vcsim.VMSpec{Name: "vsweb", PowerOn: true, Tools: true, IP: "10.20.0.5", Hostname: "vsweb.lab.example.org",
		Folder: "prod", Tags: []string{"backup/nightly"},
		VMX:   ".encoding = \"UTF-8\"\nconfig.version = \"8\"\ndisplayName = \"vsweb\"\nscsi0:0.fileName = \"vsweb.vmdk\"\nscsi0:1.fileName = \"vsweb_1.vmdk\"\n",
		Disks: []vcsim.DiskSpec{{From: disk0}, {From: disk1}, {SizeMiB: 8, RDM: "physicalMode"}}})

	// Inventory through the CLI: the physical RDM is reported unprotected.
	var vms []hypervisor.VM
	if err := json.Unmarshal([]byte(w.kura(t, "vm", "list", "--json", "--search", "tag:backup/*")), &vms); err != nil || len(vms) != 1 {
		t.Fatalf("vm list: %v %+v", err, vms)
	}
	if d := vms[0].Disks[2]; d.Protectable || !strings.Contains(d.Reason, "physical compatibility mode") {
		t.Fatalf("physical RDM reported as %+v", d)
	}

	base0, base1 := sim.Disk(t, "vsweb", 0), sim.Disk(t, "vsweb", 1)
	t0 := map[string][]byte{"scsi0:0": sim.Read(t, base0), "scsi0:1": sim.Read(t, base1)}
	rep := w.backup(t, 0, "folder:/DC0/vm/prod")
	p1 := rep.VMs[0].Point
	if p1.Kind != "full" || p1.Consistency != "application" || p1.VM.Hypervisor != "vsphere" || p1.ConfigFormat != "vsphere-vm-json" ||
		len(p1.Disks) != 2 || p1.Disks[0].ChangeID == "" || p1.Checkpoint == "" {
		t.Fatalf("first point %+v", p1)
	}
	if !slices.ContainsFunc(p1.Notes, func(n string) bool {
		return strings.Contains(n, "scsi0:2 not protected: raw device mapping in physical")
	}) ||
		!slices.ContainsFunc(p1.Notes, func(n string) bool { return strings.Contains(n, "changed block tracking was off") }) {
		t.Fatalf("first point notes %v", p1.Notes)
	}
	if lo := w.kura(t, "cleanup", "--yes"); !strings.Contains(lo, "nothing to clean up") {
		t.Fatalf("the backup left something behind: %s", lo)
	}

	// Write into the VM's disk (free space of the ext4 filesystem).
	change := make([]byte, 1<<20)
	_, _ = rand.Read(change)
	sim.Write(t, "vsweb", 0, 28<<20, change)
	t1 := map[string][]byte{"scsi0:0": sim.Read(t, base0), "scsi0:1": t0["scsi0:1"]}
	rep = w.backup(t, 0, "vsweb")
	p2 := rep.VMs[0].Point
	if p2.Kind != "incremental" || p2.Parent != p1.ID {
		t.Fatalf("second point %+v", p2)
	}
	if read := p2.Disks[0].Stats.BytesRead; read == 0 || read > 4<<20 {
		t.Errorf("incremental read %d bytes of disk scsi0:0 after a 1 MiB write", read)
	}
	if read := p2.Disks[1].Stats.BytesRead; read != 0 {
		t.Errorf("incremental read %d bytes of the unchanged disk scsi0:1", read)
	}
	r := w.open(t, ctx)
	for _, pc := range []struct {
		m    *repo.Manifest
		want map[string][]byte
	}{{p1, t0}, {p2, t1}} {
		for target, want := range pc.want {
			if !bytes.Equal(pointDisk(t, ctx, r, pc.m, target), want) {
				t.Fatalf("point %s disk %s differs from the disk at backup time", pc.m.ID, target)
			}
		}
	}

	// Files from the filesystems inside the point's VMDKs.
	out := t.TempDir()
	w.kura(t, "files", "get", p1.ID, "/etc/motd", "--out", out)
	if b, _ := os.ReadFile(filepath.Join(out, "motd")); string(b) != motd {
		t.Fatalf("ext4 file from the point: %q", b)
	}
	w.kura(t, "files", "get", p1.ID, "--disk", "scsi0:1", "/report.txt", "--out", out)
	if b, _ := os.ReadFile(filepath.Join(out, "report.txt")); string(b) != "quarterly numbers\r\n" {
		t.Fatalf("ntfs file from the point: %q", b)
	}

	// Restore the first point as a new VM in another folder.
	folder := sim.Folder(t, "restored")
	var rr engine.RestoreReport
	if err := lastJSON(w.kura(t, "restore", p1.ID, "--json", "--name", "vsweb-copy", "--storage", sim.Datastore, "--folder", folder), &rr); err != nil {
		t.Fatal(err)
	}
	copyVM := sim.VM(t, "vsweb-copy")
	if rr.InPlace || !rr.Defined || len(rr.Disks) != 2 || !strings.HasPrefix(copyVM.InventoryPath, folder+"/") {
		t.Fatalf("restore as new: %+v (at %s)", rr, copyVM.InventoryPath)
	}
	for i, target := range []string{"scsi0:0", "scsi0:1"} {
		if got := sim.Read(t, sim.Disk(t, "vsweb-copy", i)); !bytes.Equal(got, t0[target]) {
			t.Fatalf("restored vm's disk %s differs from the point", target)
		}
	}
	var listed []hypervisor.VM
	_ = json.Unmarshal([]byte(w.kura(t, "vm", "list", "--json", "--search", "vsweb-copy")), &listed)
	if len(listed) != 1 || listed[0].UUID == p1.VM.UUID || listed[0].Attributes["folder"][0] != folder {
		t.Fatalf("restored vm listed as %+v", listed)
	}

	// Export: VMDK files and the .vmx pointing at them.
	exp := t.TempDir()
	var ex engine.ExportReport
	if err := lastJSON(w.kura(t, "export", p2.ID, "--out", exp, "--json"), &ex); err != nil {
		t.Fatal(err)
	}
	vmx, err := os.ReadFile(ex.ConfigFile)
	if err != nil || filepath.Base(ex.ConfigFile) != "vsweb.vmx" || len(ex.Disks) != 2 {
		t.Fatalf("export: %+v %v", ex, err)
	}
	for _, d := range ex.Disks {
		raw := filepath.Join(t.TempDir(), "want.raw")
		if err := os.WriteFile(raw, t1[d.Target], 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", "vmdk", "-F", "raw", d.Path, raw).CombinedOutput(); err != nil {
			t.Fatalf("exported %s differs from the point: %s", d.Path, out)
		}
		if !strings.Contains(string(vmx), fmt.Sprintf("%s.fileName = \"%s\"", d.Target, filepath.Base(d.Path))) {
			t.Fatalf(".vmx does not point at %s:\n%s", d.Path, vmx)
		}
	}

	// Restore the first point in place over the running VM: same VM object,
	// disks back to the first point.
	moref := sim.VM(t, "vsweb").Reference().Value
	_, errs, code := w.kuraCode("restore", p1.ID)
	if code == 0 || !strings.Contains(errs, "nothing was changed") {
		t.Fatalf("in-place restore without a conflict policy: exit %d: %s", code, errs)
	}
	w.kura(t, "restore", p1.ID, "--on-conflict", "overwrite", "--start")
	if got := sim.VM(t, "vsweb").Reference().Value; got != moref {
		t.Fatalf("restore in place made a new vm object %s (was %s)", got, moref)
	}
	if got := sim.Read(t, base0); !bytes.Equal(got, t0["scsi0:0"]) {
		t.Fatal("disk after the restore in place differs from the first point")
	}
	// Tracking was reset with the disks: the next backup reads in full and
	// says why, and is right.
	rep = w.backup(t, 0, "vsweb")
	p3 := rep.VMs[0].Point
	if !slices.ContainsFunc(p3.Notes, func(n string) bool { return strings.Contains(n, "repair") }) {
		t.Fatalf("backup after a restore in place: notes %v", p3.Notes)
	}
	if !bytes.Equal(pointDisk(t, ctx, r, findPoint(t, w.points(t), p3.ID), "scsi0:0"), t0["scsi0:0"]) {
		t.Fatal("backup after the restore in place differs from the disk")
	}
}

// TestVSphereCleanupLeftoverSnapshot: seed 003's leftover snapshots. One
// whose run this host cannot check (another host's kura, or no owner
// line) makes the next backup fail (policy fail, the default) until kura
// cleanup removes it — also on a VM whose first backup never finished; one
// of a killed process on this host is reclaimed by the next backup itself;
// --preexisting-snapshot delete removes an uncheckable one and goes on.
func TestVSphereCleanupLeftoverSnapshot(t *testing.T) {
	w := newVSWorld(t)
	ctx := context.Background()
	vm := w.sim.NewVM(t, vcsim.VMSpec{Name: "vsdb", PowerOn: true, Disks: []vcsim.DiskSpec{{SizeMiB: 8}}})
	var info struct {
		Config struct {
			ID string `json:"id"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(w.ok(t, "repo", "info", "--json")), &info); err != nil || info.Config.ID == "" {
		t.Fatalf("repo info: %v %+v", err, info)
	}
	owner := hypervisor.OwnerTag(info.Config.ID)
	leave := func(id, desc string) string {
		name := hypervisor.CheckpointName(owner, id)
		task, err := vm.CreateSnapshot(ctx, name, desc, false, false)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	other := "kura backup snapshot\nkura-owner: host=another-backup-host pid=4242 start=1"
	first := leave("20261130T010203Z-0badcafe", other)
	rep := w.backup(t, 4, "vsdb", "--retries", "0")
	if !strings.Contains(rep.VMs[0].Error, "kura cleanup") || !strings.Contains(rep.VMs[0].Error, "another-backup-host") {
		t.Fatalf("backup with a leftover snapshot: %+v", rep.VMs[0])
	}
	var cleaned struct {
		Leftovers []hypervisor.Leftover `json:"leftovers"`
		Failed    int                   `json:"failed"`
	}
	if err := json.Unmarshal([]byte(w.kura(t, "cleanup", "--yes", "--json")), &cleaned); err != nil {
		t.Fatal(err)
	}
	if len(cleaned.Leftovers) != 1 || cleaned.Leftovers[0].Kind != "snapshot" || cleaned.Leftovers[0].Name != first || cleaned.Failed != 0 {
		t.Fatalf("cleanup: %+v", cleaned)
	}
	if out := w.kura(t, "cleanup", "--yes"); !strings.Contains(out, "nothing to clean up") {
		t.Fatalf("second cleanup: %s", out)
	}
	w.backup(t, 0, "vsdb")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	leave("20261130T015959Z-0dead0dd", fmt.Sprintf("kura backup snapshot\nkura-owner: host=%s pid=%d start=1", host, dead.Process.Pid))
	rep = w.backup(t, 0, "vsdb")
	if !slices.ContainsFunc(rep.VMs[0].Point.Notes, func(n string) bool { return strings.Contains(n, "0dead0dd a killed run") }) {
		t.Fatalf("reclaim: notes %v", rep.VMs[0].Point.Notes)
	}
	leave("20261130T020304Z-0badf00d", other)
	rep = w.backup(t, 0, "vsdb", "--preexisting-snapshot", "delete")
	if !slices.ContainsFunc(rep.VMs[0].Point.Notes, func(n string) bool { return strings.Contains(n, "0badf00d removed") }) {
		t.Fatalf("policy delete: notes %v", rep.VMs[0].Point.Notes)
	}
	// A vSphere point does not restore to libvirt: refused, naming export.
	if _, err := os.Stat(testenv.LibvirtSocket); err == nil {
		_, errs, code := w.run("restore", rep.VMs[0].Point.ID, "--name", "x", "--connect", "qemu:///system")
		if code != 1 || !strings.Contains(errs, "taken from vsphere") || !strings.Contains(errs, "kura export") {
			t.Fatalf("vsphere point to libvirt: exit %d: %s", code, errs)
		}
	}
}
