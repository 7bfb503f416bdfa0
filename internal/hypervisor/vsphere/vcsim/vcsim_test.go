package vcsim

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/testenv"
)

const mib = 1 << 20

func needQemu(t *testing.T) {
	testenv.NeedTool(t, "qemu-img")
	testenv.NeedTool(t, "qemu-io")
}

func snapshot(t *testing.T, vm *object.VirtualMachine, name string, quiesce bool) (types.ManagedObjectReference, error) {
	t.Helper()
	ctx := context.Background()
	task, err := vm.CreateSnapshot(ctx, name, "", false, quiesce)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	return info.Result.(types.ManagedObjectReference), nil
}

func removeSnapshot(t *testing.T, s *Sim, ref types.ManagedObjectReference) {
	t.Helper()
	ctx := context.Background()
	res, err := methods.RemoveSnapshot_Task(ctx, s.Client.Client, &types.RemoveSnapshot_Task{This: ref, Consolidate: types.NewBool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := object.NewTask(s.Client.Client, res.Returnval).Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// snapDisk returns the snapshot's first disk: its device key, file and
// change id.
func snapDisk(t *testing.T, s *Sim, ref types.ManagedObjectReference) (int32, string, string) {
	t.Helper()
	var snap mo.VirtualMachineSnapshot
	if err := s.Client.RetrieveOne(context.Background(), ref, []string{"config"}, &snap); err != nil {
		t.Fatal(err)
	}
	for _, d := range snap.Config.Hardware.Device {
		if vd, ok := d.(*types.VirtualDisk); ok {
			b := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			return vd.Key, b.FileName, b.ChangeId
		}
	}
	t.Fatal("snapshot has no disk")
	return 0, "", ""
}

// changed asks QueryChangedDiskAreas in a loop until the disk is covered,
// checking each reply's documented shape.
func changed(t *testing.T, s *Sim, vm *object.VirtualMachine, snap *types.ManagedObjectReference, key int32, size int64, id string) ([]types.DiskChangeExtent, error) {
	t.Helper()
	var out []types.DiskChangeExtent
	for off := int64(0); off < size; {
		res, err := methods.QueryChangedDiskAreas(context.Background(), s.Client.Client,
			&types.QueryChangedDiskAreas{This: vm.Reference(), Snapshot: snap, DeviceKey: key, StartOffset: off, ChangeId: id})
		if err != nil {
			return nil, err
		}
		info := res.Returnval
		if info.StartOffset != off || info.Length <= 0 || info.Length > s.QuerySpan {
			t.Fatalf("reply at %d covers %d+%d", off, info.StartOffset, info.Length)
		}
		for _, a := range info.ChangedArea {
			if a.Start < info.StartOffset || a.Start+a.Length > info.StartOffset+info.Length {
				t.Fatalf("area %+v outside the reply's range %d+%d", a, info.StartOffset, info.Length)
			}
			if l := len(out); l > 0 && out[l-1].Start+out[l-1].Length == a.Start {
				out[l-1].Length += a.Length
			} else {
				out = append(out, a)
			}
		}
		off = info.StartOffset + info.Length
	}
	return out, nil
}

func dataDisk(t *testing.T, size int64) string {
	t.Helper()
	b := make([]byte, size)
	copy(b[0:], bytes.Repeat([]byte{1}, 100<<10))    // blocks 0-1
	copy(b[9*mib:], bytes.Repeat([]byte{2}, 64<<10)) // block 144
	p := t.TempDir() + "/disk.raw"
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChangedBlockTracking checks the CBT and delta-disk emulation against
// the API's documented semantics.
func TestChangedBlockTracking(t *testing.T) {
	needQemu(t)
	s := Start(t)
	ctx := context.Background()
	const size = 16 * mib
	vm := s.NewVM(t, VMSpec{Name: "cbt1", Disks: []DiskSpec{{From: dataDisk(t, size)}}, PowerOn: true, CBT: true})
	base := s.Disk(t, "cbt1", 0)

	s1, err := snapshot(t, vm, "s1", false)
	if err != nil {
		t.Fatal(err)
	}
	key, file, c1 := snapDisk(t, s, s1)
	if file != base || !strings.HasSuffix(c1, "/1") {
		t.Fatalf("snapshot disk %s change id %q; want %s and an id", file, c1, base)
	}
	if cur := s.Disk(t, "cbt1", 0); cur == base {
		t.Fatal("after the snapshot the vm still writes into its base disk")
	}
	// "*": the areas in use.
	all, err := changed(t, s, vm, &s1, key, size, "*")
	if err != nil {
		t.Fatal(err)
	}
	want := []types.DiskChangeExtent{{Start: 0, Length: 128 << 10}, {Start: 9 * mib, Length: 64 << 10}}
	if len(all) != 2 || all[0] != want[0] || all[1] != want[1] {
		t.Fatalf("areas in use %+v, want %+v", all, want)
	}
	// Writes after the snapshot do not change its view.
	before := s.Read(t, file)
	s.Write(t, "cbt1", 0, 5*mib, bytes.Repeat([]byte{0xab}, mib))
	if !bytes.Equal(s.Read(t, file), before) {
		t.Fatal("a write after the snapshot changed the snapshot's disk")
	}
	if again, _ := changed(t, s, vm, &s1, key, size, "*"); len(again) != 2 {
		t.Fatalf("snapshot view changed: %+v", again)
	}
	removeSnapshot(t, s, s1)
	if cur := s.Disk(t, "cbt1", 0); cur != base {
		t.Fatalf("after removing the snapshot the vm uses %s, want %s", cur, base)
	}
	if got := s.Read(t, base); !bytes.Equal(got[5*mib:6*mib], bytes.Repeat([]byte{0xab}, mib)) {
		t.Fatal("the write was not consolidated into the base disk")
	}

	// Changes since c1, as the next snapshot sees them: exactly the write.
	s2, err := snapshot(t, vm, "s2", false)
	if err != nil {
		t.Fatal(err)
	}
	_, _, c2 := snapDisk(t, s, s2)
	got, err := changed(t, s, vm, &s2, key, size, c1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (types.DiskChangeExtent{Start: 5 * mib, Length: mib}) {
		t.Fatalf("changes since %s: %+v, want the 1 MiB at 5 MiB", c1, got)
	}
	if got, err := changed(t, s, vm, &s2, key, size, c2); err != nil || len(got) != 0 {
		t.Fatalf("changes since the snapshot's own id: %+v %v", got, err)
	}
	// Faults.
	for name, req := range map[string]types.QueryChangedDiskAreas{
		"unknown id":    {Snapshot: &s2, DeviceKey: key, ChangeId: "52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1"},
		"beyond":        {Snapshot: &s2, DeviceKey: key, StartOffset: size, ChangeId: "*"},
		"no snapshot":   {DeviceKey: key, ChangeId: "*"},
		"no such disk":  {Snapshot: &s2, DeviceKey: 4242, ChangeId: "*"},
		"other vm snap": {Snapshot: &types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: "snapshot-999"}, DeviceKey: key, ChangeId: "*"},
	} {
		req.This = vm.Reference()
		if _, err := methods.QueryChangedDiskAreas(ctx, s.Client.Client, &req); !fault.Is(err, &types.InvalidArgument{}) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	removeSnapshot(t, s, s2)

	// A disk file replaced (as a restore in place does, with a descriptor
	// naming no ctk file) starts a new tracking epoch: old ids are refused.
	desc, err := os.ReadFile(s.LocalPath(base))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.LocalPath(base), ctkRE.ReplaceAll(desc, nil))
	s3, err := snapshot(t, vm, "s3", false)
	if err != nil {
		t.Fatal(err)
	}
	_, _, c3 := snapDisk(t, s, s3)
	if strings.Split(c3, "/")[0] == strings.Split(c2, "/")[0] {
		t.Fatalf("new epoch expected after the disk was replaced: %s then %s", c2, c3)
	}
	if _, err := changed(t, s, vm, &s3, key, size, c2); !fault.Is(err, &types.InvalidArgument{}) {
		t.Fatalf("id of the old epoch: %v", err)
	}
	removeSnapshot(t, s, s3)

	// Without change tracking the method is refused.
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(false)})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := methods.QueryChangedDiskAreas(ctx, s.Client.Client, &types.QueryChangedDiskAreas{This: vm.Reference(), DeviceKey: key, ChangeId: "*"}); !fault.Is(err, &types.NotSupported{}) {
		t.Fatalf("without cbt: %v", err)
	}
}

// TestNestedSnapshots: a user's snapshot, then a newer one; the newer's
// view includes writes made between them, and removing it returns the vm
// to the older one's child.
func TestNestedSnapshots(t *testing.T) {
	needQemu(t)
	s := Start(t)
	vm := s.NewVM(t, VMSpec{Name: "nest", Disks: []DiskSpec{{SizeMiB: 8}}, PowerOn: true})
	if _, err := snapshot(t, vm, "user", false); err != nil {
		t.Fatal(err)
	}
	first := s.Disk(t, "nest", 0)
	s.Write(t, "nest", 0, mib, bytes.Repeat([]byte{0x11}, 64<<10))
	k, err := snapshot(t, vm, "kura-x", false)
	if err != nil {
		t.Fatal(err)
	}
	_, file, _ := snapDisk(t, s, k)
	s.Write(t, "nest", 0, 2*mib, bytes.Repeat([]byte{0x22}, 64<<10))
	view := s.Read(t, file)
	if file != first || view[mib] != 0x11 || view[2*mib] != 0 {
		t.Fatalf("the newer snapshot's view (%s, %#x %#x) is not the disk at its time", file, view[mib], view[2*mib])
	}
	removeSnapshot(t, s, k)
	if cur := s.Disk(t, "nest", 0); cur != first {
		t.Fatalf("vm on %s after removing the newest snapshot, want %s", cur, first)
	}
	if b := s.Read(t, first); b[2*mib] != 0x22 {
		t.Fatal("the write after the newest snapshot was lost")
	}
}

// TestQuiesceNeedsTools: a quiesced snapshot fails without VMware Tools
// and is recorded as quiesced with them.
func TestQuiesceNeedsTools(t *testing.T) {
	needQemu(t)
	s := Start(t)
	vm := s.NewVM(t, VMSpec{Name: "q", Disks: []DiskSpec{{SizeMiB: 4}}, PowerOn: true})
	if _, err := snapshot(t, vm, "q1", true); !fault.Is(err, &types.ToolsUnavailable{}) {
		t.Fatalf("quiesce without tools: %v", err)
	}
	s.SetGuest(t, "q", true, "10.0.0.9", "q.example.org")
	ref, err := snapshot(t, vm, "q2", true)
	if err != nil {
		t.Fatal(err)
	}
	var mvm mo.VirtualMachine
	if err := vm.Properties(context.Background(), vm.Reference(), []string{"snapshot"}, &mvm); err != nil {
		t.Fatal(err)
	}
	if tree := mvm.Snapshot.RootSnapshotList; len(tree) != 1 || tree[0].Snapshot != ref || !tree[0].Quiesced {
		t.Fatalf("snapshot tree %+v", tree)
	}
}
