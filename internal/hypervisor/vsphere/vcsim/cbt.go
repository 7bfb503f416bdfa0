package vcsim

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// BlockSize is the granularity of the emulated change tracking.
const BlockSize = 64 << 10

type blockHash [sha256.Size]byte

// diskView is what a disk showed: its block hashes and size.
type diskView struct {
	hashes []blockHash
	size   int64
}

// rootOf returns the datastore path of the base disk of a backing chain.
func rootOf(b *types.VirtualDiskFlatVer2BackingInfo) string {
	for b.Parent != nil {
		b = b.Parent
	}
	return b.FileName
}

var ctkRE = regexp.MustCompile(`(?m)^ddb\.changeTrackPath\s*=\s*"([^"]*)"`)

// epoch returns the tracking epoch of the disk whose base descriptor is
// root: the content of the ctk file its descriptor names, creating both
// (a new epoch) when missing, as ESXi does when tracking starts or the
// disk was replaced.
func (e *extension) epoch(root string) (ctk, id string, err error) {
	local, err := e.localPath(root)
	if err != nil {
		return "", "", err
	}
	desc, err := os.ReadFile(local)
	if err != nil {
		return "", "", err
	}
	if len(desc) > 64<<10 || bytes.HasPrefix(desc, []byte("KDMV")) {
		return "", "", fmt.Errorf("%s: change tracking needs a descriptor file (vmfs or monolithicFlat), not a sparse file", root)
	}
	dir := filepath.Dir(local)
	if m := ctkRE.FindSubmatch(desc); m != nil {
		ctk = filepath.Join(dir, string(m[1]))
		if b, err := os.ReadFile(ctk); err == nil {
			return ctk, strings.TrimSpace(string(b)), nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
	}
	name := strings.TrimSuffix(filepath.Base(local), ".vmdk") + "-ctk.vmdk"
	ctk = filepath.Join(dir, name)
	var u [16]byte
	_, _ = rand.Read(u[:])
	parts := make([]string, 16)
	for i, c := range u {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	id = strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
	if err := replaceFile(ctk, []byte(id+"\n")); err != nil {
		return "", "", err
	}
	desc = ctkRE.ReplaceAll(desc, nil)
	desc = append(bytes.TrimRight(desc, "\x00\n"), []byte(fmt.Sprintf("\nddb.changeTrackPath = %q\n", name))...)
	if err := replaceFile(local, desc); err != nil {
		return "", "", err
	}
	return ctk, id, nil
}

// replaceFile replaces p with data in one rename, as ESXi updates a
// descriptor: the simulator serves the file over HTTP meanwhile, and a
// reader that met it truncated and half written (os.WriteFile) failed a
// CI run ("NUL inside the text").
func replaceFile(p string, data []byte) error {
	tmp := p + ".kura-tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// issueChangeID records the block hashes of the disk's current view and
// returns the change id naming them.
func (e *extension) issueChangeID(b *types.VirtualDiskFlatVer2BackingInfo) (string, error) {
	ctk, epoch, err := e.epoch(rootOf(b))
	if err != nil {
		return "", err
	}
	hashes, _, err := e.hashes(b.FileName)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	states := e.states[ctk]
	if states == nil || !strings.HasPrefix(anyKey(states), epoch+"/") {
		states = map[string][]blockHash{}
		e.states[ctk] = states
	}
	id := epoch + "/" + strconv.Itoa(len(states)+1)
	states[id] = hashes
	return id, nil
}

func anyKey(m map[string][]blockHash) string {
	for k := range m {
		return k
	}
	return ""
}

// hashes reads a datastore disk (its whole chain) through qemu-img and
// returns the hash of every block, the zero blocks marked by a zero hash.
func (e *extension) hashes(dsPath string) ([]blockHash, int64, error) {
	local, err := e.localPath(dsPath)
	if err != nil {
		return nil, 0, err
	}
	tmp, err := os.MkdirTemp("", "kura-vcsim-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(tmp)
	raw := filepath.Join(tmp, "view.raw")
	if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "vmdk", "-O", "raw", local, raw).CombinedOutput(); err != nil {
		return nil, 0, fmt.Errorf("qemu-img convert %s: %v: %s", dsPath, err, out)
	}
	f, err := os.Open(raw)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []blockHash
	var size int64
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, BlockSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			size += int64(n)
			var h blockHash
			if !allZero(buf[:n]) {
				h = sha256.Sum256(buf[:n])
			}
			out = append(out, h)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, size, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func invalidArg(property string) soap.HasFault {
	return &methods.QueryChangedDiskAreasBody{Fault_: simulator.Fault("", &types.InvalidArgument{InvalidProperty: property})}
}

// QueryChangedDiskAreas answers from the real bytes (see the package doc).
// vSphere's semantics: the areas of disk deviceKey, as the snapshot shows
// it, changed since changeId ("*": every area in use), from startOffset on;
// the reply covers [StartOffset, StartOffset+Length) and the caller asks
// again from its end until the disk is covered. Without a snapshot only a
// powered-off VM may be asked (its current disk).
func (w *vmExt) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	e := w.ext
	vm := w.VirtualMachine
	if vm.Config.ChangeTrackingEnabled == nil || !*vm.Config.ChangeTrackingEnabled {
		return &methods.QueryChangedDiskAreasBody{Fault_: simulator.Fault("changed block tracking is not enabled", &types.NotSupported{})}
	}
	devices := vm.Config.Hardware.Device
	view := "current"
	if req.Snapshot != nil {
		snap, ok := ctx.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
		if !ok || snap.Vm != vm.Self {
			return invalidArg("snapshot")
		}
		devices, view = snap.Config.Hardware.Device, req.Snapshot.Value
	} else if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		return invalidArg("snapshot")
	}
	var disk *types.VirtualDisk
	for _, d := range disks(devices) {
		if d.Key == req.DeviceKey {
			disk = d
		}
	}
	if disk == nil {
		return invalidArg("deviceKey")
	}
	b := fileBacking(disk)
	key := fmt.Sprintf("%s/%d", view, disk.Key)
	e.mu.Lock()
	v, cached := e.views[key]
	e.mu.Unlock()
	if !cached || view == "current" {
		hashes, size, err := e.hashes(b.FileName)
		if err != nil {
			e.fail(err)
			return &methods.QueryChangedDiskAreasBody{Fault_: simulator.Fault(err.Error(), &types.FileFault{File: b.FileName})}
		}
		v = diskView{hashes, size}
		e.mu.Lock()
		e.views[key] = v
		e.mu.Unlock()
	}
	cur, size := v.hashes, v.size
	if req.StartOffset < 0 || req.StartOffset >= size {
		return invalidArg("startOffset")
	}
	var base []blockHash
	if req.ChangeId != "*" {
		ctk, epoch, err := e.epoch(rootOf(b))
		if err != nil {
			e.fail(err)
			return invalidArg("changeId")
		}
		e.mu.Lock()
		base = e.states[ctk][req.ChangeId]
		e.mu.Unlock()
		if base == nil || !strings.HasPrefix(req.ChangeId, epoch+"/") {
			return &methods.QueryChangedDiskAreasBody{Fault_: simulator.Fault("change id "+req.ChangeId+" is not valid for this disk",
				&types.InvalidArgument{InvalidProperty: "changeId"})}
		}
	}
	end := min(size, req.StartOffset+e.sim.QuerySpan)
	info := types.DiskChangeInfo{StartOffset: req.StartOffset, Length: end - req.StartOffset}
	for blk := req.StartOffset / BlockSize; blk*BlockSize < end; blk++ {
		changed := cur[blk] != blockHash{}
		if base != nil {
			changed = int(blk) >= len(base) || cur[blk] != base[blk]
		}
		if !changed {
			continue
		}
		start := max(blk*BlockSize, req.StartOffset)
		n := min((blk+1)*BlockSize, end) - start
		if l := len(info.ChangedArea); l > 0 && info.ChangedArea[l-1].Start+info.ChangedArea[l-1].Length == start {
			info.ChangedArea[l-1].Length += n
		} else {
			info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: start, Length: n})
		}
	}
	return &methods.QueryChangedDiskAreasBody{Res: &types.QueryChangedDiskAreasResponse{Returnval: info}}
}
