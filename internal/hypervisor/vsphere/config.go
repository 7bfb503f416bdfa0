package vsphere

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// ConfigFormat is the configuration format of vSphere points
// (docs/design/repository-format.md §6.1).
const ConfigFormat = "vsphere-vm-json"

// configVersion is the version of the saved configuration document.
const configVersion = 1

// savedConfig is what a point keeps of a VM's configuration.
type savedConfig struct {
	Version int `json:"version"`
	// VMX is the .vmx file as the datastore held it.
	VMX string `json:"vmx"`
	// Config is the VirtualMachineConfigInfo at the snapshot, in vSphere's
	// JSON encoding.
	Config    json.RawMessage `json:"config"`
	Placement placement       `json:"placement"`
	Disks     []savedDisk     `json:"disks"`
}

// placement says where a VM is in the inventory (inventory paths).
type placement struct {
	Datacenter   string `json:"datacenter"`
	Folder       string `json:"folder"`
	ResourcePool string `json:"resource_pool"`
	Host         string `json:"host,omitempty"`
	Datastore    string `json:"datastore"`
}

type savedDisk struct {
	Target   string `json:"target"`
	Key      int32  `json:"key"`
	File     string `json:"file"`
	Capacity int64  `json:"capacity"`
	ChangeID string `json:"change_id,omitempty"`
}

func encodeConfig(sc *savedConfig, ci *types.VirtualMachineConfigInfo) ([]byte, error) {
	var buf bytes.Buffer
	if err := types.NewJSONEncoder(&buf).Encode(ci); err != nil {
		return nil, fmt.Errorf("encode vm config: %w", err)
	}
	sc.Version, sc.Config = configVersion, bytes.TrimSpace(buf.Bytes())
	return json.Marshal(sc)
}

// decodeConfig reads a saved configuration and its config info.
func decodeConfig(b []byte) (*savedConfig, *types.VirtualMachineConfigInfo, error) {
	var sc savedConfig
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, nil, fmt.Errorf("saved vsphere configuration: %w", err)
	}
	if sc.Version != configVersion {
		return nil, nil, fmt.Errorf("saved vsphere configuration version %d: this kura reads version %d: %w", sc.Version, configVersion, hypervisor.ErrIncompatible)
	}
	var ci types.VirtualMachineConfigInfo
	if err := types.NewJSONDecoder(bytes.NewReader(sc.Config)).Decode(&ci); err != nil {
		return nil, nil, fmt.Errorf("saved vsphere configuration: config info: %w", err)
	}
	return &sc, &ci, nil
}

// Format describes the vSphere configuration format for the registry:
// exports write VMDK files and a .vmx pointing at them.
func Format() hypervisor.ConfigFormat {
	return hypervisor.ConfigFormat{Name: ConfigFormat, ImageFormat: func(string) string { return "vmdk" },
		ImageFormats: []string{"vmdk"}, ExportConfig: exportConfig}
}

// exportConfig writes the point's .vmx with its disks pointing at the
// exported files (same directory, relative names) and disks not exported
// marked absent. Without a saved .vmx a minimal one is written from the
// config info.
func exportConfig(src *hypervisor.RestoreSource, disks []hypervisor.ExportedDisk) (hypervisor.ExportedConfig, error) {
	var out hypervisor.ExportedConfig
	sc, ci, err := decodeConfig(src.Config)
	if err != nil {
		return out, err
	}
	vmx := parseVMX(sc.VMX)
	if len(vmx) == 0 {
		vmx = synthVMX(ci)
		out.Notes = append(out.Notes, "the point holds no .vmx text: a minimal .vmx was written from the saved configuration")
	}
	files := map[string]string{}
	for _, d := range disks {
		files[d.Target] = filepath.Base(d.Path)
	}
	for _, sd := range sc.Disks {
		if f, ok := files[sd.Target]; ok {
			vmx.set(sd.Target+".fileName", f)
			vmx.set(sd.Target+".present", "TRUE")
		} else {
			vmx.set(sd.Target+".present", "FALSE")
			out.Notes = append(out.Notes, fmt.Sprintf("disk %s left out of %s.vmx", sd.Target, src.VMName))
		}
	}
	out.File, out.Data = src.VMName+".vmx", vmx.encode()
	out.Hint = "copy the directory to a datastore and register " + out.File + " (or open it in VMware Workstation)"
	return out, nil
}

// vmxFile is a .vmx: `key = "value"` lines, in order.
type vmxFile []vmxEntry

type vmxEntry struct{ key, value string }

// parseVMX reads .vmx text; lines that are no entries are dropped.
func parseVMX(text string) vmxFile {
	var out vmxFile
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.HasPrefix(k, "#") {
			continue
		}
		out = append(out, vmxEntry{k, vmxUnescape(strings.Trim(strings.TrimSpace(v), `"`))})
	}
	return out
}

func (f *vmxFile) set(key, value string) {
	for i := range *f {
		if strings.EqualFold((*f)[i].key, key) {
			(*f)[i].value = value
			return
		}
	}
	*f = append(*f, vmxEntry{key, value})
}

func (f vmxFile) encode() []byte {
	var b strings.Builder
	for _, e := range f {
		fmt.Fprintf(&b, "%s = \"%s\"\n", e.key, vmxEscape(e.value))
	}
	return []byte(b.String())
}

// vmxEscape encodes characters the .vmx syntax reserves as |XX.
func vmxEscape(s string) string {
	return strings.NewReplacer("|", "|7C", `"`, "|22", "\n", "|0A").Replace(s)
}

func vmxUnescape(s string) string {
	return strings.NewReplacer("|7C", "|", "|7c", "|", "|22", `"`, "|0A", "\n", "|0a", "\n").Replace(s)
}

// synthVMX writes the entries a .vmx needs from the config info.
func synthVMX(ci *types.VirtualMachineConfigInfo) vmxFile {
	f := vmxFile{{".encoding", "UTF-8"}, {"config.version", "8"}}
	if v := strings.TrimPrefix(ci.Version, "vmx-"); v != "" {
		f = append(f, vmxEntry{"virtualHW.version", v})
	}
	f = append(f, vmxEntry{"displayName", ci.Name}, vmxEntry{"guestOS", guestOSKey(ci.GuestId)},
		vmxEntry{"memSize", fmt.Sprint(ci.Hardware.MemoryMB)}, vmxEntry{"numvcpus", fmt.Sprint(ci.Hardware.NumCPU)})
	if ci.Firmware != "" {
		f = append(f, vmxEntry{"firmware", ci.Firmware})
	}
	var ctls []string
	for _, dev := range ci.Hardware.Device {
		key := ""
		switch c := dev.(type) {
		case *types.ParaVirtualSCSIController:
			key, ctls = fmt.Sprintf("scsi%d", c.BusNumber), append(ctls, fmt.Sprintf("scsi%d.virtualDev=pvscsi", c.BusNumber))
		case *types.VirtualLsiLogicSASController:
			key, ctls = fmt.Sprintf("scsi%d", c.BusNumber), append(ctls, fmt.Sprintf("scsi%d.virtualDev=lsisas1068", c.BusNumber))
		case *types.VirtualLsiLogicController:
			key, ctls = fmt.Sprintf("scsi%d", c.BusNumber), append(ctls, fmt.Sprintf("scsi%d.virtualDev=lsilogic", c.BusNumber))
		case *types.VirtualAHCIController:
			key = fmt.Sprintf("sata%d", c.BusNumber)
		case *types.VirtualNVMEController:
			key = fmt.Sprintf("nvme%d", c.BusNumber)
		}
		if key != "" {
			f = append(f, vmxEntry{key + ".present", "TRUE"})
		}
	}
	sort.Strings(ctls)
	for _, c := range slices.Compact(ctls) {
		k, v, _ := strings.Cut(c, "=")
		f = append(f, vmxEntry{k, v})
	}
	return f
}

// guestOSKey turns a guest id ("otherLinux64Guest") into the .vmx's
// spelling ("otherlinux-64") closely enough for VMware products to accept.
func guestOSKey(id string) string {
	id = strings.TrimSuffix(id, "Guest")
	id = strings.Replace(id, "64", "-64", 1)
	return strings.ToLower(id)
}
