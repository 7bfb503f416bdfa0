package vsphere

import (
	"bytes"
	"testing"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// savedSeed is a saved configuration as a session writes it.
func savedSeed(f *testing.F) []byte {
	ci := &types.VirtualMachineConfigInfo{Name: "web", InstanceUuid: "6f1c2b3a-0000-4000-8000-00000000000a", GuestId: "otherLinux64Guest",
		Hardware: types.VirtualHardware{NumCPU: 2, MemoryMB: 1024, Device: []types.BaseVirtualDevice{
			&types.ParaVirtualSCSIController{VirtualSCSIController: types.VirtualSCSIController{VirtualController: types.VirtualController{
				VirtualDevice: types.VirtualDevice{Key: 1000}, BusNumber: 0}}},
			&types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: 2000, ControllerKey: 1000, UnitNumber: types.NewInt32(0),
				Backing: &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: "[ds1] web/web.vmdk"}}},
				CapacityInBytes: 1 << 30},
		}}}
	b, err := encodeConfig(&savedConfig{VMX: "displayName = \"web\"\nscsi0:0.fileName = \"web.vmdk\"\n",
		Disks: []savedDisk{{Target: "scsi0:0", Key: 2000, File: "[ds1] web/web.vmdk", Capacity: 1 << 30}}}, ci)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzSavedConfig decodes arbitrary bytes as a point's vSphere
// configuration and renders its export: errors, never panics.
func FuzzSavedConfig(f *testing.F) {
	f.Add(savedSeed(f))
	f.Add([]byte(`{"version":1,"config":{"_typeName":"VirtualMachineConfigInfo"},"disks":[{"target":"scsi0:0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := decodeConfig(data); err != nil {
			return
		}
		src := &hypervisor.RestoreSource{Point: "p", VMName: "web", Config: data, ConfigFormat: ConfigFormat}
		_, _ = exportConfig(src, []hypervisor.ExportedDisk{{Target: "scsi0:0", Path: "/x/web-scsi0_0.vmdk", Format: "vmdk"}})
	})
}

// FuzzVMX parses .vmx text: what it encodes parses back the same.
func FuzzVMX(f *testing.F) {
	f.Add(".encoding = \"UTF-8\"\ndisplayName = \"a |22quoted|22 name\"\nscsi0:0.fileName = \"web.vmdk\"\n# comment\n")
	f.Fuzz(func(t *testing.T, text string) {
		v := parseVMX(text)
		again := parseVMX(string(v.encode()))
		if len(again) != len(v) {
			t.Fatalf("%d entries, %d after a round trip", len(v), len(again))
		}
		for i := range v {
			if again[i].value != v[i].value && !bytes.ContainsAny([]byte(v[i].value), "\"\r") {
				t.Fatalf("entry %q: %q became %q", v[i].key, v[i].value, again[i].value)
			}
		}
	})
}

// FuzzParseURI: any string is parsed or refused with ErrBadURI, and a
// password never shows in the error.
func FuzzParseURI(f *testing.F) {
	f.Add("vsphere://user@vc.example.org/DC?thumbprint=AB:CD")
	f.Add("vsphere://user:secret@vc/DC")
	f.Fuzz(func(t *testing.T, uri string) {
		_, err := parseURI(uri)
		if err == nil {
			return
		}
		if !bytes.Contains([]byte(err.Error()), []byte("unsupported connection uri")) {
			t.Fatalf("error %v is not ErrBadURI", err)
		}
	})
}

// FuzzDefineDoc decodes arbitrary bytes as a define document.
func FuzzDefineDoc(f *testing.F) {
	doc := defineDoc{Version: 1, Name: "x", InstanceUUID: "6f1c2b3a-0000-4000-8000-00000000000a"}
	b, _ := doc.encode(&types.VirtualMachineConfigSpec{Name: "x"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = decodeDefine(data)
	})
}

// FuzzParseOwner: any snapshot description parses without panicking, and
// an accepted owner names a host and a pid.
func FuzzParseOwner(f *testing.F) {
	f.Add(description())
	f.Add("kura-owner: host=h pid=12 start=99")
	f.Add("kura-owner:")
	f.Add("x kura-owner: pid=-1 host=")
	f.Fuzz(func(t *testing.T, desc string) {
		if o, ok := parseOwner(desc); ok && (o.Host == "" || o.PID <= 0) {
			t.Fatalf("%q: accepted %+v", desc, o)
		}
	})
}
