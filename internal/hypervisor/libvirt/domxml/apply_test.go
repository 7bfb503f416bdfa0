package domxml

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, b []byte) *libvirtxml.Domain {
	t.Helper()
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(b)); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, b)
	}
	return &d
}

func TestFixturesRoundTrip(t *testing.T) {
	for _, f := range []string{"q35-live.xml", "pc-inactive.xml"} {
		d := mustParse(t, fixture(t, f))
		s, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		d2 := mustParse(t, []byte(s))
		s2, _ := d2.Marshal()
		if s != s2 {
			t.Errorf("%s: marshal is not stable", f)
		}
		if len(d2.Devices.Disks) != 3 || len(d2.Devices.Interfaces) != 2 || len(d2.Devices.Channels) != 1 {
			t.Errorf("%s: devices lost in round trip", f)
		}
	}
}

func TestDefaultPlanNewVM(t *testing.T) {
	p, err := DefaultPlan(fixture(t, "q35-live.xml"), Options{
		PointID: "pt-1", NewName: "web01-copy", StorageDir: "/srv/restore",
		NetworkMap: map[string]string{"br-dmz": "br-test"}, Host: "qemu:///system",
		DiskSizes: map[string]int64{"vda": 8 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "web01-copy" || p.UUID != "" || p.KeepMACs || p.Point != "pt-1" || p.Host != "qemu:///system" {
		t.Errorf("identity: %+v", p)
	}
	if p.MemoryMiB != 2048 || p.VCPUs != 2 {
		t.Errorf("memory/vcpus = %d/%d", p.MemoryMiB, p.VCPUs)
	}
	want := []PlanDisk{
		{Target: "vda", Source: "/var/lib/libvirt/images/web01-root.qcow2", Path: "/srv/restore/web01-copy-vda.qcow2", Format: "qcow2", Size: 8 << 30},
		{Target: "vdb", Source: "/dev/vg0/web01-data", Path: "/srv/restore/web01-copy-vdb.raw", Format: "raw"},
	}
	if len(p.Disks) != 2 || p.Disks[0] != want[0] || p.Disks[1] != want[1] {
		t.Errorf("disks = %+v", p.Disks)
	}
	if len(p.Networks) != 2 || p.Networks[0].From != "default" || p.Networks[0].To != "default" ||
		p.Networks[1].Type != NetBridge || p.Networks[1].From != "br-dmz" || p.Networks[1].To != "br-test" {
		t.Errorf("networks = %+v", p.Networks)
	}
	for _, n := range p.Networks {
		if !strings.HasPrefix(n.MAC, "52:54:00:") || n.MAC == "52:54:00:a1:b2:c3" || n.MAC == "52:54:00:d4:e5:f6" {
			t.Errorf("mac %q is not a new 52:54:00 address", n.MAC)
		}
	}
	if p.NVRAM != "/srv/restore/web01-copy_VARS.fd" {
		t.Errorf("nvram = %q", p.NVRAM)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	if _, err := DefaultPlan(fixture(t, "q35-live.xml"), Options{NewName: "x", StorageDir: "/s", NetworkMap: map[string]string{"nope": "a"}}); !errors.Is(err, ErrPlanMismatch) {
		t.Errorf("unknown network in map: %v", err)
	}
	if _, err := DefaultPlan(fixture(t, "q35-live.xml"), Options{StorageDir: "/s"}); !errors.Is(err, ErrInvalidPlan) {
		t.Errorf("no new name: %v", err)
	}
}

func TestApplyNewVMDropsOldIdentity(t *testing.T) {
	in := fixture(t, "q35-live.xml")
	p, err := DefaultPlan(in, Options{NewName: "web01-copy", StorageDir: "/srv/restore", NetworkMap: map[string]string{"br-dmz": "br-test", "default": "lab"}})
	if err != nil {
		t.Fatal(err)
	}
	out, notes, err := ApplyNotes(in, p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, old := range []string{
		"6f2a0c9e-3b1d-4c55-9a1e-2d7f0b8c4e11", "52:54:00:a1:b2:c3", "52:54:00:d4:e5:f6",
		"/var/lib/libvirt/images/web01-root.qcow2", "debian12-base", "/dev/vg0/web01-data",
		"portid", "virbr0", "vnet3", "domain-7-web01", "/dev/pts/4", "5903", "+64055",
		"virtio-disk0", "web01_VARS", "web01-serial0.log", "1c5e2a40", "id=\"7\"", "state=",
		"<backingStore", "br-dmz",
	} {
		if strings.Contains(s, old) {
			t.Errorf("output still contains %q", old)
		}
	}
	d := mustParse(t, out)
	if d.Name != "web01-copy" || d.UUID != "" || d.ID != nil {
		t.Errorf("name/uuid/id = %q/%q/%v", d.Name, d.UUID, d.ID)
	}
	disks := d.Devices.Disks
	if len(disks) != 3 || disks[0].Source.File.File != "/srv/restore/web01-copy-vda.qcow2" || disks[0].Driver.Type != "qcow2" ||
		disks[1].Source.File == nil || disks[1].Source.File.File != "/srv/restore/web01-copy-vdb.raw" || disks[1].Driver.Type != "raw" ||
		disks[1].Driver.Cache != "none" {
		t.Errorf("disks not rewritten: %s", s)
	}
	if cd := disks[2]; cd.Device != "cdrom" || cd.Source.StartupPolicy != "optional" {
		t.Errorf("cdrom media should be optional on a new host")
	}
	ifs := d.Devices.Interfaces
	if ifs[0].Source.Network.Network != "lab" || ifs[1].Source.Bridge.Bridge != "br-test" ||
		ifs[0].MAC.Address != p.Networks[0].MAC || ifs[1].MAC.Address != p.Networks[1].MAC || ifs[0].Target != nil {
		t.Errorf("interfaces not mapped: %+v %+v", ifs[0], ifs[1])
	}
	if ifs[0].Address == nil || ifs[0].Address.PCI == nil {
		t.Error("guest PCI address of an interface lost")
	}
	if ch := d.Devices.Channels[0]; ch.Source.UNIX.Path != "" || ch.Target.VirtIO.Name != "org.qemu.guest_agent.0" {
		t.Errorf("agent channel: %+v", ch.Source.UNIX)
	}
	if lf := d.Devices.Serials[0].Log.File; lf != "/var/log/libvirt/qemu/web01-copy-serial0.log" {
		t.Errorf("serial log = %q", lf)
	}
	if v := d.Devices.Graphics[0].VNC; v.Port != 0 || v.AutoPort != "yes" {
		t.Errorf("vnc port = %d autoport %q", v.Port, v.AutoPort)
	}
	if sl := d.SecLabel[0]; sl.Label != "" || sl.ImageLabel != "" || sl.Model != "dac" {
		t.Errorf("seclabel = %+v", sl)
	}
	if d.OS.NVRam.NVRam != "/srv/restore/web01-copy_VARS.fd" || d.OS.NVRam.Template == "" || d.OS.Loader.Path == "" {
		t.Errorf("nvram = %+v", d.OS.NVRam)
	}
	for _, e := range d.SysInfo[0].SMBIOS.System.Entry {
		if e.Name == "uuid" {
			t.Error("smbios uuid of the old VM kept")
		}
	}
	if d.GenID == nil || d.GenID.Value != "" {
		t.Error("genid should be regenerated")
	}
	_ = notes
}

func TestApplyInPlaceKeepsIdentity(t *testing.T) {
	in := fixture(t, "q35-live.xml")
	p, err := DefaultPlan(in, Options{InPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !p.KeepMACs || p.Name != "web01" || p.Disks[1].Path != "/dev/vg0/web01-data" || p.NVRAM != "" {
		t.Fatalf("in-place plan: %+v", p)
	}
	out, err := Apply(in, p)
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, out)
	if d.UUID != "6f2a0c9e-3b1d-4c55-9a1e-2d7f0b8c4e11" || d.Devices.Interfaces[1].MAC.Address != "52:54:00:d4:e5:f6" ||
		d.Devices.Disks[0].Source.File.File != "/var/lib/libvirt/images/web01-root.qcow2" ||
		d.Devices.Disks[1].Source.Block == nil || d.Devices.Disks[0].BackingStore != nil ||
		d.OS.NVRam.NVRam != "/var/lib/libvirt/qemu/nvram/web01_VARS.fd" || d.Devices.Interfaces[1].Source.Bridge.Bridge != "br-dmz" {
		t.Errorf("in place changed identity:\n%s", out)
	}
	if d.Devices.Disks[2].Source.StartupPolicy != "" {
		t.Error("in place cdrom changed")
	}
}

func TestApplyResizeAndSkip(t *testing.T) {
	in := fixture(t, "pc-inactive.xml")
	p, err := DefaultPlan(in, Options{NewName: "db02-test", StorageDir: "/srv/r", Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if p.MemoryMiB != 1024 || p.VCPUs != 4 || p.Disks[0].Format != "raw" || p.NVRAM != "" {
		t.Fatalf("plan: %+v", p)
	}
	p.MemoryMiB, p.VCPUs = 3072, 6
	p.Disks[1].Skip = true
	out, notes, err := ApplyNotes(in, p)
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, out)
	if toKiB(d.Memory.Value, d.Memory.Unit) != 3072*1024 || toKiB(d.CurrentMemory.Value, d.CurrentMemory.Unit) != 3072*1024 {
		t.Errorf("memory = %+v / %+v", d.Memory, d.CurrentMemory)
	}
	if d.VCPU.Value != 6 || d.VCPU.Current != 1 || d.CPU.Topology.Sockets != 3 || d.CPU.Topology.Cores != 2 {
		t.Errorf("vcpu = %+v topology %+v", d.VCPU, d.CPU.Topology)
	}
	if len(d.Devices.Disks) != 2 || d.Devices.Disks[0].Target.Dev != "vda" || d.Devices.Disks[1].Device != "cdrom" {
		t.Errorf("skipped disk still there")
	}
	if len(notes) == 0 || !strings.Contains(strings.Join(notes, "\n"), "vdb") {
		t.Errorf("notes = %q", notes)
	}
	if sp := d.Devices.Serials[0].Source.File.Path; sp != "/var/log/vm/db02-test-console.log" {
		t.Errorf("serial file = %q", sp)
	}
	p.VCPUs = 5 // not a multiple of cores×threads
	out, err = Apply(in, p)
	if err != nil {
		t.Fatal(err)
	}
	if tp := mustParse(t, out).CPU.Topology; tp.Sockets != 5 || tp.Cores != 1 {
		t.Errorf("topology for 5 vcpus = %+v", tp)
	}
}

func TestApplyMismatch(t *testing.T) {
	in := fixture(t, "pc-inactive.xml")
	base := func() *Plan {
		p, err := DefaultPlan(in, Options{NewName: "n", StorageDir: "/r"})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct {
		edit func(*Plan)
		want error
		msg  string
	}{
		"missing disk":   {func(p *Plan) { p.Disks = p.Disks[:1] }, ErrPlanMismatch, "vdb"},
		"unknown disk":   {func(p *Plan) { p.Disks = append(p.Disks, PlanDisk{Target: "vdz", Path: "/r/z", Format: "raw"}) }, ErrPlanMismatch, "vdz"},
		"fewer networks": {func(p *Plan) { p.Networks = p.Networks[:1] }, ErrPlanMismatch, "interfaces"},
		"wrong type":     {func(p *Plan) { p.Networks[1].Type = NetNetwork }, ErrPlanMismatch, "networks[1].type"},
		"keep macs":      {func(p *Plan) { p.KeepMACs = true }, ErrInvalidPlan, "networks[0].mac"},
		"bad format":     {func(p *Plan) { p.Disks[0].Format = "vmdk" }, ErrInvalidPlan, "disks[0].format"},
	}
	for name, c := range cases {
		p := base()
		c.edit(p)
		_, err := Apply(in, p)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %v naming %q", name, err, c.want, c.msg)
		}
	}
	p := base()
	p.KeepMACs = true
	for i := range p.Networks {
		p.Networks[i].MAC = ""
	}
	out, err := Apply(in, p)
	if err != nil || !strings.Contains(string(out), "52:54:00:44:55:66") {
		t.Errorf("keep_macs with empty macs: %v", err)
	}
	if _, err := Apply([]byte("<domain><name>x</name"), p); !errors.Is(err, ErrInvalidXML) {
		t.Errorf("broken xml: %v", err)
	}
}
