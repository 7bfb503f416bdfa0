package vsphere

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// defineDoc is the configuration DefineVM takes: a VM config spec and
// where the VM goes.
type defineDoc struct {
	Version      int    `json:"version"`
	Name         string `json:"name"`
	InstanceUUID string `json:"instance_uuid"`
	// InPlace: the VM of this name and instance UUID is updated when it
	// exists (same inventory object), created otherwise.
	InPlace   bool      `json:"in_place"`
	Placement placement `json:"placement"`
	// Spec is a VirtualMachineConfigSpec in vSphere's JSON encoding.
	Spec json.RawMessage `json:"spec"`
	// Disks are the datastore paths of the disks the VM has.
	Disks []string `json:"disks,omitempty"`
}

func (d *defineDoc) encode(spec *types.VirtualMachineConfigSpec) ([]byte, error) {
	var buf bytes.Buffer
	if err := types.NewJSONEncoder(&buf).Encode(spec); err != nil {
		return nil, fmt.Errorf("encode vm spec: %w", err)
	}
	d.Spec = bytes.TrimSpace(buf.Bytes())
	return json.Marshal(d)
}

func decodeDefine(b []byte) (*defineDoc, *types.VirtualMachineConfigSpec, error) {
	var d defineDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("vsphere define: %w", err)
	}
	if d.Version != 1 || d.Name == "" || !hypervisor.ValidUUID(d.InstanceUUID) {
		return nil, nil, fmt.Errorf("vsphere define: a version 1 document with a name and an instance uuid is needed")
	}
	var spec types.VirtualMachineConfigSpec
	if err := types.NewJSONDecoder(bytes.NewReader(d.Spec)).Decode(&spec); err != nil {
		return nil, nil, fmt.Errorf("vsphere define: spec: %w", err)
	}
	spec.Name, spec.InstanceUuid = d.Name, d.InstanceUUID
	return &d, &spec, nil
}

// defaultDevices are created by vSphere with every VM: a restore does not
// add them.
func defaultDevice(d types.BaseVirtualDevice) bool {
	switch d.(type) {
	case *types.VirtualIDEController, *types.VirtualPCIController, *types.VirtualPS2Controller, *types.VirtualSIOController,
		*types.VirtualMachineVideoCard, *types.VirtualKeyboard, *types.VirtualPointingDevice, *types.VirtualMachineVMCIDevice:
		return true
	}
	return false
}

// buildSpec makes the config spec of the restored VM from the saved
// config info: its disk controllers, the planned disks attached at the
// plan's paths, network adapters on the plan's networks, CD-ROMs emptied;
// other devices are left to vSphere's defaults (a note names them).
func (c *Connector) buildSpec(ctx context.Context, rp *hypervisor.RestorePlan, sec Section, sc *savedConfig, ci *types.VirtualMachineConfigInfo, inPlace bool) (*types.VirtualMachineConfigSpec, []string, error) {
	var notes []string
	spec := &types.VirtualMachineConfigSpec{Name: rp.Name, GuestId: ci.GuestId, Version: ci.Version, Annotation: ci.Annotation,
		NumCPUs: ci.Hardware.NumCPU, NumCoresPerSocket: ci.Hardware.NumCoresPerSocket, MemoryMB: int64(ci.Hardware.MemoryMB),
		Firmware: ci.Firmware, InstanceUuid: rp.UUID, ChangeTrackingEnabled: ci.ChangeTrackingEnabled,
		Files: &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s] %s/%s.vmx", sec.Datastore, rp.Name, rp.Name)}}
	if rp.MemoryMiB > 0 {
		spec.MemoryMB = int64(rp.MemoryMiB)
	}
	if rp.VCPUs > 0 {
		spec.NumCPUs = int32(rp.VCPUs)
		spec.NumCoresPerSocket = types.NewInt32(1)
	}
	if inPlace {
		spec.Uuid = ci.Uuid
		spec.Files.VmPathName = ci.Files.VmPathName
	} else {
		spec.Uuid = hypervisor.NewUUID()
	}
	devices := object.VirtualDeviceList(ci.Hardware.Device)
	planned := map[string]hypervisor.PlanDisk{}
	for _, d := range rp.Disks {
		if !d.Skip {
			planned[d.Target] = d
		}
	}
	targets := map[int32]string{} // named before controllers get new keys
	for _, dev := range devices {
		if d, ok := dev.(*types.VirtualDisk); ok {
			targets[d.Key] = diskTarget(devices, d)
		}
	}
	keys := map[int32]int32{}
	next := int32(-100)
	newKey := func(old int32) int32 {
		next--
		keys[old] = next
		return next
	}
	add := func(d types.BaseVirtualDevice) {
		spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: d})
	}
	var skipped []string
	// Controllers first, so that disks can refer to their new keys.
	for _, dev := range devices {
		switch dev.(type) {
		case types.BaseVirtualSCSIController, *types.VirtualAHCIController, types.BaseVirtualSATAController, *types.VirtualNVMEController:
			v := dev.GetVirtualDevice()
			v.Key = newKey(v.Key)
			dev.(types.BaseVirtualController).GetVirtualController().Device = nil
			add(dev)
		}
	}
	nicIndex := 0
	for _, dev := range devices {
		v := dev.GetVirtualDevice()
		ctlKey := v.ControllerKey
		if k, ok := keys[ctlKey]; ok {
			ctlKey = k
		}
		switch d := dev.(type) {
		case types.BaseVirtualSCSIController, *types.VirtualAHCIController, types.BaseVirtualSATAController, *types.VirtualNVMEController:
		case *types.VirtualDisk:
			target := targets[d.Key]
			pd, ok := planned[target]
			if !ok {
				notes = append(notes, fmt.Sprintf("disk %s not restored (skipped, or the point holds no data for it)", target))
				continue
			}
			mode := string(types.VirtualDiskModePersistent)
			if fb, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && fb.DiskMode != "" {
				mode = fb.DiskMode
			}
			disk := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: newKey(v.Key), ControllerKey: ctlKey, UnitNumber: v.UnitNumber,
				Backing: &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: pd.Path},
					DiskMode: mode, ThinProvisioned: types.NewBool(true)}},
				CapacityInKB: pd.Size / 1024, CapacityInBytes: pd.Size}
			add(disk)
		case types.BaseVirtualEthernetCard:
			pn := rp.Networks[nicIndex]
			nicIndex++
			card := d.GetVirtualEthernetCard()
			card.Key, card.ControllerKey = newKey(v.Key), ctlKey
			card.ExternalId = ""
			if pn.MAC != "" {
				card.AddressType, card.MacAddress = string(types.VirtualEthernetCardMacTypeManual), pn.MAC
			} else {
				card.AddressType, card.MacAddress = string(types.VirtualEthernetCardMacTypeGenerated), ""
			}
			if pn.Type != netOpaque && (pn.To != pn.From || !inPlace) {
				backing, err := c.networkBacking(ctx, pn.To)
				if err != nil {
					return nil, nil, err
				}
				card.Backing = backing
			}
			add(dev)
		case *types.VirtualCdrom:
			cd := &types.VirtualCdrom{VirtualDevice: types.VirtualDevice{Key: newKey(v.Key), ControllerKey: ctlKey, UnitNumber: v.UnitNumber,
				Backing:     &types.VirtualCdromRemotePassthroughBackingInfo{},
				Connectable: &types.VirtualDeviceConnectInfo{AllowGuestControl: true}}}
			add(cd)
			notes = append(notes, fmt.Sprintf("cd-rom %s restored empty", devices.Name(dev)))
		default:
			if !defaultDevice(dev) {
				skipped = append(skipped, devices.Type(dev))
			}
		}
	}
	if len(skipped) > 0 {
		slices.Sort(skipped)
		notes = append(notes, "devices not restored (vSphere's defaults apply): "+strings.Join(slices.Compact(skipped), ", "))
	}
	return spec, notes, nil
}

// networkBacking returns the backing of a NIC on the named network.
func (c *Connector) networkBacking(ctx context.Context, name string) (types.BaseVirtualDeviceBackingInfo, error) {
	n, err := c.finder.Network(ctx, name)
	if err != nil {
		return nil, hypervisor.PlanError("networks", "network %q: %v", name, err)
	}
	b, err := n.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	return b, nil
}

// DefineVM implements hypervisor.Restorer. A VM of the document's name and
// instance UUID is updated in place: powered off, its memory and CPUs set,
// disks not in the document detached (files kept), missing ones attached,
// changed block tracking reset (its disks were replaced). Otherwise the
// VM is created in the document's folder, resource pool and host.
func (c *Connector) DefineVM(ctx context.Context, config []byte) (hypervisor.VM, error) {
	doc, spec, err := decodeDefine(config)
	if err != nil {
		return hypervisor.VM{}, err
	}
	vms, err := c.ListVMs(ctx)
	if err != nil {
		return hypervisor.VM{}, err
	}
	var existing *hypervisor.VM
	for i, vm := range vms {
		sameUUID := strings.EqualFold(vm.UUID, doc.InstanceUUID)
		switch {
		case vm.Name == doc.Name && !sameUUID:
			return hypervisor.VM{}, fmt.Errorf("vsphere define %s: %w: a vm of that name has uuid %s", doc.Name, hypervisor.ErrExists, vm.UUID)
		case sameUUID && vm.Name != doc.Name:
			return hypervisor.VM{}, fmt.Errorf("vsphere define %s: %w: uuid %s belongs to vm %s", doc.Name, hypervisor.ErrExists, doc.InstanceUUID, vm.Name)
		case sameUUID:
			existing = &vms[i]
		}
	}
	if existing != nil {
		if err := c.replace(ctx, *existing, doc, spec); err != nil {
			return hypervisor.VM{}, err
		}
	} else if err := c.create(ctx, doc, spec); err != nil {
		return hypervisor.VM{}, err
	}
	return c.LookupVM(ctx, doc.InstanceUUID)
}

func (c *Connector) create(ctx context.Context, doc *defineDoc, spec *types.VirtualMachineConfigSpec) error {
	folder, err := c.vmFolder(ctx, doc.Placement.Folder)
	if err != nil {
		return err
	}
	var pool *object.ResourcePool
	if doc.Placement.ResourcePool != "" {
		pool, err = c.finder.ResourcePool(ctx, doc.Placement.ResourcePool)
	} else if pool, err = c.finder.DefaultResourcePool(ctx); err != nil {
		// Several clusters or hosts: the first root pool.
		if pools, lerr := c.finder.ResourcePoolList(ctx, "*/Resources"); lerr == nil && len(pools) > 0 {
			slices.SortFunc(pools, func(a, b *object.ResourcePool) int { return strings.Compare(a.InventoryPath, b.InventoryPath) })
			pool, err = pools[0], nil
		}
	}
	if err != nil {
		return fmt.Errorf("vsphere define %s: resource pool %q: %w", doc.Name, doc.Placement.ResourcePool, err)
	}
	var host *object.HostSystem
	if doc.Placement.Host != "" {
		if host, err = c.finder.HostSystem(ctx, doc.Placement.Host); err != nil {
			c.log.Warn("vsphere: the vm's host is gone: vSphere chooses one in the pool", "host", doc.Placement.Host, "err", err)
			host = nil
		}
	}
	if spec.Files == nil || spec.Files.VmPathName == "" {
		spec.Files = &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s] %s/%s.vmx", doc.Placement.Datastore, doc.Name, doc.Name)}
	}
	task, err := folder.CreateVM(ctx, *spec, pool, host)
	if err == nil {
		_, err = task.WaitForResult(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("vsphere define %s: create vm: %w", doc.Name, mapErr("", err))
	}
	c.log.Info("vm defined", "vm", doc.Name, "uuid", doc.InstanceUUID)
	return nil
}

func (c *Connector) vmFolder(ctx context.Context, p string) (*object.Folder, error) {
	if p == "" {
		folders, err := c.dc.Folders(ctx)
		if err != nil {
			return nil, err
		}
		return folders.VmFolder, nil
	}
	if !strings.HasPrefix(p, "/") {
		p = c.dc.InventoryPath + "/vm/" + p
	}
	f, err := c.finder.Folder(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("vsphere: vm folder %q: %w (create it first, or give another with --folder)", p, err)
	}
	return f, nil
}

// replace updates an existing (shut-off) VM in place.
func (c *Connector) replace(ctx context.Context, vm hypervisor.VM, doc *defineDoc, spec *types.VirtualMachineConfigSpec) error {
	if vm.State == hypervisor.PowerOn {
		return fmt.Errorf("vsphere define %s: the vm is running: power it off first: %w", vm.Name, hypervisor.ErrBusy)
	}
	obj, err := c.vmObject(ctx, vm)
	if err != nil {
		return err
	}
	var m mo.VirtualMachine
	if err := obj.Properties(ctx, obj.Reference(), []string{"config.hardware.device", "config.changeTrackingEnabled"}, &m); err != nil {
		return mapErr("vsphere "+vm.Name, err)
	}
	cur := object.VirtualDeviceList(m.Config.Hardware.Device)
	want := map[string]bool{}
	for _, p := range doc.Disks {
		want[p] = true
	}
	upd := types.VirtualMachineConfigSpec{MemoryMB: spec.MemoryMB, NumCPUs: spec.NumCPUs, NumCoresPerSocket: spec.NumCoresPerSocket}
	have := map[string]bool{}
	described := describeDisks(cur)
	for i, dev := range cur.SelectByType((*types.VirtualDisk)(nil)) {
		file := ""
		if b, ok := dev.GetVirtualDevice().Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			file = b.GetVirtualDeviceFileBackingInfo().FileName
		}
		if want[file] || !described[i].Protectable {
			// Disks the point could not hold (RDMs, independent disks)
			// stay attached as they are.
			have[file] = true
			continue
		}
		upd.DeviceChange = append(upd.DeviceChange, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: dev})
	}
	for _, ch := range spec.DeviceChange {
		d, ok := ch.GetVirtualDeviceConfigSpec().Device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		file := d.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
		if have[file] {
			continue
		}
		ctl := matchController(cur, spec, d.ControllerKey)
		if ctl == nil {
			return fmt.Errorf("vsphere define %s: disk %s: the vm has no matching controller now: restore beside it with --name", vm.Name, file)
		}
		d.ControllerKey = ctl.GetVirtualController().Key
		upd.DeviceChange = append(upd.DeviceChange, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: d})
	}
	if err := reconfigure(ctx, obj, upd); err != nil {
		return fmt.Errorf("vsphere define %s: %w", vm.Name, err)
	}
	if m.Config.ChangeTrackingEnabled != nil && *m.Config.ChangeTrackingEnabled {
		// The disks were replaced: restart tracking, so that no change id
		// of before the restore is taken for a base.
		for _, on := range []bool{false, true} {
			if err := reconfigure(ctx, obj, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(on)}); err != nil {
				return fmt.Errorf("vsphere define %s: reset changed block tracking: %w", vm.Name, err)
			}
		}
	}
	c.log.Info("vm replaced in place", "vm", vm.Name, "uuid", vm.UUID)
	return nil
}

// matchController finds the VM's controller equivalent to the one a spec
// device refers to (same type and bus number).
func matchController(cur object.VirtualDeviceList, spec *types.VirtualMachineConfigSpec, key int32) types.BaseVirtualController {
	var want types.BaseVirtualController
	for _, ch := range spec.DeviceChange {
		if c, ok := ch.GetVirtualDeviceConfigSpec().Device.(types.BaseVirtualController); ok && c.GetVirtualController().Key == key {
			want = c
		}
	}
	for _, dev := range cur {
		c, ok := dev.(types.BaseVirtualController)
		if !ok {
			continue
		}
		if want == nil && c.GetVirtualController().Key == key {
			return c
		}
		if want != nil && cur.Type(dev) == cur.Type(want.(types.BaseVirtualDevice)) && c.GetVirtualController().BusNumber == want.GetVirtualController().BusNumber {
			return c
		}
	}
	return nil
}

func reconfigure(ctx context.Context, vm *object.VirtualMachine, spec types.VirtualMachineConfigSpec) error {
	task, err := vm.Reconfigure(ctx, spec)
	if err == nil {
		err = task.Wait(ctx)
	}
	return err
}

// UndefineVM implements hypervisor.Restorer: the VM is powered off and
// unregistered; its files (disks, .vmx, snapshot files) stay on the
// datastore.
func (c *Connector) UndefineVM(ctx context.Context, key string) error {
	vm, err := c.LookupVM(ctx, key)
	if err != nil {
		return err
	}
	obj, err := c.vmObject(ctx, vm)
	if err != nil {
		return err
	}
	if vm.State != hypervisor.PowerOff {
		if err := c.power(ctx, obj, false); err != nil {
			return err
		}
	}
	if err := obj.Unregister(ctx); err != nil {
		return mapErr("vsphere unregister "+vm.Name, err)
	}
	c.log.Info("vm unregistered", "vm", vm.Name)
	return nil
}

// StartVM implements hypervisor.Restorer.
func (c *Connector) StartVM(ctx context.Context, key string) error {
	return c.setPower(ctx, key, true)
}

// StopVM implements hypervisor.Restorer: a hard power off.
func (c *Connector) StopVM(ctx context.Context, key string) error {
	return c.setPower(ctx, key, false)
}

func (c *Connector) setPower(ctx context.Context, key string, on bool) error {
	vm, err := c.LookupVM(ctx, key)
	if err != nil {
		return err
	}
	if (vm.State == hypervisor.PowerOn) == on {
		return nil
	}
	obj, err := c.vmObject(ctx, vm)
	if err != nil {
		return err
	}
	return c.power(ctx, obj, on)
}

func (c *Connector) power(ctx context.Context, vm *object.VirtualMachine, on bool) error {
	var task *object.Task
	var err error
	if on {
		task, err = vm.PowerOn(ctx)
	} else {
		task, err = vm.PowerOff(ctx)
	}
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return mapErr("vsphere power", err)
	}
	return nil
}
