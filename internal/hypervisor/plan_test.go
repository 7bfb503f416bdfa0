package hypervisor

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type testSection struct {
	Datastore string `yaml:"datastore"`
	Folder    string `yaml:"folder"`
}

func TestPlanSectionRoundTrip(t *testing.T) {
	p := &RestorePlan{Point: "p1", Hypervisor: "vsphere", Host: "vsphere://u@vc/DC", Name: "web-copy",
		Disks:    []PlanDisk{{Target: "scsi0:0", Path: "[ds1] web-copy/web-copy.vmdk", Format: "vmdk", Size: 1 << 30}},
		Networks: []PlanNet{{Type: "network", From: "VM Network", To: "Lab Network"}},
		Section:  &testSection{Datastore: "ds1", Folder: "/DC/vm/restored"}}
	b, err := EncodePlanYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nvsphere:\n  datastore: ds1\n") {
		t.Fatalf("section not under the hypervisor's key:\n%s", b)
	}
	q, err := DecodePlanYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	var sec testSection
	if err := q.DecodeSection(&sec); err != nil || sec != *p.Section.(*testSection) {
		t.Fatalf("section %+v, %v", sec, err)
	}
	q.Section, p.Section = nil, nil
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip:\n%+v\n%+v", p, q)
	}

	// Typos inside the section are errors when the connector decodes it;
	// keys of another hypervisor's section at the top level are errors.
	q, err = DecodePlanYAML([]byte("hypervisor: vsphere\nname: x\nvsphere:\n  datastor: ds1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.DecodeSection(&sec); !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), "datastor") {
		t.Fatalf("misspelt section key: %v", err)
	}
	for _, bad := range []string{
		"hypervisor: vsphere\nname: x\nlibvirt:\n  nvram: /a\n",
		"hypervisor: vsphere\nname: x\nnvram: /a\n",
		"name: x\ndisks: [{target: vda, pth: /a}]\n",
		"- a\n- b\n",
	} {
		if _, err := DecodePlanYAML([]byte(bad)); !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("%q: %v, want ErrInvalidPlan", bad, err)
		}
	}
	// A file without a hypervisor key is a libvirt plan of before, whose
	// libvirt keys were at the top level.
	q, err = DecodePlanYAML([]byte("name: x\nnvram: /srv/x_VARS.fd\n"))
	if err != nil || q.Hypervisor != LegacyHypervisor || q.Section == nil {
		t.Fatalf("legacy plan: %+v, %v", q, err)
	}
}

func FuzzDecodePlanYAML(f *testing.F) {
	f.Add([]byte("hypervisor: vsphere\nname: x\nvsphere:\n  datastore: ds1\n"))
	f.Add([]byte("name: x\nnvram: /a\ndisks: [{target: vda, path: /a, format: raw}]\n"))
	f.Add([]byte("name: &a x\nuuid: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePlanYAML(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidPlan) {
				t.Fatalf("error does not wrap ErrInvalidPlan: %v", err)
			}
			return
		}
		b, err := EncodePlanYAML(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := DecodePlanYAML(b)
		if err != nil {
			t.Fatalf("re-decode of a valid plan: %v\n%s", err, b)
		}
		p.Section, q.Section = nil, nil
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip differs:\n%+v\n%+v", p, q)
		}
	})
}
