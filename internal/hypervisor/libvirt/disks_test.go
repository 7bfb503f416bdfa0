package libvirt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/hvtest"
	"github.com/kurabackup/kura/internal/testenv"
)

const mib = 1 << 20

func readBack(t *testing.T, d hypervisor.SessionDisk, off, n int64, pattern byte) {
	t.Helper()
	buf := make([]byte, n)
	if _, err := d.Reader.ReadAt(buf, off); err != nil {
		t.Fatalf("disk %s ReadAt(%d): %v", d.Target, off, err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{pattern}, int(n))) {
		t.Fatalf("disk %s at %d: data differs from pattern %#x", d.Target, off, pattern)
	}
}

func byTarget(t *testing.T, s hypervisor.BackupSession, target string) hypervisor.SessionDisk {
	t.Helper()
	for _, d := range s.Disks() {
		if d.Target == target {
			return d
		}
	}
	t.Fatalf("no disk %s in session", target)
	return hypervisor.SessionDisk{}
}

// TestMixedQcow2Raw backs up a running VM with a qcow2 and a raw disk: the
// raw disk is always read in full, the qcow2 one incrementally. It also
// measures a full read.
func TestMixedQcow2Raw(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Start: true, Disks: []testenv.DiskSpec{
		{Target: "vda", Format: "qcow2", SizeMiB: 256}, {Target: "vdb", Format: "raw", SizeMiB: 16}}})
	hmpWrite(t, g, 0, 0xee, 16*mib, 64*mib)
	hmpWrite(t, g, 1, 0x5a, 4*mib, mib)
	vm := guestVM(t, c, g)

	start := time.Now()
	s, err := begin(t, c, vm, hypervisor.ModeCrash, "", "kura-m1")
	if err != nil {
		t.Fatalf("full: %v", err)
	}
	t.Logf("full begin %v", time.Since(start))
	vda, vdb := byTarget(t, s, "vda"), byTarget(t, s, "vdb")
	sum, err := hvtest.CheckExtents(vda.Extents, vda.Size)
	if err != nil {
		t.Fatal(err)
	}
	if sum[hypervisor.ExtentData] < 64*mib || sum[hypervisor.ExtentData] > 66*mib {
		t.Errorf("full vda: %d data bytes after writing 64 MiB", sum[hypervisor.ExtentData])
	}
	start = time.Now()
	buf := make([]byte, 4*mib)
	for off := int64(16 * mib); off < 80*mib; off += int64(len(buf)) {
		if _, err := vda.Reader.ReadAt(buf, off); err != nil || buf[0] != 0xee || buf[len(buf)-1] != 0xee {
			t.Fatalf("read at %d: %v (first byte %#x)", off, err, buf[0])
		}
	}
	el := time.Since(start)
	t.Logf("read 64 MiB of a running TCG guest over NBD in %v (%.0f MiB/s)", el, 64/el.Seconds())
	readBack(t, vdb, 4*mib, mib, 0x5a)
	if s.Checkpoint() != "kura-m1" {
		t.Errorf("checkpoint %q", s.Checkpoint())
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}

	hmpWrite(t, g, 0, 0x11, 100*mib, mib)
	s, err = begin(t, c, vm, hypervisor.ModeCrash, "kura-m1", "kura-m2")
	if err != nil {
		t.Fatalf("incremental: %v", err)
	}
	vda, vdb = byTarget(t, s, "vda"), byTarget(t, s, "vdb")
	sum, _ = hvtest.CheckExtents(vda.Extents, vda.Size)
	t.Logf("incremental after a 1 MiB write: %d data bytes, %d unchanged, %d zero", sum[hypervisor.ExtentData],
		sum[hypervisor.ExtentUnchanged], sum[hypervisor.ExtentZero])
	if !vda.Incremental || sum[hypervisor.ExtentData] != mib {
		t.Errorf("vda incremental=%v data=%d, want exactly 1 MiB", vda.Incremental, sum[hypervisor.ExtentData])
	}
	readBack(t, vda, 100*mib, mib, 0x11)
	if vdb.Incremental || len(s.Notes()) == 0 {
		t.Errorf("raw vdb incremental=%v notes=%v; want a full read and a note", vdb.Incremental, s.Notes())
	}
	readBack(t, vdb, 4*mib, mib, 0x5a)
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
}

func TestRawOnlyShutOff(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{Target: "vda", Format: "raw", SizeMiB: 16}}})
	qemuIOWrite(t, g.DiskPath("vda"), "raw", 0x42, 2*mib, mib)
	vm := guestVM(t, c, g)
	s, err := begin(t, c, vm, hypervisor.ModeAuto, "", "kura-r1")
	if err != nil {
		t.Fatal(err)
	}
	d := byTarget(t, s, "vda")
	if s.Checkpoint() != "" || d.Incremental || s.Consistency() != hypervisor.ConsistencyOff {
		t.Errorf("raw offline: checkpoint %q incremental %v consistency %s", s.Checkpoint(), d.Incremental, s.Consistency())
	}
	if _, err := hvtest.CheckExtents(d.Extents, 16*mib); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, 2*mib, mib, 0x42)
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
}

// TestOfflineBaseFromRunning takes a full backup while the VM runs, then an
// incremental one after it was shut off, from the same checkpoint (its
// bitmap persists in the qcow2).
func TestOfflineBaseFromRunning(t *testing.T) {
	env, c := connect(t)
	testenv.NeedTool(t, "qemu-io")
	g := env.NewGuest(t, testenv.GuestOptions{Start: true, Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 32}}})
	hmpWrite(t, g, 0, 0x33, 0, mib)
	s, err := begin(t, c, guestVM(t, c, g), hypervisor.ModeCrash, "", "kura-o1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
	if err := g.Destroy(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	qemuIOWrite(t, g.DiskPath("vda"), "qcow2", 0x44, 8*mib, mib)
	vm := guestVM(t, c, g)
	s, err = begin(t, c, vm, hypervisor.ModeAuto, "kura-o1", "kura-o2")
	if err != nil {
		t.Fatalf("offline incremental from an online checkpoint: %v", err)
	}
	d := byTarget(t, s, "vda")
	sum, _ := hvtest.CheckExtents(d.Extents, d.Size)
	if !d.Incremental || sum[hypervisor.ExtentData] != mib {
		t.Errorf("offline incremental: incremental=%v data=%d, want 1 MiB", d.Incremental, sum[hypervisor.ExtentData])
	}
	readBack(t, d, 8*mib, mib, 0x44)
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
	lo, err := c.Leftovers(testCtx(t, time.Minute), hypervisor.LeftoverQuery{VMs: []string{vm.Name}, Keep: map[string]bool{"kura-o2": true}})
	if err != nil || len(lo) != 0 {
		t.Errorf("leftovers after offline success: %v, %v (old checkpoint metadata must be gone)", lo, err)
	}
}

func TestUnprotectableDisks(t *testing.T) {
	env, c := connect(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "os.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	name := fmt.Sprintf("kura-t-unprot-%d", os.Getpid())
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/img'><host name='10.0.0.1' port='6789'/></source><target dev='vdb' bus='virtio'/></disk>
<disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='/dev/null'/><target dev='sda' bus='scsi'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/><readonly/></disk>
</devices></domain>`, name, img)
	dom, err := env.Conn.DomainDefineXML(xml)
	if err != nil {
		t.Fatalf("define: %v", err)
	}
	t.Cleanup(func() { _ = env.Conn.DomainUndefine(dom) })
	vm, err := c.LookupVM(testCtx(t, time.Minute), name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"vda": "", "vdb": "network disk (rbd) has no driver in kura", "sda": "pass-through block LUN", "hdc": "cdrom"}
	if len(vm.Disks) != len(want) {
		t.Fatalf("disks %+v", vm.Disks)
	}
	for _, d := range vm.Disks {
		if r, ok := want[d.Target]; !ok || d.Reason != r || d.Protectable != (r == "") {
			t.Errorf("disk %s: protectable=%v reason %q, want reason %q", d.Target, d.Protectable, d.Reason, r)
		}
	}
	if vm.Disks[0].Size != 8*mib || vm.State != hypervisor.PowerOff || !vm.Persistent {
		t.Errorf("vm %+v", vm)
	}
	s, err := begin(t, c, vm, hypervisor.ModeAuto, "", "kura-u1")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Disks()) != 1 || s.Disks()[0].Target != "vda" {
		t.Errorf("session disks %v, want only vda", s.Disks())
	}
	if err := s.Close(testCtx(t, time.Minute), false); err != nil {
		t.Fatal(err)
	}
}

// TestOnlineAfterOfflineBase: a checkpoint made while the VM was off is a
// bare qcow2 bitmap libvirt does not know, so an incremental backup of the
// running VM from it reports ErrCheckpointMissing (the engine then reads
// in full), and the full backup works despite the foreign bitmap.
func TestOnlineAfterOfflineBase(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 16}}})
	s, err := begin(t, c, guestVM(t, c, g), hypervisor.ModeAuto, "", "kura-a1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	vm := guestVM(t, c, g)
	if _, err := begin(t, c, vm, hypervisor.ModeCrash, "kura-a1", "kura-a2"); !errors.Is(err, hypervisor.ErrCheckpointMissing) {
		t.Fatalf("online from an offline base: %v, want ErrCheckpointMissing", err)
	}
	s, err = begin(t, c, vm, hypervisor.ModeCrash, "", "kura-a2")
	if err != nil {
		t.Fatalf("full after the missing base: %v", err)
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
	hmpWrite(t, g, 0, 0x77, 3*mib, mib)
	s, err = begin(t, c, vm, hypervisor.ModeCrash, "kura-a2", "kura-a3")
	if err != nil {
		t.Fatalf("incremental: %v", err)
	}
	d := byTarget(t, s, "vda")
	sum, _ := hvtest.CheckExtents(d.Extents, d.Size)
	if !d.Incremental || sum[hypervisor.ExtentData] != mib {
		t.Errorf("incremental=%v data=%d, want 1 MiB", d.Incremental, sum[hypervisor.ExtentData])
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
}
