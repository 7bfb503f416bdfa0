package vcsim

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// DiskSpec describes a disk of a test VM.
type DiskSpec struct {
	// SizeMiB is the disk's size (ignored with From).
	SizeMiB int
	// Format of the base disk: "vmfs" (descriptor and "-flat.vmdk"
	// extent, as ESXi keeps disks; the default), "monolithicFlat" or
	// "monolithicSparse" (qemu-img's own).
	Format string
	// From is a raw image the disk is made from.
	From string
	// RDM makes a raw device mapping instead: "physicalMode" or
	// "virtualMode".
	RDM string
	// Mode is the disk mode: "persistent" (default),
	// "independent_persistent", "independent_nonpersistent".
	Mode string
}

// VMSpec describes a test VM.
type VMSpec struct {
	Name  string
	Disks []DiskSpec
	// PowerOn starts it; Tools makes VMware Tools report running.
	PowerOn, Tools bool
	// IP and Hostname are what VMware Tools reports.
	IP, Hostname string
	// Folder is a VM folder under the datacenter's vm folder; Pool a
	// resource pool under the cluster's root pool (created when missing).
	Folder, Pool string
	// Tags are "category/tag" pairs attached to the VM.
	Tags []string
	// CBT enables changed block tracking at creation.
	CBT bool
	// VMX is written as the .vmx file (the simulator leaves it empty).
	VMX string
}

var flatExtentRE = regexp.MustCompile(`(?m)^RW (\d+) FLAT ("[^"]+") 0$`)

// makeDisk creates a disk file in the VM's directory and returns its
// datastore path and size in bytes.
func (s *Sim) makeDisk(t testing.TB, vm string, i int, d DiskSpec) (string, int64) {
	t.Helper()
	stem := vm
	if i > 0 {
		stem = fmt.Sprintf("%s_%d", vm, i)
	}
	dir := filepath.Join(s.Dir, vm)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dsPath := fmt.Sprintf("[%s] %s/%s.vmdk", s.Datastore, vm, stem)
	size := int64(d.SizeMiB) << 20
	if d.RDM != "" {
		// A mapping file: the LUN's data is not in the datastore.
		kind := "vmfsPassthroughRawDeviceMap"
		ext := "VMFSRDM"
		if d.RDM == "virtualMode" {
			kind, ext = "vmfsRawDeviceMap", "VMFSRDM"
		}
		desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=%q\n\nRW %d %s \"%s-rdmp.vmdk\"\n",
			kind, size/512, ext, stem)
		writeFile(t, filepath.Join(dir, stem+".vmdk"), []byte(desc))
		writeFile(t, filepath.Join(dir, stem+"-rdmp.vmdk"), nil)
		return dsPath, size
	}
	raw := d.From
	if raw == "" {
		raw = filepath.Join(t.TempDir(), "zero.raw")
		f, err := os.Create(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	st, err := os.Stat(raw)
	if err != nil {
		t.Fatal(err)
	}
	size = st.Size()
	format := d.Format
	if format == "" || format == "vmfs" {
		format = "monolithicFlat"
	}
	local := filepath.Join(dir, stem+".vmdk")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+format, raw, local)
	if d.Format == "" || d.Format == "vmfs" {
		desc, err := os.ReadFile(local)
		if err != nil {
			t.Fatal(err)
		}
		desc = bytes.Replace(desc, []byte(`createType="monolithicFlat"`), []byte(`createType="vmfs"`), 1)
		desc = flatExtentRE.ReplaceAll(desc, []byte("RW $1 VMFS $2"))
		writeFile(t, local, desc)
	}
	return dsPath, size
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Folder creates a VM folder under the datacenter's vm folder (when
// missing) and returns its inventory path.
func (s *Sim) Folder(t testing.TB, name string) string {
	t.Helper()
	ctx := context.Background()
	f := s.finder()
	p := "/" + s.Datacenter + "/vm/" + name
	if _, err := f.Folder(ctx, p); err == nil {
		return p
	}
	dc, err := f.Datacenter(ctx, s.Datacenter)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := folders.VmFolder.CreateFolder(ctx, name); err != nil {
		t.Fatalf("vcsim: folder %s: %v", name, err)
	}
	return p
}

// NewVM creates a VM as the spec says, its disks made with qemu-img in the
// datastore directory, and returns it.
func (s *Sim) NewVM(t testing.TB, spec VMSpec) *object.VirtualMachine {
	t.Helper()
	ctx := context.Background()
	f := s.finder()
	dc, err := f.Datacenter(ctx, s.Datacenter)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	folder := folders.VmFolder
	if spec.Folder != "" {
		if folder, err = f.Folder(ctx, "/"+s.Datacenter+"/vm/"+spec.Folder); err != nil {
			if folder, err = folders.VmFolder.CreateFolder(ctx, spec.Folder); err != nil {
				t.Fatalf("vcsim: folder %s: %v", spec.Folder, err)
			}
		}
	}
	cluster, err := f.ClusterComputeResource(ctx, "DC0_C0")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := cluster.ResourcePool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Pool != "" {
		if p, err := f.ResourcePool(ctx, "/"+s.Datacenter+"/host/DC0_C0/Resources/"+spec.Pool); err == nil {
			pool = p
		} else if pool, err = pool.Create(ctx, spec.Pool, types.DefaultResourceConfigSpec()); err != nil {
			t.Fatalf("vcsim: pool %s: %v", spec.Pool, err)
		}
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		t.Fatal(err)
	}
	devices = append(devices, scsi)
	changes := []types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: scsi}}
	for i, d := range spec.Disks {
		file, size := s.makeDisk(t, spec.Name, i, d)
		unit := int32(i)
		if unit >= 7 {
			unit++
		}
		disk := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: int32(-100 - i), ControllerKey: scsi.GetVirtualDevice().Key, UnitNumber: &unit},
			CapacityInKB: size / 1024, CapacityInBytes: size}
		mode := d.Mode
		if mode == "" {
			mode = string(types.VirtualDiskModePersistent)
		}
		if d.RDM != "" {
			disk.Backing = &types.VirtualDiskRawDiskMappingVer1BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file},
				CompatibilityMode:            d.RDM, DeviceName: "/vmfs/devices/disks/naa.600a0980383030305a2b4d6b2f6d6c2f",
				LunUuid: "0200000000600a0980383030305a2b4d6b2f6d6c2f4c554e20", DiskMode: mode}
		} else {
			disk.Backing = &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file},
				DiskMode: mode, ThinProvisioned: types.NewBool(true)}
		}
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk})
	}
	if net, err := f.Network(ctx, "VM Network"); err == nil {
		if backing, err := net.EthernetCardBackingInfo(ctx); err == nil {
			if nic, err := devices.CreateEthernetCard("vmxnet3", backing); err == nil {
				changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: nic})
			}
		}
	}
	cs := types.VirtualMachineConfigSpec{Name: spec.Name, GuestId: string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		NumCPUs: 2, MemoryMB: 1024, DeviceChange: changes, ChangeTrackingEnabled: types.NewBool(spec.CBT),
		Files: &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s] %s/%s.vmx", s.Datastore, spec.Name, spec.Name)}}
	task, err := folder.CreateVM(ctx, cs, pool, nil)
	if err != nil {
		t.Fatalf("vcsim: create vm %s: %v", spec.Name, err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		t.Fatalf("vcsim: create vm %s: %v", spec.Name, err)
	}
	vm := object.NewVirtualMachine(s.Client.Client, info.Result.(types.ManagedObjectReference))
	if spec.VMX != "" {
		writeFile(t, filepath.Join(s.Dir, spec.Name, spec.Name+".vmx"), []byte(spec.VMX))
	}
	if spec.PowerOn {
		task, err := vm.PowerOn(ctx)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatalf("vcsim: power on %s: %v", spec.Name, err)
		}
	}
	s.SetGuest(t, spec.Name, spec.Tools, spec.IP, spec.Hostname)
	if len(spec.Tags) > 0 {
		s.tag(t, vm, spec.Tags)
	}
	return vm
}

// SetGuest sets what VMware Tools reports for a VM.
func (s *Sim) SetGuest(t testing.TB, name string, tools bool, ip, hostname string) {
	t.Helper()
	ref := s.VM(t, name).Reference()
	vm := s.Model.Map().Get(ref).(*simulator.VirtualMachine)
	ctx := s.Model.Service.Context
	ctx.WithLock(vm, func() {
		if vm.Guest == nil {
			vm.Guest = &types.GuestInfo{}
		}
		status := types.VirtualMachineToolsRunningStatusGuestToolsNotRunning
		if tools {
			status = types.VirtualMachineToolsRunningStatusGuestToolsRunning
		}
		vm.Guest.ToolsRunningStatus = string(status)
		vm.Guest.IpAddress, vm.Guest.HostName = ip, hostname
		vm.Guest.Net = nil
		if ip != "" {
			vm.Guest.Net = []types.GuestNicInfo{{Network: "VM Network", IpAddress: []string{ip}, Connected: true}}
		}
	})
}

// tag attaches "category/tag" tags (made when missing) to a VM.
func (s *Sim) tag(t testing.TB, vm *object.VirtualMachine, names []string) {
	t.Helper()
	ctx := context.Background()
	rc := rest.NewClient(s.Client.Client)
	if err := rc.Login(ctx, url.UserPassword(User, Password)); err != nil {
		t.Fatalf("vcsim: rest login: %v", err)
	}
	defer rc.Logout(ctx)
	m := tags.NewManager(rc)
	for _, n := range names {
		cat, tag, ok := strings.Cut(n, "/")
		if !ok {
			t.Fatalf("vcsim: tag %q is not category/tag", n)
		}
		c, err := m.GetCategory(ctx, cat)
		catID := ""
		if err == nil {
			catID = c.ID
		} else if catID, err = m.CreateCategory(ctx, &tags.Category{Name: cat, Cardinality: "MULTIPLE"}); err != nil {
			t.Fatalf("vcsim: category %s: %v", cat, err)
		}
		tg, err := m.GetTagForCategory(ctx, tag, catID)
		tagID := ""
		if err == nil {
			tagID = tg.ID
		} else if tagID, err = m.CreateTag(ctx, &tags.Tag{Name: tag, CategoryID: catID}); err != nil {
			t.Fatalf("vcsim: tag %s: %v", n, err)
		}
		if err := m.AttachTag(ctx, tagID, vm.Reference()); err != nil {
			t.Fatalf("vcsim: attach %s: %v", n, err)
		}
	}
}

// Disk returns the datastore path of the VM's i-th disk as the VM uses it
// now (after a snapshot: the child disk that takes the writes).
func (s *Sim) Disk(t testing.TB, name string, i int) string {
	t.Helper()
	var mvm mo.VirtualMachine
	if err := s.VM(t, name).Properties(context.Background(), s.VM(t, name).Reference(), []string{"config.hardware.device"}, &mvm); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, d := range mvm.Config.Hardware.Device {
		if vd, ok := d.(*types.VirtualDisk); ok {
			if b, ok := vd.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				files = append(files, b.GetVirtualDeviceFileBackingInfo().FileName)
			}
		}
	}
	if i >= len(files) {
		t.Fatalf("vcsim: vm %s has %d disks", name, len(files))
	}
	return files[i]
}

// Write writes data at off into the VM's i-th disk as the guest would
// (through qemu-io, into the file the VM uses now).
func (s *Sim) Write(t testing.TB, name string, i int, off int64, data []byte) {
	t.Helper()
	local := s.LocalPath(s.Disk(t, name, i))
	cmd := fmt.Sprintf("write -P 0x%02x %d %d", data[0], off, len(data))
	if !bytes.Equal(data, bytes.Repeat(data[:1], len(data))) {
		src := filepath.Join(t.TempDir(), "data")
		writeFile(t, src, data)
		cmd = fmt.Sprintf("write -s %s %d %d", src, off, len(data))
	}
	run(t, "qemu-io", "-f", "vmdk", "-c", cmd, local)
}

// Read returns the guest-visible bytes of a datastore disk (qemu-img).
func (s *Sim) Read(t testing.TB, dsPath string) []byte {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	run(t, "qemu-img", "convert", "-U", "-f", "vmdk", "-O", "raw", s.LocalPath(dsPath), raw)
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
