package vcsim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// vmExt is a VM as a session sees it: the simulator's VM plus the methods
// the extension adds or changes. It is put into each calling session's
// registry (the simulator dispatches to session objects first); the
// property collector reads the real VM through Get.
type vmExt struct {
	*simulator.VirtualMachine
	ext *extension
}

// Get returns the simulator's VM (for the property collector).
func (w *vmExt) Get() mo.Reference { return w.VirtualMachine }

// handle is the registry's method hook: it makes the caller's session see
// the VM through vmExt.
func (e *extension) handle(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if m.This.Type != "VirtualMachine" || ctx.Session == nil {
		return nil, nil
	}
	vm, _ := ctx.Map.Get(m.This).(*simulator.VirtualMachine)
	if w, ok := ctx.Session.Registry.Get(m.This).(*vmExt); ok {
		if w.VirtualMachine == vm {
			return nil, nil
		}
		ctx.Session.Registry.Remove(ctx, m.This)
	}
	if vm != nil {
		ctx.Session.Put(&vmExt{VirtualMachine: vm, ext: e})
		e.mu.Lock()
		if !slices.Contains(e.sessions, ctx.Session) {
			e.sessions = append(e.sessions, ctx.Session)
		}
		e.mu.Unlock()
	}
	return nil, nil
}

// Reference implements simulator.RegisterObject.
func (e *extension) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "KuraTestExtension", Value: "kura-ext-1"}
}

// PutObject implements simulator.RegisterObject: a new snapshot gets its
// change ids and its delta disks.
func (e *extension) PutObject(ctx *simulator.Context, item mo.Reference) {
	if snap, ok := item.(*simulator.VirtualMachineSnapshot); ok {
		if err := e.snapshotTaken(ctx, snap); err != nil {
			e.fail(fmt.Errorf("snapshot %s: %w", snap.Self.Value, err))
		}
	}
}

// UpdateObject implements simulator.RegisterObject.
func (e *extension) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {}

// RemoveObject implements simulator.RegisterObject: a removed snapshot's
// child disk is committed into its parent; a removed VM leaves the
// sessions.
func (e *extension) RemoveObject(ctx *simulator.Context, ref types.ManagedObjectReference) {
	switch ref.Type {
	case "VirtualMachineSnapshot":
		if err := e.snapshotRemoved(ctx, ref); err != nil {
			e.fail(fmt.Errorf("remove snapshot %s: %w", ref.Value, err))
		}
	case "VirtualMachine":
		e.mu.Lock()
		sessions := e.sessions
		e.mu.Unlock()
		for _, s := range sessions {
			if _, ok := s.Registry.Get(ref).(*vmExt); ok {
				s.Registry.Remove(ctx, ref)
			}
		}
	}
}

// toolsRunning reports whether the VM's VMware Tools answer.
func toolsRunning(vm *simulator.VirtualMachine) bool {
	return vm.Guest != nil && vm.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
}

// CreateSnapshotTask fails a quiesced snapshot when VMware Tools is not
// running (vSphere: the task fails with ToolsUnavailable).
func (w *vmExt) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	if req.Quiesce && !toolsRunning(w.VirtualMachine) {
		task := simulator.CreateTask(w.VirtualMachine, "createSnapshot", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
			return nil, &types.ToolsUnavailable{}
		})
		return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: task.Run(ctx)}}
	}
	return w.VirtualMachine.CreateSnapshotTask(ctx, req)
}

// CreateSnapshotExTask is CreateSnapshotTask's newer form.
func (w *vmExt) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	if req.QuiesceSpec != nil && !toolsRunning(w.VirtualMachine) {
		task := simulator.CreateTask(w.VirtualMachine, "createSnapshotEx", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
			return nil, &types.ToolsUnavailable{}
		})
		return &methods.CreateSnapshotEx_TaskBody{Res: &types.CreateSnapshotEx_TaskResponse{Returnval: task.Run(ctx)}}
	}
	return w.VirtualMachine.CreateSnapshotExTask(ctx, req)
}

// fileBacking returns a disk's file backing, nil for RDMs and others.
func fileBacking(d *types.VirtualDisk) *types.VirtualDiskFlatVer2BackingInfo {
	b, _ := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	return b
}

func disks(devices []types.BaseVirtualDevice) []*types.VirtualDisk {
	var out []*types.VirtualDisk
	for _, d := range devices {
		if vd, ok := d.(*types.VirtualDisk); ok && fileBacking(vd) != nil && !strings.HasPrefix(fileBacking(vd).DiskMode, "independent") {
			out = append(out, vd)
		}
	}
	return out
}

var deltaSuffix = regexp.MustCompile(`-\d{6}$`)

// snapshotTaken issues change ids for the snapshot's view of each disk,
// then points the VM at new child disks so later writes leave that view
// unchanged. It runs inside the snapshot task, which holds the VM.
func (e *extension) snapshotTaken(ctx *simulator.Context, snap *simulator.VirtualMachineSnapshot) error {
	vm, ok := ctx.Map.Get(snap.Vm).(*simulator.VirtualMachine)
	if !ok {
		return fmt.Errorf("vm %s not found", snap.Vm)
	}
	cbt := vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
	snapDisks := map[int32]*types.VirtualDisk{}
	for _, d := range disks(snap.Config.Hardware.Device) {
		snapDisks[d.Key] = d
	}
	made := map[int32]delta{}
	for _, d := range disks(vm.Config.Hardware.Device) {
		b := fileBacking(d)
		if cbt {
			id, err := e.issueChangeID(b)
			if err != nil {
				return err
			}
			b.ChangeId = id
			if sd := snapDisks[d.Key]; sd != nil {
				fileBacking(sd).ChangeId = id
			}
		}
		child, err := e.makeChild(b.FileName)
		if err != nil {
			return err
		}
		parent := *b
		parent.Parent = b.Parent
		b.Parent = &parent
		b.FileName = child
		made[d.Key] = delta{child: child, parent: parent.FileName}
	}
	e.mu.Lock()
	e.deltas[snap.Self.Value] = made
	e.mu.Unlock()
	return nil
}

// makeChild creates a child disk of the datastore path parent beside it.
func (e *extension) makeChild(parent string) (string, error) {
	local, err := e.localPath(parent)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.seq++
	n := e.seq
	e.mu.Unlock()
	stem := deltaSuffix.ReplaceAllString(strings.TrimSuffix(filepath.Base(local), ".vmdk"), "")
	name := fmt.Sprintf("%s-%06d.vmdk", stem, n)
	childLocal := filepath.Join(filepath.Dir(local), name)
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "vmdk", "-b", filepath.Base(local), "-F", "vmdk", childLocal).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("qemu-img create child of %s: %v: %s", parent, err, out)
	}
	return strings.TrimSuffix(parent, filepath.Base(local)) + name, nil
}

// snapshotRemoved commits the child disk made at the snapshot into its
// parent and points the VM back at the parent. Only the newest snapshot's
// child (the VM's current disk) can be committed.
func (e *extension) snapshotRemoved(ctx *simulator.Context, ref types.ManagedObjectReference) error {
	e.mu.Lock()
	made := e.deltas[ref.Value]
	delete(e.deltas, ref.Value)
	for k := range e.views {
		if strings.HasPrefix(k, ref.Value+"/") {
			delete(e.views, k)
		}
	}
	e.mu.Unlock()
	snap, ok := ctx.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
	if !ok || len(made) == 0 {
		return nil
	}
	vm, ok := ctx.Map.Get(snap.Vm).(*simulator.VirtualMachine)
	if !ok {
		return nil
	}
	for _, d := range disks(vm.Config.Hardware.Device) {
		m, ok := made[d.Key]
		if !ok {
			continue
		}
		b := fileBacking(d)
		if b.FileName != m.child {
			return fmt.Errorf("disk %d: the vm runs on %s, not on the snapshot's child %s: the extension only removes the newest snapshot", d.Key, b.FileName, m.child)
		}
		child, err := e.localPath(m.child)
		if err != nil {
			return err
		}
		if out, err := exec.Command("qemu-img", "commit", "-q", "-d", "-f", "vmdk", child).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img commit %s: %v: %s", child, err, out)
		}
		if err := os.Remove(child); err != nil {
			return err
		}
		if b.Parent != nil {
			changeID := b.ChangeId
			*b = *b.Parent
			b.ChangeId = changeID
		} else {
			b.FileName = m.parent
		}
	}
	return nil
}
