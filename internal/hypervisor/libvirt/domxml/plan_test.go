package domxml

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// encodeYAML and decodeYAML are a libvirt plan's way to and from its file.
func encodeYAML(p *Plan) ([]byte, error) { return hypervisor.EncodePlanYAML(p.ToRestorePlan()) }

func decodeYAML(data []byte) (*Plan, error) {
	rp, err := hypervisor.DecodePlanYAML(data)
	if err != nil {
		return nil, err
	}
	p, err := FromRestorePlan(rp, "libvirt")
	if err != nil {
		return nil, err
	}
	return p, p.Validate()
}

func TestYAMLRoundTrip(t *testing.T) {
	p, err := DefaultPlan(fixture(t, "q35-live.xml"), Options{PointID: "p1", NewName: "copy", StorageDir: "/srv/r",
		Host: "qemu+ssh://h2/system", Kind: "libvirt"})
	if err != nil {
		t.Fatal(err)
	}
	p.Start = true
	p.Disks[1].Skip = true
	b, err := encodeYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# kura restore plan", "keep_macs: false", "hypervisor: libvirt", "\nlibvirt:\n  nvram: /srv/r/copy_VARS.fd\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("yaml lacks %q:\n%s", want, b)
		}
	}
	q, err := decodeYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Errorf("round trip:\n%+v\n%+v", p, q)
	}
}

// TestLegacyPlanFile reads a plan file as kura wrote them before plans had
// a hypervisor section: libvirt-only keys (nvram) at the top level.
func TestLegacyPlanFile(t *testing.T) {
	legacy := `# kura restore plan. Edit, then run: kura restore --plan-file FILE
point: 20261121T233000Z-0a1b2c3d
host: qemu:///system
name: web01-copy
uuid: ""
keep_macs: false
memory_mib: 2048
vcpus: 2
nvram: /srv/restore/web01-copy_VARS.fd
disks:
  - target: vda
    source: /var/lib/libvirt/images/web01.qcow2
    path: /srv/restore/web01-copy-vda.qcow2
    format: qcow2
    size: 10737418240
networks:
  - type: network
    mac: 52:54:00:aa:bb:cc
    from: default
    to: lab
start: true
`
	p, err := decodeYAML([]byte(legacy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Hypervisor != "libvirt" || p.NVRAM != "/srv/restore/web01-copy_VARS.fd" || p.MemoryMiB != 2048 || !p.Start ||
		len(p.Disks) != 1 || p.Disks[0].Path != "/srv/restore/web01-copy-vda.qcow2" || p.Networks[0].To != "lab" {
		t.Fatalf("legacy plan read as %+v", p)
	}
	if _, err := FromRestorePlan(&hypervisor.RestorePlan{Hypervisor: "vsphere", Name: "x"}, "libvirt"); !errors.Is(err, ErrInvalidPlan) {
		t.Fatalf("a vsphere plan on libvirt: %v", err)
	}
	// A libvirt section key misspelt, and nvram both at the top and in the
	// section of a new-style file, are errors.
	for _, bad := range []string{
		"hypervisor: libvirt\nname: x\nlibvirt:\n  nvarm: /a\n",
		"hypervisor: libvirt\nname: x\nnvram: /a\n",
	} {
		if _, err := decodeYAML([]byte(bad)); !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("%q: %v, want ErrInvalidPlan", bad, err)
		}
	}
}

func TestDecodeYAMLErrors(t *testing.T) {
	good := `point: p
name: vm2
uuid: ""
disks:
  - {target: vda, path: /srv/vm2-vda.qcow2, format: qcow2, size: 1073741824}
  - {target: vdb, path: /srv/vm2-vdb.raw, format: raw}
networks:
  - {type: network, mac: "52:54:00:00:00:01", from: default, to: lab}
  - {type: user, mac: ""}
`
	if _, err := decodeYAML([]byte(good)); err != nil {
		t.Fatalf("good plan: %v", err)
	}
	cases := map[string]struct{ from, to, field string }{
		"empty name":    {"name: vm2", "name: ''", "name"},
		"slash name":    {"name: vm2", "name: a/b", "name"},
		"bad uuid":      {`uuid: ""`, "uuid: 1234", "uuid"},
		"good uuid ok":  {`uuid: ""`, "uuid: 0d8b1e55-9c2f-4a77-b3e4-5f6a7b8c9d0e", ""},
		"format":        {"format: raw}", "format: vdi}", "disks[1].format"},
		"relative path": {"/srv/vm2-vdb.raw", "vm2-vdb.raw", "disks[1].path"},
		"dup path":      {"/srv/vm2-vdb.raw", "/srv/vm2-vda.qcow2", "disks[1].path"},
		"dup target":    {"target: vdb", "target: vda", "disks[1].target"},
		"bad target":    {"target: vdb", "target: ../x", "disks[1].target"},
		"negative size": {"size: 1073741824", "size: -1", "disks[0].size"},
		"bad mac":       {`"52:54:00:00:00:01"`, `"52:54:00:00:01"`, "networks[0].mac"},
		"multicast mac": {`"52:54:00:00:00:01"`, `"01:00:5e:00:00:01"`, "networks[0].mac"},
		"dup mac":       {`mac: ""`, `mac: "52:54:00:00:00:01"`, "networks[1].mac"},
		"empty to":      {"to: lab", "to: ''", "networks[0].to"},
		"no type":       {"type: user, ", "", "networks[1].type"},
		"unknown field": {"name: vm2", "name: vm2\nnmae: x", "nmae"},
		"memory":        {"point: p", "point: p\nmemory_mib: -5", "memory_mib"},
		"two documents": {"point: p", "point: p\n---\nname: x", "more than one"},
		"not yaml":      {"point: p", "point: [", "yaml"},
	}
	for name, c := range cases {
		in := strings.Replace(good, c.from, c.to, 1)
		_, err := decodeYAML([]byte(in))
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v, want one naming %q", name, err, c.field)
		}
	}
}

func FuzzDecodeYAML(f *testing.F) {
	p, err := DefaultPlan(fixture(f, "q35-live.xml"), Options{NewName: "c", StorageDir: "/r"})
	if err != nil {
		f.Fatal(err)
	}
	b, _ := encodeYAML(p)
	f.Add(b)
	f.Add([]byte("name: x\ndisks: [{target: vda, path: /a, format: raw}]\n"))
	f.Add([]byte("name: &a x\nuuid: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeYAML(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidPlan) {
				t.Fatalf("error does not wrap ErrInvalidPlan: %v", err)
			}
			return
		}
		b, err := encodeYAML(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := decodeYAML(b)
		if err != nil {
			t.Fatalf("re-decode of a valid plan: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip differs:\n%+v\n%+v", p, q)
		}
	})
}

// TestVirshDefine checks that libvirt itself accepts what Apply writes.
func TestVirshDefine(t *testing.T) {
	strict := os.Getenv("KURA_TEST_STRICT") == "1"
	skip := func(why string) {
		if strict {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("virsh"); err != nil {
		skip("virsh not installed")
	}
	const uri = "qemu:///system"
	if out, err := exec.Command("virsh", "-c", uri, "version").CombinedOutput(); err != nil {
		skip("libvirtd not answering: " + strings.TrimSpace(string(out)))
	}
	virsh := func(args ...string) (string, error) {
		out, err := exec.Command("virsh", append([]string{"-c", uri}, args...)...).CombinedOutput()
		return string(out), err
	}
	dir := t.TempDir()
	for _, f := range []string{"q35-live.xml", "pc-inactive.xml"} {
		in := fixture(t, f)
		name := "kura-domxml-test-" + strings.TrimSuffix(f, ".xml")
		p, err := DefaultPlan(in, Options{NewName: name, StorageDir: dir, NetworkMap: map[string]string{"default": "default"}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := Apply(in, p)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(file, out, 0o600); err != nil {
			t.Fatal(err)
		}
		if o, err := virsh("define", file); err != nil {
			t.Errorf("%s: virsh define refused the output: %s\n%s", f, o, out)
			continue
		}
		dump, err := virsh("dumpxml", "--inactive", name)
		if _, uerr := virsh("undefine", "--nvram", name); uerr != nil {
			t.Errorf("undefine %s: %v", name, uerr)
		}
		if err != nil {
			t.Fatal(dump)
		}
		d := mustParse(t, []byte(dump))
		if d.UUID == "" || normUUID(d.UUID) == normUUID(mustParse(t, in).UUID) {
			t.Errorf("%s: defined uuid %q", f, d.UUID)
		}
		if got := d.Devices.Interfaces[0].MAC.Address; got != p.Networks[0].MAC {
			t.Errorf("%s: defined mac %s, plan %s", f, got, p.Networks[0].MAC)
		}
		if got := d.Devices.Disks[0].Source.File.File; got != p.Disks[0].Path {
			t.Errorf("%s: defined disk %s, plan %s", f, got, p.Disks[0].Path)
		}
	}
	// In place: the original name and UUID (only when no such VM exists).
	in := fixture(t, "pc-inactive.xml")
	if _, err := virsh("dominfo", "db02"); err == nil {
		t.Log("a VM db02 exists: in-place define not tried")
		return
	}
	p, err := DefaultPlan(in, Options{InPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Apply(in, p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "db02.xml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := virsh("define", file); err != nil {
		t.Fatalf("in place: virsh define refused the output: %s\n%s", o, out)
	}
	uuid, err := virsh("domuuid", "db02")
	virsh("undefine", "db02")
	if err != nil || strings.TrimSpace(uuid) != "0d8b1e55-9c2f-4a77-b3e4-5f6a7b8c9d0e" {
		t.Errorf("in place: uuid %q %v", uuid, err)
	}
}
