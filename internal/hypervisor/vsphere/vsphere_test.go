package vsphere

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/hvtest"
	"github.com/kurabackup/kura/internal/hypervisor/vsphere/vcsim"
	"github.com/kurabackup/kura/internal/testenv"
)

const mib = 1 << 20

func password(pw string) func() (string, error) { return func() (string, error) { return pw, nil } }

// world is a simulated vCenter and a connection to it.
func world(t *testing.T) (*vcsim.Sim, *Connector) {
	t.Helper()
	testenv.NeedTool(t, "qemu-img")
	testenv.NeedTool(t, "qemu-io")
	sim := vcsim.Start(t)
	c, err := Connect(context.Background(), sim.URI(""), hypervisor.OpenOptions{Password: password(vcsim.Password)})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return sim, c
}

var vmSeq atomic.Int64

func TestConnect(t *testing.T) {
	sim, c := world(t)
	ctx := context.Background()
	if h, _ := c.Host(ctx); h != "127.0.0.1" || c.dc.InventoryPath != "/DC0" {
		t.Errorf("host %q, datacenter %q", h, c.dc.InventoryPath)
	}
	open := func(uri, pw string) error {
		c, err := Connect(ctx, uri, hypervisor.OpenOptions{Password: password(pw)})
		if err == nil {
			c.Close()
		}
		return err
	}
	host := sim.Server.URL.Host
	for name, uri := range map[string]string{
		"cafile":   sim.URI("cafile=" + sim.CAFile),
		"insecure": sim.URI("insecure=1"),
		"lower":    sim.URI("thumbprint=" + strings.ToLower(sim.Thumbprint)),
	} {
		if err := open(uri, vcsim.Password); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := open(sim.URI("thumbprint="+strings.Repeat("AB:", 31)+"AB"), vcsim.Password); err == nil || !strings.Contains(err.Error(), "thumbprint") {
		t.Errorf("wrong thumbprint: %v", err)
	}
	if err := open(sim.URI("insecure=0"), vcsim.Password); err == nil || !strings.Contains(err.Error(), "thumbprint=") {
		t.Errorf("untrusted certificate without a thumbprint: %v", err)
	}
	if err := open(sim.URI(""), "wrong"); err == nil || !strings.Contains(err.Error(), "login") {
		t.Errorf("wrong password: %v", err)
	}
	for _, uri := range []string{
		"vsphere://" + vcsim.User + ":" + vcsim.Password + "@" + host + "/DC0",
		"vsphere://" + host + "/DC0",
		"vsphere://u@" + host + "/DC0?thumbprint=xyz",
		"vsphere://u@" + host + "/DC0?insecure=1&thumbprint=" + sim.Thumbprint,
		"vsphere://u@" + host + "/DC0?color=red",
		"vsphere://u@" + host + "/DC0?insecure=maybe",
	} {
		err := open(uri, vcsim.Password)
		if !errors.Is(err, hypervisor.ErrBadURI) || strings.Contains(err.Error(), vcsim.Password) {
			t.Errorf("%s: %v, want ErrBadURI without the password", uri, err)
		}
	}
	if err := open(sim.URI("")[:strings.LastIndex(sim.URI(""), "/")]+"/NoSuchDC?thumbprint="+sim.Thumbprint, vcsim.Password); err == nil || !strings.Contains(err.Error(), "datacenter") {
		t.Errorf("unknown datacenter: %v", err)
	}
}

// newConfig is hvtest's NewConfig: a diskless VM.
func newConfig(t *testing.T, name, uuid string) []byte {
	spec := &types.VirtualMachineConfigSpec{Name: name, GuestId: string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		NumCPUs: 1, MemoryMB: 64, InstanceUuid: uuid}
	doc := defineDoc{Version: 1, Name: name, InstanceUUID: uuid, Placement: placement{Datastore: "LocalDS_0"}}
	b, err := doc.encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hvTarget(sim *vcsim.Sim, c *Connector, on bool, mode hypervisor.ConsistencyMode) hvtest.Target {
	return hvtest.Target{Connector: c, Consistency: mode, NewConfig: newConfig, Timeout: 3 * time.Minute,
		Storage:  func(*testing.T) string { return sim.Datastore },
		Abandon:  func(t *testing.T, vm hypervisor.VM, _, next string, _ map[string]string) { abandon(t, c, vm, next) },
		ReadDisk: func(t *testing.T, p, _ string) []byte { return sim.Read(t, p) },
		MakeVM: func(t *testing.T) (hypervisor.VM, hvtest.WriteFunc) {
			name := fmt.Sprintf("hvt%d", vmSeq.Add(1))
			sim.NewVM(t, vcsim.VMSpec{Name: name, PowerOn: on, Tools: on,
				Disks: []vcsim.DiskSpec{{SizeMiB: 16}, {SizeMiB: 4, RDM: "physicalMode"}}})
			vm, err := c.LookupVM(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			return vm, func(off int64, data []byte) { sim.Write(t, name, 0, off, data) }
		}}
}

func TestConformanceRunning(t *testing.T) {
	sim, c := world(t)
	hvtest.Run(t, hvTarget(sim, c, true, hypervisor.ModeAuto))
}

func TestConformanceShutOff(t *testing.T) {
	sim, c := world(t)
	hvtest.Run(t, hvTarget(sim, c, false, hypervisor.ModeCrash))
}

// TestInventory: attributes and selectors, and the disks kura cannot
// protect with their reasons (seed 003: physical RDMs, independent disks).
func TestInventory(t *testing.T) {
	sim, c := world(t)
	ctx := context.Background()
	sim.NewVM(t, vcsim.VMSpec{Name: "web1", PowerOn: true, Tools: true, IP: "10.1.2.3", Hostname: "web1.lab.example.org",
		Folder: "prod", Pool: "webpool", Tags: []string{"backup/daily", "owner/ops"},
		Disks: []vcsim.DiskSpec{{SizeMiB: 8}, {SizeMiB: 4, RDM: "physicalMode"}, {SizeMiB: 4, RDM: "virtualMode"},
			{SizeMiB: 4, Mode: "independent_persistent"}}})
	sim.NewVM(t, vcsim.VMSpec{Name: "db1", Disks: []vcsim.DiskSpec{{SizeMiB: 8}}})
	vms, err := c.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(vms, func(v hypervisor.VM) bool { return v.Name == "web1" })
	if i < 0 {
		t.Fatalf("web1 not listed: %+v", vms)
	}
	web := vms[i]
	if web.State != hypervisor.PowerOn || !web.HasAgent || !slices.Contains(web.Addresses, "10.1.2.3") || web.DNSName != "web1.lab.example.org" ||
		web.Attributes["folder"][0] != "/DC0/vm/prod" || web.Attributes["resource_pool"][0] != "/DC0/host/DC0_C0/Resources/webpool" ||
		!slices.Contains(web.Attributes["tag"], "backup/daily") || len(web.Attributes["moref"]) != 1 || !hypervisor.ValidUUID(web.UUID) {
		t.Fatalf("web1 described as %+v", web)
	}
	want := []struct {
		target, reason string
		ok             bool
	}{{"scsi0:0", "", true}, {"scsi0:1", "physical compatibility mode", false}, {"scsi0:2", "virtual compatibility mode", false},
		{"scsi0:3", "independent disk", false}}
	for k, w := range want {
		d := web.Disks[k]
		if d.Target != w.target || d.Protectable != w.ok || !strings.Contains(d.Reason, w.reason) || !strings.HasPrefix(d.Source, "[LocalDS_0] web1/") {
			t.Errorf("disk %d: %+v, want %s protectable=%v reason ~%q", k, d, w.target, w.ok, w.reason)
		}
	}
	if web.Disks[0].Size != 8*mib {
		t.Errorf("disk size %d", web.Disks[0].Size)
	}
	for spec, names := range map[string][]string{
		"folder:/DC0/vm/prod":                         {"web1"},
		"resource_pool:/DC0/host/*/Resources/webpool": {"web1"},
		"tag:owner/*":                                 {"web1"},
		"moref:" + web.Attributes["moref"][0]:         {"web1"},
		"ipaddr:10.1.2.3":                             {"web1"},
		"ipaddr:web1.lab.example.org":                 {"web1"},
		"uuid:" + web.UUID:                            {"web1"},
		"powerstate:off":                              {"db1"},
	} {
		sel, err := hypervisor.ParseSelectors([]string{spec})
		if err != nil {
			t.Fatal(err)
		}
		got, err := hypervisor.Select(ctx, vms, sel, nil)
		var gotNames []string
		for _, g := range got {
			gotNames = append(gotNames, g.Name)
		}
		if err != nil || !slices.Equal(gotNames, names) {
			t.Errorf("%s: %v %v, want %v", spec, gotNames, err, names)
		}
	}
	for _, key := range []string{"web1", web.UUID, web.Attributes["moref"][0], web.Attributes["bios_uuid"][0]} {
		if got, err := c.LookupVM(ctx, key); err != nil || got.Name != "web1" {
			t.Errorf("LookupVM(%s): %v %v", key, got.Name, err)
		}
	}
}

// TestPreexistingSnapshot: seed 003's PREEXISTING_VCB_SNAPSHOT policies.
func TestPreexistingSnapshot(t *testing.T) {
	sim, c := world(t)
	ctx := context.Background()
	obj := sim.NewVM(t, vcsim.VMSpec{Name: "pre", PowerOn: true, Disks: []vcsim.DiskSpec{{SizeMiB: 8}}})
	task, err := obj.CreateSnapshot(ctx, "kura-20260101T000000Z-deadbeef", "left by a killed run", false, false)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	vm, _ := c.LookupVM(ctx, "pre")
	opts := hypervisor.BackupOptions{Consistency: hypervisor.ModeAuto, NewCheckpoint: "kura-new"}
	if _, err := c.BeginBackup(ctx, vm, opts); !errors.Is(err, hypervisor.ErrBusy) || !strings.Contains(err.Error(), "kura cleanup") {
		t.Fatalf("policy fail: %v", err)
	}
	opts.Preexisting = hypervisor.PreexistingDelete
	s, err := c.BeginBackup(ctx, vm, opts)
	if err != nil {
		t.Fatalf("policy delete: %v", err)
	}
	if !slices.ContainsFunc(s.Notes(), func(n string) bool { return strings.Contains(n, "kura-20260101T000000Z-deadbeef removed") }) ||
		s.Consistency() != hypervisor.ConsistencyCrash {
		t.Errorf("notes %v, consistency %s", s.Notes(), s.Consistency())
	}
	if err := s.Close(ctx, true); err != nil {
		t.Fatal(err)
	}
	if lo, err := c.Leftovers(ctx, hypervisor.LeftoverQuery{}); err != nil || len(lo) != 0 {
		t.Fatalf("leftovers after a clean session: %v %v", lo, err)
	}
}

// TestQuiescing: VMware Tools decides between application and crash
// consistency.
func TestQuiescing(t *testing.T) {
	sim, c := world(t)
	ctx := context.Background()
	sim.NewVM(t, vcsim.VMSpec{Name: "tools", PowerOn: true, Tools: true, Disks: []vcsim.DiskSpec{{SizeMiB: 4}}})
	sim.NewVM(t, vcsim.VMSpec{Name: "notools", PowerOn: true, Disks: []vcsim.DiskSpec{{SizeMiB: 4}}})
	for _, tc := range []struct {
		vm   string
		mode hypervisor.ConsistencyMode
		want hypervisor.Consistency
		err  error
	}{
		{"tools", hypervisor.ModeAuto, hypervisor.ConsistencyApplication, nil},
		{"tools", hypervisor.ModeCrash, hypervisor.ConsistencyCrash, nil},
		{"notools", hypervisor.ModeAuto, hypervisor.ConsistencyCrash, nil},
		{"notools", hypervisor.ModeApplication, "", hypervisor.ErrNoAgent},
		{"tools", hypervisor.ModePause, "", hypervisor.ErrUnsupported},
	} {
		vm, _ := c.LookupVM(ctx, tc.vm)
		s, err := c.BeginBackup(ctx, vm, hypervisor.BackupOptions{Consistency: tc.mode, NewCheckpoint: "kura-q"})
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s %s: %v, want %v", tc.vm, tc.mode, err, tc.err)
			}
			continue
		}
		if err != nil || s.Consistency() != tc.want {
			t.Errorf("%s %s: %v %v, want %s", tc.vm, tc.mode, err, s, tc.want)
			continue
		}
		_ = s.Close(ctx, true)
	}
}

// TestIncompatiblePoint: a libvirt point is not restored on vSphere.
func TestIncompatiblePoint(t *testing.T) {
	_, c := world(t)
	src := &hypervisor.RestoreSource{Point: "p", VMName: "kvm1", Hypervisor: "libvirt", Config: []byte("<domain/>"), ConfigFormat: "libvirt-domain-xml"}
	_, err := c.PlanRestore(context.Background(), src, hypervisor.RestoreRequest{Name: "x"})
	if !errors.Is(err, hypervisor.ErrIncompatible) || !strings.Contains(err.Error(), "taken from libvirt") {
		t.Fatalf("libvirt point on vsphere: %v", err)
	}
}

func hypervisorOpts() hypervisor.OpenOptions {
	return hypervisor.OpenOptions{Password: password(vcsim.Password)}
}

// abandon leaves a backup snapshot named next on vm as a kura process that
// was killed would: its owner line names a process that has exited.
func abandon(t *testing.T, c *Connector, vm hypervisor.VM, next string) {
	t.Helper()
	ctx := context.Background()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	obj, err := c.vmObject(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf("kura backup snapshot\n%s host=%s pid=%d start=1", ownerKey, hostname(), cmd.Process.Pid)
	if _, err := c.createSnapshot(ctx, obj, next, desc, false); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotOwner: a snapshot's session is live while its process runs
// (in this process: while the session is open), dead once it is gone, and
// unknown on another host until it is a day old.
func TestSnapshotOwner(t *testing.T) {
	now := time.Now()
	tree := func(name, desc string, age time.Duration) types.VirtualMachineSnapshotTree {
		return types.VirtualMachineSnapshotTree{Name: name, Description: desc, CreateTime: now.Add(-age)}
	}
	line := func(host string, pid int, start uint64) string {
		return fmt.Sprintf("kura backup snapshot\n%s host=%s pid=%d start=%d", ownerKey, host, pid, start)
	}
	liveSnaps.Store("kura-aaaaaaaa-open", true)
	defer liveSnaps.Delete("kura-aaaaaaaa-open")
	self := os.Getpid()
	for _, tc := range []struct {
		tree types.VirtualMachineSnapshotTree
		want snapState
	}{
		{tree("kura-aaaaaaaa-open", description(), 0), stateLive},
		{tree("kura-aaaaaaaa-closed", description(), 0), stateDead},
		{tree("kura-aaaaaaaa-p", line(hostname(), 1, 0), 0), stateLive}, // init runs
		{tree("kura-aaaaaaaa-p", line(hostname(), self, 1), 0), stateDead},
		{tree("kura-aaaaaaaa-p", line("elsewhere", self, 0), time.Hour), stateUnknown},
		{tree("kura-aaaaaaaa-p", line("elsewhere", self, 0), 25*time.Hour), stateDead},
		{tree("kura-aaaaaaaa-p", "no owner line", time.Minute), stateUnknown},
		{tree("kura-aaaaaaaa-p", "no owner line", 25*time.Hour), stateDead},
	} {
		if got := classify(tc.tree); got.state != tc.want || got.repo != "aaaaaaaa" {
			t.Errorf("%s %q: state %d repo %q, want %d", tc.tree.Name, tc.tree.Description, got.state, got.repo, tc.want)
		}
	}
}
