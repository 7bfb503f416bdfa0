package libvirt

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

const savedXML = `<domain type='kvm'>
  <name>web1</name>
  <uuid>11111111-2222-4333-8444-555555555555</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' error_policy='report'/>
      <source file='/var/lib/libvirt/images/web1.raw'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1-data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source bridge='br0'/>
      <virtualport type='openvswitch'/>
      <model type='virtio'/>
    </interface>
    <video><model type='none'/></video>
  </devices>
</domain>`

func TestInstantXML(t *testing.T) {
	spec := hypervisor.InstantSpec{Config: []byte(savedXML), Name: "web1-now",
		Disks: []hypervisor.InstantDisk{{Target: "vda", Overlay: "/srv/vms/web1-now-vda.instant.qcow2", Size: 1 << 30,
			Socket: "/var/lib/libvirt/qemu/kura/kura-instant-1/nbd.sock", Export: "vda"}},
		IsolatedNetwork: "kura-verify-1", Console: true,
		Tag: hypervisor.InstantTag{Role: hypervisor.RoleVerify, Point: "20261121T233000Z-0a1b2c3d", Source: "11111111-2222-4333-8444-555555555555",
			Dir: "/var/lib/libvirt/qemu/kura/kura-instant-1", Owner: 4242, Host: "h1"}}
	out, err := instantXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(out)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if d.Name != "web1-now" || d.UUID == "" || d.UUID == "11111111-2222-4333-8444-555555555555" {
		t.Fatalf("name %q uuid %q", d.Name, d.UUID)
	}
	if len(d.Devices.Disks) != 1 {
		t.Fatalf("disks %+v: vdb is not in the spec and must be left out", d.Devices.Disks)
	}
	disk := d.Devices.Disks[0]
	bs := disk.BackingStore
	if disk.Source.File.File != spec.Disks[0].Overlay || disk.Driver.Type != "qcow2" || disk.Driver.ErrorPolicy != "stop" ||
		disk.Driver.RErrorPolicy != "stop" || bs == nil || bs.Format.Type != "raw" || bs.Source.Network.Protocol != "nbd" ||
		bs.Source.Network.Name != "vda" || bs.Source.Network.Hosts[0].Socket != spec.Disks[0].Socket || bs.BackingStore == nil {
		t.Fatalf("instant disk:\n%s", out)
	}
	ifc := d.Devices.Interfaces[0]
	if ifc.Source.Network == nil || ifc.Source.Network.Network != "kura-verify-1" || ifc.Source.Bridge != nil ||
		ifc.VirtualPort != nil || ifc.MAC.Address == "52:54:00:aa:bb:cc" {
		t.Fatalf("isolated interface:\n%s", out)
	}
	if d.Devices.Videos[0].Model.Type != "vga" {
		t.Fatalf("console: %+v", d.Devices.Videos)
	}
	m, ok := parseInstantMeta(&d)
	if !ok || m.Role != spec.Tag.Role || m.Point != spec.Tag.Point || m.Source != spec.Tag.Source || m.Dir != spec.Tag.Dir ||
		m.Owner != 4242 || m.Host != "h1" || len(m.Disks) != 1 || m.Disks[0].Error != "report" || m.Disks[0].Read != "" {
		t.Fatalf("metadata %+v (ok %v)\n%s", m, ok, d.Metadata.XML)
	}
	// Without isolation the (mapped) networks stay; a disk not in the
	// configuration is an error.
	spec.IsolatedNetwork, spec.NetworkMap = "", map[string]string{"br0": "br1"}
	out, err = instantXML(spec)
	if err != nil || !strings.Contains(string(out), "br1") {
		t.Fatalf("mapped network: %v\n%s", err, out)
	}
	spec.Disks = append(spec.Disks, hypervisor.InstantDisk{Target: "sdz", Overlay: "/srv/x.qcow2", Size: 1})
	if _, err := instantXML(spec); err == nil || !strings.Contains(err.Error(), "sdz") {
		t.Fatalf("unknown disk: %v", err)
	}
}
