package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/vmdk"
)

// closeTimeout bounds removing the snapshot after a cancelled job.
const closeTimeout = 2 * time.Minute

// session is a backup session: a kura snapshot of the VM whose disks are
// read from the datastore.
type session struct {
	c           *Connector
	vm          *object.VirtualMachine
	name        string
	snap        types.ManagedObjectReference
	snapName    string
	disks       []hypervisor.SessionDisk
	opened      []*vmdk.Disk
	config      []byte
	consistency hypervisor.Consistency
	checkpoint  string
	notes       []string
	closed      bool
}

func (s *session) Disks() []hypervisor.SessionDisk     { return s.disks }
func (s *session) Config() ([]byte, string)            { return s.config, ConfigFormat }
func (s *session) Consistency() hypervisor.Consistency { return s.consistency }
func (s *session) Checkpoint() string                  { return s.checkpoint }
func (s *session) Notes() []string                     { return s.notes }

// Close removes the snapshot, whatever success says: the change ids the
// disks reported stay valid (vSphere keeps tracking), and nothing else
// was changed on the VM.
func (s *session) Close(ctx context.Context, _ bool) error {
	if s.closed {
		return nil
	}
	s.closed = true
	for _, d := range s.opened {
		_ = d.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	err := s.c.removeSnapshot(ctx, s.snap)
	liveSnaps.Delete(s.snapName)
	return err
}

// removeSnapshot removes one snapshot, consolidating its delta disks.
func (c *Connector) removeSnapshot(ctx context.Context, ref types.ManagedObjectReference) error {
	res, err := methods.RemoveSnapshot_Task(ctx, c.vc, &types.RemoveSnapshot_Task{This: ref, RemoveChildren: false, Consolidate: types.NewBool(true)})
	if err == nil {
		err = object.NewTask(c.vc, res.Returnval).Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", ref.Value, err)
	}
	return nil
}

// BeginBackup implements hypervisor.Connector: changed block tracking is
// enabled when off (that backup is then full), a kura snapshot is taken
// (quiesced through VMware Tools when possible), and each protected disk
// of the snapshot is read from its datastore files by HTTP range
// requests; with base change ids only the areas QueryChangedDiskAreas
// reports are read.
func (c *Connector) BeginBackup(ctx context.Context, vm hypervisor.VM, opts hypervisor.BackupOptions) (hypervisor.BackupSession, error) {
	if opts.Consistency == hypervisor.ModePause {
		return nil, fmt.Errorf("vsphere %s: consistency pause: %w (use auto, application or crash)", vm.Name, hypervisor.ErrUnsupported)
	}
	if opts.NewCheckpoint == "" || !strings.HasPrefix(opts.NewCheckpoint, Prefix) {
		return nil, fmt.Errorf("vsphere %s: snapshot name %q must start with %s", vm.Name, opts.NewCheckpoint, Prefix)
	}
	obj, err := c.vmObject(ctx, vm)
	if err != nil {
		return nil, err
	}
	var m mo.VirtualMachine
	if err := obj.Properties(ctx, obj.Reference(), []string{"name", "config", "snapshot", "runtime.powerState", "guest.toolsRunningStatus", "parent", "resourcePool", "runtime.host"}, &m); err != nil {
		return nil, mapErr("vsphere "+vm.Name, err)
	}
	if m.Config == nil {
		return nil, fmt.Errorf("vsphere %s: vm has no configuration (inaccessible?): %w", vm.Name, hypervisor.ErrUnsupported)
	}
	s := &session{c: c, vm: obj, name: m.Name}
	if err := c.preexisting(ctx, s, m.Snapshot, opts.Preexisting); err != nil {
		return nil, err
	}
	cbtWasOff := m.Config.ChangeTrackingEnabled == nil || !*m.Config.ChangeTrackingEnabled
	if cbtWasOff {
		if err := c.enableCBT(ctx, obj); err != nil {
			return nil, fmt.Errorf("vsphere %s: enable changed block tracking: %w", vm.Name, err)
		}
		s.notes = append(s.notes, "changed block tracking was off: enabled; this backup reads every disk in full")
		if opts.BaseCheckpoint != "" {
			return nil, fmt.Errorf("vsphere %s: base %s: changed block tracking was off: %w", vm.Name, opts.BaseCheckpoint, hypervisor.ErrCheckpointMissing)
		}
	}
	on := m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	tools := m.Guest != nil && m.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
	if err := c.snapshot(ctx, s, opts.NewCheckpoint, opts.Consistency, on, tools); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close(ctx, false)
		}
	}()
	if err := c.openSession(ctx, s, m, opts); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// preexisting deals with the kura snapshots already on the VM. One of a
// live session (this or another kura process still running) makes the VM
// busy. One of a killed run is removed, whatever repository it was for: a
// snapshot holds no change-tracking state (change ids live in the disks),
// only delta disks that grow. One whose session cannot be checked from
// here (another host's or without an owner line, younger than a day)
// fails the backup, unless the policy is delete.
func (c *Connector) preexisting(ctx context.Context, s *session, info *types.VirtualMachineSnapshotInfo, policy hypervisor.PreexistingPolicy) error {
	if info == nil {
		return nil
	}
	for _, k := range kuraSnapshots(info.RootSnapshotList) {
		name, taken := k.tree.Name, k.tree.CreateTime.Format(time.RFC3339)
		var note string
		switch {
		case k.state == stateLive:
			return fmt.Errorf("vsphere %s: backup snapshot %s of %s is in use: another backup of this VM is running: %w",
				s.name, name, k.who(), hypervisor.ErrBusy)
		case k.state == stateDead:
			note = fmt.Sprintf("removed backup snapshot %s a killed run (%s, %s) left on the VM", name, k.who(), taken)
		case policy == hypervisor.PreexistingDelete:
			note = fmt.Sprintf("pre-existing backup snapshot %s removed (policy delete; taken %s by %s)", name, taken, k.who())
		default:
			return fmt.Errorf("vsphere %s: backup snapshot %s of %s (taken %s) exists and this host cannot tell whether its run goes on: %w; if it does not, run kura cleanup, or back up with --preexisting-snapshot delete",
				s.name, name, k.who(), taken, hypervisor.ErrBusy)
		}
		if err := c.removeSnapshot(ctx, k.tree.Snapshot); err != nil {
			return fmt.Errorf("vsphere %s: pre-existing snapshot %s: %w", s.name, name, err)
		}
		c.log.Warn("removed a pre-existing backup snapshot", "vm", s.name, "snapshot", name, "owner", k.who())
		s.notes = append(s.notes, note)
	}
	return nil
}

func (c *Connector) enableCBT(ctx context.Context, obj *object.VirtualMachine) error {
	task, err := obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(true)})
	if err == nil {
		err = task.Wait(ctx)
	}
	return err
}

// snapshot takes the session's snapshot, quiesced through VMware Tools
// when the mode and the guest allow, else crash-consistent (recorded).
func (c *Connector) snapshot(ctx context.Context, s *session, name string, mode hypervisor.ConsistencyMode, on, tools bool) error {
	quiesce := on && mode != hypervisor.ModeCrash
	switch {
	case !on:
		s.consistency = hypervisor.ConsistencyOff
	case mode == hypervisor.ModeCrash:
		s.consistency = hypervisor.ConsistencyCrash
	case !tools && mode == hypervisor.ModeApplication:
		return fmt.Errorf("vsphere %s: VMware Tools is not running: %w", s.name, hypervisor.ErrNoAgent)
	case !tools:
		quiesce = false
		s.consistency = hypervisor.ConsistencyCrash
		s.notes = append(s.notes, "VMware Tools not running: crash-consistent snapshot")
	default:
		s.consistency = hypervisor.ConsistencyApplication
	}
	desc := description()
	liveSnaps.Store(name, true)
	ref, err := c.createSnapshot(ctx, s.vm, name, desc, quiesce)
	if err != nil && quiesce {
		if mode == hypervisor.ModeApplication {
			return fmt.Errorf("vsphere %s: quiesced snapshot: %w: %w", s.name, hypervisor.ErrNoAgent, err)
		}
		s.consistency = hypervisor.ConsistencyCrash
		s.notes = append(s.notes, fmt.Sprintf("quiescing through VMware Tools failed (%v): crash-consistent snapshot", err))
		ref, err = c.createSnapshot(ctx, s.vm, name, desc, false)
	}
	if err != nil {
		liveSnaps.Delete(name)
		return fmt.Errorf("vsphere %s: create snapshot: %w", s.name, mapErr("", err))
	}
	s.snap, s.snapName = ref, name
	return nil
}

func (c *Connector) createSnapshot(ctx context.Context, vm *object.VirtualMachine, name, desc string, quiesce bool) (types.ManagedObjectReference, error) {
	task, err := vm.CreateSnapshot(ctx, name, desc, false, quiesce)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return types.ManagedObjectReference{}, fmt.Errorf("snapshot task returned %T", info.Result)
	}
	return ref, nil
}

// openSession opens every protected disk of the snapshot and computes its
// extents, and captures the configuration.
func (c *Connector) openSession(ctx context.Context, s *session, m mo.VirtualMachine, opts hypervisor.BackupOptions) error {
	var snap mo.VirtualMachineSnapshot
	if err := s.vm.Properties(ctx, s.snap, []string{"config"}, &snap); err != nil {
		return fmt.Errorf("vsphere %s: snapshot config: %w", s.name, err)
	}
	devices := object.VirtualDeviceList(snap.Config.Hardware.Device)
	described := describeDisks(devices)
	sc := &savedConfig{}
	incremental := false
	for _, dev := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		d := dev.(*types.VirtualDisk)
		hd := described[slices.IndexFunc(described, func(x hypervisor.Disk) bool { return x.Target == diskTarget(devices, d) })]
		if !hd.Protectable || (len(opts.Disks) > 0 && !slices.Contains(opts.Disks, hd.Target)) {
			continue
		}
		b := d.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo()
		changeID := backingChangeID(d.Backing)
		p, err := parseDSPath(b.FileName)
		if err != nil {
			return err
		}
		disk, err := c.openDisk(ctx, p)
		if err != nil {
			return fmt.Errorf("vsphere %s: disk %s (%s): %w", s.name, hd.Target, b.FileName, err)
		}
		s.opened = append(s.opened, disk)
		hd.Size = disk.Size()
		sd := hypervisor.SessionDisk{Disk: hd, Reader: disk, ChangeID: changeID}
		base := opts.BaseChangeIDs[hd.Target]
		switch {
		case changeID != "" && base != "" && opts.BaseCheckpoint != "":
			areas, err := c.changedAreas(ctx, s, d.Key, hd.Size, base)
			if err != nil {
				return fmt.Errorf("vsphere %s: disk %s: changes since %s: %w: %w", s.name, hd.Target, base, hypervisor.ErrCheckpointMissing, err)
			}
			sd.Extents, sd.Incremental, incremental = toExtents(areas, hd.Size, hypervisor.ExtentData, hypervisor.ExtentUnchanged), true, true
		case changeID != "":
			areas, err := c.changedAreas(ctx, s, d.Key, hd.Size, "*")
			if err != nil {
				return fmt.Errorf("vsphere %s: disk %s: areas in use: %w", s.name, hd.Target, err)
			}
			sd.Extents = toExtents(areas, hd.Size, hypervisor.ExtentData, hypervisor.ExtentZero)
		default:
			alloc, err := disk.Allocated()
			if err != nil {
				return fmt.Errorf("vsphere %s: disk %s: %w", s.name, hd.Target, err)
			}
			sd.Extents = toExtents(alloc, hd.Size, hypervisor.ExtentData, hypervisor.ExtentZero)
			s.notes = append(s.notes, fmt.Sprintf("disk %s has no change id yet: read in full", hd.Target))
		}
		s.disks = append(s.disks, sd)
		sc.Disks = append(sc.Disks, savedDisk{Target: hd.Target, Key: d.Key, File: b.FileName, Capacity: hd.Size, ChangeID: changeID})
	}
	if opts.BaseCheckpoint != "" && !incremental && len(opts.BaseChangeIDs) == 0 {
		return fmt.Errorf("vsphere %s: base %s has no change ids: %w", s.name, opts.BaseCheckpoint, hypervisor.ErrCheckpointMissing)
	}
	if slices.ContainsFunc(s.disks, func(d hypervisor.SessionDisk) bool { return d.ChangeID != "" }) {
		s.checkpoint = opts.NewCheckpoint
	}
	var err error
	if s.config, err = c.captureConfig(ctx, s, sc, &snap.Config, m); err != nil {
		return err
	}
	return nil
}

// backingChangeID is a disk backing's CBT change id.
func backingChangeID(b types.BaseVirtualDeviceBackingInfo) string {
	switch b := b.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		return b.ChangeId
	case *types.VirtualDiskSparseVer2BackingInfo:
		return b.ChangeId
	}
	return ""
}

// toExtents turns sorted ranges into an extent map of the whole disk:
// in for the ranges, out elsewhere.
func toExtents[R vmdk.Range | types.DiskChangeExtent](ranges []R, size int64, in, out hypervisor.ExtentKind) []hypervisor.Extent {
	var ext []hypervisor.Extent
	add := func(off, n int64, k hypervisor.ExtentKind) {
		if n <= 0 {
			return
		}
		if l := len(ext); l > 0 && ext[l-1].Kind == k && ext[l-1].Offset+ext[l-1].Length == off {
			ext[l-1].Length += n
			return
		}
		ext = append(ext, hypervisor.Extent{Offset: off, Length: n, Kind: k})
	}
	var pos int64
	for _, r := range ranges {
		off, n := rangeOf(r)
		off, end := max(off, pos), min(off+n, size)
		if end <= off {
			continue
		}
		add(pos, off-pos, out)
		add(off, end-off, in)
		pos = end
	}
	add(pos, size-pos, out)
	return ext
}

func rangeOf[R vmdk.Range | types.DiskChangeExtent](r R) (int64, int64) {
	switch x := any(r).(type) {
	case vmdk.Range:
		return x.Offset, x.Length
	case types.DiskChangeExtent:
		return x.Start, x.Length
	}
	return 0, 0
}

// changedAreas asks QueryChangedDiskAreas until the disk is covered (one
// reply covers part of a large disk) and returns the areas, sorted.
func (c *Connector) changedAreas(ctx context.Context, s *session, key int32, size int64, changeID string) ([]types.DiskChangeExtent, error) {
	var out []types.DiskChangeExtent
	for off := int64(0); off < size; {
		res, err := methods.QueryChangedDiskAreas(ctx, c.vc, &types.QueryChangedDiskAreas{This: s.vm.Reference(), Snapshot: &s.snap,
			DeviceKey: key, StartOffset: off, ChangeId: changeID})
		if err != nil {
			return nil, err
		}
		info := res.Returnval
		next := info.StartOffset + info.Length
		if next <= off {
			return nil, fmt.Errorf("QueryChangedDiskAreas at %d made no progress (%d+%d)", off, info.StartOffset, info.Length)
		}
		for _, a := range info.ChangedArea {
			if a.Length <= 0 || a.Start < 0 {
				continue
			}
			if l := len(out); l > 0 && a.Start < out[l-1].Start+out[l-1].Length {
				return nil, fmt.Errorf("QueryChangedDiskAreas returned unsorted areas at %d", a.Start)
			}
			out = append(out, a)
		}
		off = next
	}
	return out, nil
}

// captureConfig makes the configuration document: the .vmx text, the
// snapshot's config info and where the VM sits.
func (c *Connector) captureConfig(ctx context.Context, s *session, sc *savedConfig, ci *types.VirtualMachineConfigInfo, m mo.VirtualMachine) ([]byte, error) {
	paths, err := c.inventoryPaths(ctx)
	if err != nil {
		return nil, err
	}
	sc.Placement.Datacenter = c.dc.InventoryPath
	if m.Parent != nil {
		sc.Placement.Folder = paths[*m.Parent]
	}
	if m.ResourcePool != nil {
		sc.Placement.ResourcePool = paths[*m.ResourcePool]
	}
	if m.Runtime.Host != nil {
		var h mo.HostSystem
		if err := s.vm.Properties(ctx, *m.Runtime.Host, []string{"name"}, &h); err == nil {
			sc.Placement.Host = h.Name
		}
	}
	if p, err := parseDSPath(ci.Files.VmPathName); err == nil {
		sc.Placement.Datastore = p.ds
		sc.VMX, err = c.readText(ctx, p)
		if err != nil {
			s.notes = append(s.notes, fmt.Sprintf("the .vmx file %s was not read (%v): the point holds the config spec only", p, err))
		} else if sc.VMX == "" {
			s.notes = append(s.notes, fmt.Sprintf("the .vmx file %s is empty", p))
		}
	}
	return encodeConfig(sc, ci)
}

// readText reads a small datastore file.
func (c *Connector) readText(ctx context.Context, p dsPath) (string, error) {
	f, err := c.openFile(ctx, p)
	if err != nil {
		return "", err
	}
	if f.Size() > 4<<20 {
		return "", fmt.Errorf("%s is %d bytes", p, f.Size())
	}
	b := make([]byte, f.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return string(b), nil
}

// mapErr wraps vSphere faults with hypervisor sentinels.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	prefix := ""
	if op != "" {
		prefix = op + ": "
	}
	switch {
	case fault.Is(err, &types.ManagedObjectNotFound{}):
		return fmt.Errorf("%s%w: %w", prefix, hypervisor.ErrVMNotFound, err)
	case fault.Is(err, &types.ToolsUnavailable{}):
		return fmt.Errorf("%s%w: %w", prefix, hypervisor.ErrNoAgent, err)
	case fault.Is(err, &types.TaskInProgress{}), fault.Is(err, &types.InvalidState{}), fault.Is(err, &types.SnapshotFault{}):
		return fmt.Errorf("%s%w: %w", prefix, hypervisor.ErrBusy, err)
	}
	return fmt.Errorf("%s%w", prefix, err)
}
