package vsphere

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// vmProps are the VM properties inventory reads.
var vmProps = []string{"name", "config.instanceUuid", "config.uuid", "config.hardware.device", "config.changeTrackingEnabled",
	"runtime.powerState", "guest.toolsRunningStatus", "guest.ipAddress", "guest.hostName", "guest.net", "parent",
	"resourcePool", "snapshot"}

// vms retrieves every VM of the datacenter.
func (c *Connector) vms(ctx context.Context) ([]mo.VirtualMachine, error) {
	v, err := view.NewManager(c.vc).CreateContainerView(ctx, c.dc.Reference(), []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, fmt.Errorf("vsphere list vms: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var out []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, vmProps, &out); err != nil {
		return nil, fmt.Errorf("vsphere list vms: %w", err)
	}
	return slices.DeleteFunc(out, func(m mo.VirtualMachine) bool { return m.Config == nil }), nil
}

// inventoryPaths maps folders, pools and compute resources of the
// datacenter to their inventory paths ("/DC/vm/prod").
func (c *Connector) inventoryPaths(ctx context.Context) (map[types.ManagedObjectReference]string, error) {
	v, err := view.NewManager(c.vc).CreateContainerView(ctx, c.dc.Reference(),
		[]string{"Folder", "ResourcePool", "VirtualApp", "ComputeResource", "ClusterComputeResource"}, true)
	if err != nil {
		return nil, fmt.Errorf("vsphere inventory: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var ents []mo.ManagedEntity
	if err := v.Retrieve(ctx, []string{"ManagedEntity"}, []string{"name", "parent"}, &ents); err != nil {
		return nil, fmt.Errorf("vsphere inventory: %w", err)
	}
	byRef := map[types.ManagedObjectReference]mo.ManagedEntity{}
	for _, e := range ents {
		byRef[e.Self] = e
	}
	paths := map[types.ManagedObjectReference]string{c.dc.Reference(): c.dc.InventoryPath}
	var pathOf func(ref types.ManagedObjectReference, depth int) string
	pathOf = func(ref types.ManagedObjectReference, depth int) string {
		if p, ok := paths[ref]; ok {
			return p
		}
		e, ok := byRef[ref]
		if !ok || e.Parent == nil || depth > 64 {
			return ""
		}
		p := pathOf(*e.Parent, depth+1) + "/" + e.Name
		paths[ref] = p
		return p
	}
	for ref := range byRef {
		pathOf(ref, 0)
	}
	return paths, nil
}

// vmTags returns "category/tag" names attached to each VM (none when the
// vAPI is unavailable).
func (c *Connector) vmTags(ctx context.Context, refs []types.ManagedObjectReference) map[types.ManagedObjectReference][]string {
	out := map[types.ManagedObjectReference][]string{}
	rc, err := c.restClient(ctx)
	if err != nil || len(refs) == 0 {
		return out
	}
	m := tags.NewManager(rc)
	objs := make([]mo.Reference, len(refs))
	for i := range refs {
		objs[i] = refs[i]
	}
	attached, err := m.GetAttachedTagsOnObjects(ctx, objs)
	if err != nil {
		c.log.Warn("vsphere: tags not read", "err", err)
		return out
	}
	cats := map[string]string{}
	if list, err := m.GetCategories(ctx); err == nil {
		for _, cat := range list {
			cats[cat.ID] = cat.Name
		}
	}
	for _, a := range attached {
		ref := a.ObjectID.Reference()
		for _, t := range a.Tags {
			out[ref] = append(out[ref], cats[t.CategoryID]+"/"+t.Name)
		}
	}
	return out
}

// ListVMs implements hypervisor.Connector.
func (c *Connector) ListVMs(ctx context.Context) ([]hypervisor.VM, error) {
	ms, err := c.vms(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := c.inventoryPaths(ctx)
	if err != nil {
		return nil, err
	}
	refs := make([]types.ManagedObjectReference, len(ms))
	for i, m := range ms {
		refs[i] = m.Self
	}
	tagged := c.vmTags(ctx, refs)
	out := make([]hypervisor.VM, 0, len(ms))
	for _, m := range ms {
		out = append(out, toVM(m, paths, tagged[m.Self]))
	}
	return out, nil
}

// LookupVM implements hypervisor.Connector: by name, instance UUID, BIOS
// UUID or MoRef ("vm-42").
func (c *Connector) LookupVM(ctx context.Context, key string) (hypervisor.VM, error) {
	vms, err := c.ListVMs(ctx)
	if err != nil {
		return hypervisor.VM{}, err
	}
	vm, err := pick(vms, key)
	if err != nil {
		return hypervisor.VM{}, err
	}
	return vm, nil
}

// pick finds one VM by name, instance UUID, BIOS UUID or MoRef.
func pick(vms []hypervisor.VM, key string) (hypervisor.VM, error) {
	var byName []hypervisor.VM
	for _, vm := range vms {
		switch {
		case strings.EqualFold(vm.UUID, key), slices.Contains(vm.Attributes["moref"], key),
			slices.ContainsFunc(vm.Attributes["bios_uuid"], func(u string) bool { return strings.EqualFold(u, key) }):
			return vm, nil
		case vm.Name == key:
			byName = append(byName, vm)
		}
	}
	switch len(byName) {
	case 0:
		return hypervisor.VM{}, fmt.Errorf("vsphere: %w: %s", hypervisor.ErrVMNotFound, key)
	case 1:
		return byName[0], nil
	}
	return hypervisor.VM{}, fmt.Errorf("vsphere: %d vms are named %s (in different folders): name one by uuid: or moref: (kura vm list)", len(byName), key)
}

// toVM describes a VM for kura.
func toVM(m mo.VirtualMachine, paths map[types.ManagedObjectReference]string, tagNames []string) hypervisor.VM {
	vm := hypervisor.VM{Name: m.Name, UUID: m.Config.InstanceUuid, Persistent: true,
		Attributes: map[string][]string{"moref": {m.Self.Value}, "bios_uuid": {m.Config.Uuid}}}
	switch m.Runtime.PowerState {
	case types.VirtualMachinePowerStatePoweredOn:
		vm.State = hypervisor.PowerOn
	case types.VirtualMachinePowerStateSuspended:
		vm.State = hypervisor.PowerPaused
	default:
		vm.State = hypervisor.PowerOff
	}
	if g := m.Guest; g != nil {
		vm.HasAgent = vm.State == hypervisor.PowerOn && g.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		vm.DNSName = g.HostName
		var addrs []string
		if g.IpAddress != "" {
			addrs = append(addrs, g.IpAddress)
		}
		for _, n := range g.Net {
			addrs = append(addrs, n.IpAddress...)
		}
		for _, a := range addrs {
			if ip := net.ParseIP(a); ip != nil && !slices.Contains(vm.Addresses, ip.String()) {
				vm.Addresses = append(vm.Addresses, ip.String())
			}
		}
	}
	if m.Parent != nil && paths[*m.Parent] != "" {
		vm.Attributes["folder"] = []string{paths[*m.Parent]}
	}
	if m.ResourcePool != nil && paths[*m.ResourcePool] != "" {
		vm.Attributes["resource_pool"] = []string{paths[*m.ResourcePool]}
	}
	if len(tagNames) > 0 {
		vm.Attributes["tag"] = tagNames
	}
	vm.Disks = describeDisks(object.VirtualDeviceList(m.Config.Hardware.Device))
	return vm
}

// diskTarget names a disk after its controller and unit as the .vmx does
// ("scsi0:1", "sata0:0", "nvme0:0", "ide0:1").
func diskTarget(devices object.VirtualDeviceList, d *types.VirtualDisk) string {
	kind, bus := "disk", int32(0)
	if ctl, ok := devices.FindByKey(d.ControllerKey).(types.BaseVirtualController); ok {
		bus = ctl.GetVirtualController().BusNumber
		switch ctl.(type) {
		case types.BaseVirtualSCSIController:
			kind = "scsi"
		case *types.VirtualAHCIController, types.BaseVirtualSATAController:
			kind = "sata"
		case *types.VirtualNVMEController:
			kind = "nvme"
		case *types.VirtualIDEController:
			kind = "ide"
		}
	}
	unit := int32(0)
	if d.UnitNumber != nil {
		unit = *d.UnitNumber
	}
	return fmt.Sprintf("%s%d:%d", kind, bus, unit)
}

// diskSize is a disk's capacity in bytes.
func diskSize(d *types.VirtualDisk) int64 {
	if d.CapacityInBytes > 0 {
		return d.CapacityInBytes
	}
	return d.CapacityInKB * 1024
}

// describeDisks lists a VM's disks, saying which kura can protect: disks
// in datastore files (flat or sparse VMDK), not independent (snapshots
// leave independent disks out), not raw device mappings.
func describeDisks(devices object.VirtualDeviceList) []hypervisor.Disk {
	var out []hypervisor.Disk
	for _, dev := range devices {
		d, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		hd := hypervisor.Disk{Target: diskTarget(devices, d), Type: "file", Format: "vmdk", Device: "disk", Size: diskSize(d), Protectable: true}
		mode := ""
		switch b := d.Backing.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			hd.Source, mode = b.FileName, b.DiskMode
		case *types.VirtualDiskSparseVer2BackingInfo:
			hd.Source, mode = b.FileName, b.DiskMode
		case *types.VirtualDiskSeSparseBackingInfo:
			hd.Source, hd.Protectable = b.FileName, false
			hd.Reason = "seSparse disk (a linked clone or a VMFS-6 snapshot delta): only VMware's own transports (VDDK) read that format"
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			hd.Source, hd.Type, hd.Protectable = b.FileName, "rdm", false
			if b.CompatibilityMode == string(types.VirtualDiskCompatibilityModePhysicalMode) {
				hd.Reason = "raw device mapping in physical compatibility mode: vSphere cannot snapshot it, so no consistent copy can be read (as with VMware Consolidated Backup)"
			} else {
				hd.Reason = "raw device mapping in virtual compatibility mode: its data is on the LUN, not in a datastore file kura reads over HTTP (needs the SAN or VDDK transport)"
			}
		default:
			hd.Protectable = false
			hd.Reason = fmt.Sprintf("disk backing %T is not a datastore file", d.Backing)
		}
		if strings.HasPrefix(mode, "independent") {
			hd.Protectable = false
			hd.Reason = fmt.Sprintf("independent disk (%s): vSphere snapshots leave it out, so no point-in-time copy can be read", mode)
		}
		out = append(out, hd)
	}
	return out
}

// vmObject finds the VM a hypervisor.VM names (by MoRef, else by UUID).
func (c *Connector) vmObject(ctx context.Context, vm hypervisor.VM) (*object.VirtualMachine, error) {
	if refs := vm.Attributes["moref"]; len(refs) == 1 {
		return object.NewVirtualMachine(c.vc, types.ManagedObjectReference{Type: "VirtualMachine", Value: refs[0]}), nil
	}
	key := vm.UUID
	if key == "" {
		key = vm.Name
	}
	found, err := c.LookupVM(ctx, key)
	if err != nil {
		return nil, err
	}
	return object.NewVirtualMachine(c.vc, types.ManagedObjectReference{Type: "VirtualMachine", Value: found.Attributes["moref"][0]}), nil
}
