package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Leftover kinds reported by this connector.
const (
	KindBackupJob  = "backup-job"
	KindCheckpoint = "checkpoint"
	KindBitmap     = "bitmap"
	KindNBDServer  = "nbd-server"
	KindScratch    = "scratch-file"
)

// sessionState is what the sessions of one VM left on this host: its
// scratch directories (with their owners) and libvirt's backup job.
type sessionState struct {
	dirs []sessionDirState
	// job is the socket of the VM's active pull-mode backup job when it
	// lies in kura's scratch directory ("" when none).
	job string
	// jobLive is true when that job belongs to a live session.
	jobLive bool
}

type sessionDirState struct {
	path  string
	owner sessionOwner
	live  bool
	pids  []string // pid files of live qemu-nbd servers
}

// liveCheckpoint reports whether checkpoint was created by a live session.
func (st sessionState) liveCheckpoint(uuid, checkpoint string) bool {
	name := sessionDirName(uuid, checkpoint)
	return slices.ContainsFunc(st.dirs, func(d sessionDirState) bool { return d.live && filepath.Base(d.path) == name })
}

// sessions reads the session state of vm.
func (c *Connector) sessions(vm hypervisor.VM, d golibvirt.Domain) (sessionState, error) {
	var st sessionState
	dirs, _ := filepath.Glob(filepath.Join(c.QemuScratchDir, Prefix+vm.UUID+"-*"))
	for _, dir := range dirs {
		o, live := dirOwner(dir)
		ds := sessionDirState{path: dir, owner: o, live: live}
		pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, p := range pids {
			if _, ok := readPid(p); ok {
				ds.pids = append(ds.pids, p)
			}
		}
		st.dirs = append(st.dirs, ds)
	}
	if vm.State == hypervisor.PowerOff {
		return st, nil
	}
	raw, err := c.lv.DomainBackupGetXMLDesc(d, 0)
	switch {
	case err == nil:
		var doc struct {
			Server struct {
				Socket string `xml:"socket,attr"`
			} `xml:"server"`
		}
		if xml.Unmarshal([]byte(raw), &doc) == nil && strings.HasPrefix(doc.Server.Socket, c.QemuScratchDir+"/") {
			st.job = doc.Server.Socket
			dir := filepath.Dir(doc.Server.Socket)
			st.jobLive = slices.ContainsFunc(st.dirs, func(d sessionDirState) bool { return d.live && d.path == dir })
		}
	case lvCode(err) != golibvirt.ErrNoDomainBackup && lvCode(err) != golibvirt.ErrOperationInvalid:
		return st, mapErr("backup job of "+vm.Name, err)
	}
	return st, nil
}

// Leftovers implements hypervisor.Connector. It reports, per VM: a backup
// job of a dead kura process (its NBD socket lies in kura's scratch
// directory), live qemu-nbd servers and session scratch directories of
// dead processes, and kura checkpoints and (for shut-off VMs) qcow2
// bitmaps not in q.Keep and not made by a live session — those of
// another repository as foreign; then what killed boot verifications
// and instant recoveries left (instantleftovers.go).
func (c *Connector) Leftovers(ctx context.Context, q hypervisor.LeftoverQuery) ([]hypervisor.Leftover, error) {
	if c.remote {
		return nil, fmt.Errorf("cleanup on %s: %w", c.uri, errRemoteBackup)
	}
	all, err := c.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []hypervisor.Leftover
	for _, vm := range all {
		if len(q.VMs) > 0 && !slices.Contains(q.VMs, vm.Name) && !slices.ContainsFunc(q.VMs, func(s string) bool {
			return strings.EqualFold(s, vm.UUID)
		}) {
			continue
		}
		lo, err := c.vmLeftovers(ctx, vm, q)
		if errors.Is(err, hypervisor.ErrVMNotFound) {
			continue // undefined since it was listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, lo...)
	}
	lo, err := c.instantLeftovers(ctx, q.VMs)
	if err != nil {
		return nil, err
	}
	return append(out, lo...), nil
}

func (c *Connector) vmLeftovers(ctx context.Context, vm hypervisor.VM, q hypervisor.LeftoverQuery) ([]hypervisor.Leftover, error) {
	d, err := c.lookup(vm.UUID)
	if err != nil {
		return nil, err
	}
	st, err := c.sessions(vm, d)
	if err != nil {
		return nil, err
	}
	out := st.deadLeftovers(vm.Name)
	add := func(kind, name, detail string) {
		l := hypervisor.Leftover{VM: vm.Name, Kind: kind, Name: name, Detail: detail}
		if owner, _ := hypervisor.CheckpointOwner(name); owner != "" {
			l.Owner = owner
			if owner != q.Owner {
				l.Foreign = true
				l.Detail = fmt.Sprintf("%s of repository %s… (not this one): kept", kind, owner)
			}
		}
		out = append(out, l)
	}
	cps, _, err := c.lv.DomainListAllCheckpoints(d, 1, 0)
	if err != nil {
		return nil, mapErr("list checkpoints of "+vm.Name, err)
	}
	known := map[string]bool{}
	for _, cp := range cps {
		known[cp.Name] = true
		if _, ours := hypervisor.CheckpointOwner(cp.Name); ours && !q.Keep[cp.Name] && !st.liveCheckpoint(vm.UUID, cp.Name) {
			add(KindCheckpoint, cp.Name, "kura checkpoint not referenced by any recovery point")
		}
	}
	if vm.State == hypervisor.PowerOff {
		seen := map[string]bool{}
		for _, dk := range vm.Disks {
			if !dk.Protectable || dk.Format != "qcow2" {
				continue
			}
			info, err := c.imageInfo(ctx, dk.Source, dk.Format)
			if err != nil {
				continue // a locked or missing image is not our leftover
			}
			for _, b := range info.FormatSpec.Data.Bitmaps {
				_, ours := hypervisor.CheckpointOwner(b.Name)
				if ours && !q.Keep[b.Name] && !known[b.Name] && !seen[b.Name] && !st.liveCheckpoint(vm.UUID, b.Name) {
					seen[b.Name] = true
					add(KindBitmap, b.Name, "kura bitmap in "+dk.Source+" not referenced by any recovery point")
				}
			}
		}
	}
	return out, nil
}

// deadLeftovers lists what sessions of dead processes left: their backup
// job, qemu-nbd servers (first: they lock the images) and scratch dirs.
func (st sessionState) deadLeftovers(vm string) []hypervisor.Leftover {
	var out []hypervisor.Leftover
	if st.job != "" && !st.jobLive {
		out = append(out, hypervisor.Leftover{VM: vm, Kind: KindBackupJob, Name: filepath.Dir(st.job),
			Detail: "backup job of a killed kura process (its NBD socket is " + st.job + ")"})
	}
	for _, d := range st.dirs {
		if d.live {
			continue
		}
		for _, p := range d.pids {
			pid, _ := readPid(p)
			out = append(out, hypervisor.Leftover{VM: vm, Kind: KindNBDServer, Name: p,
				Detail: fmt.Sprintf("qemu-nbd (pid %d) of a session of %s, which is gone", pid, ownerDetail(d.owner))})
		}
	}
	for _, d := range st.dirs {
		if !d.live {
			out = append(out, hypervisor.Leftover{VM: vm, Kind: KindScratch, Name: d.path,
				Detail: "scratch directory of a session of " + ownerDetail(d.owner) + ", which is gone"})
		}
	}
	return out
}

// reclaim clears what sessions of dead kura processes left on vm, so that
// a new backup can start, and returns a note saying what it removed. A
// session of a live process makes the VM busy.
func (c *Connector) reclaim(ctx context.Context, d golibvirt.Domain, vm hypervisor.VM) (string, error) {
	st, err := c.sessions(vm, d)
	if err != nil {
		return "", err
	}
	for _, ds := range st.dirs {
		if ds.live {
			return "", fmt.Errorf("backup of %s: %w: %s is backing it up", vm.Name, hypervisor.ErrBusy, ownerDetail(ds.owner))
		}
	}
	var kinds, done []string
	var owner sessionOwner
	for _, ds := range st.dirs {
		owner = ds.owner
		notes, err := c.settleDir(ctx, d, vm, ds.path)
		if err != nil {
			return "", fmt.Errorf("backup of %s: %w (run kura cleanup)", vm.Name, err)
		}
		done = append(done, notes...)
	}
	if len(done) > 0 {
		if st, err = c.sessions(vm, d); err != nil {
			return "", err
		}
	}
	left := st.deadLeftovers(vm.Name)
	if len(left) == 0 && len(done) == 0 {
		return "", nil
	}
	for _, l := range left {
		if err := c.RemoveLeftover(ctx, l); err != nil {
			return "", fmt.Errorf("backup of %s: remove what a killed run left (%s %s): %w (run kura cleanup)", vm.Name, l.Kind, l.Name, err)
		}
		if !slices.Contains(kinds, l.Kind) {
			kinds = append(kinds, l.Kind)
		}
	}
	c.log.Warn("reclaimed leftovers of a killed kura process", "vm", vm.Name, "kinds", kinds, "done", done)
	note := fmt.Sprintf("reclaimed what a killed run of %s left on the VM: %s", ownerDetail(owner), strings.Join(kinds, ", "))
	if len(done) > 0 {
		note += " (" + strings.Join(done, "; ") + ")"
	}
	return note, nil
}

// RemoveLeftover implements hypervisor.Connector.
func (c *Connector) RemoveLeftover(ctx context.Context, l hypervisor.Leftover) error {
	if l.Foreign {
		return fmt.Errorf("remove %s %s of %s: it belongs to repository %s…, not this one", l.Kind, l.Name, l.VM, l.Owner)
	}
	switch l.Kind {
	case KindBackupJob:
		d, err := c.lookup(l.VM)
		if err != nil {
			return err
		}
		return c.endJob(ctx, d)
	case KindCheckpoint:
		d, err := c.lookup(l.VM)
		if err != nil {
			return err
		}
		return c.deleteCheckpoint(d, l.Name)
	case KindBitmap:
		return c.removeBitmap(ctx, l)
	case KindNBDServer:
		if !c.inScratch(l.Name) {
			return fmt.Errorf("remove leftover %s: %w %s", l.Name, errNotOurs, c.QemuScratchDir)
		}
		if pid, ok := readPid(l.Name); ok {
			if err := stopProcess(pid, func() bool { _, alive := readPid(l.Name); return alive }); err != nil {
				return fmt.Errorf("stop qemu-nbd %d: %w", pid, err)
			}
		}
		return ignoreNotExist(os.Remove(l.Name))
	case KindInstantVM, KindNetwork, KindInstantDir:
		return c.removeInstantLeftover(ctx, l)
	case KindScratch:
		if !c.inScratch(l.Name) {
			return fmt.Errorf("remove leftover %s: %w %s", l.Name, errNotOurs, c.QemuScratchDir)
		}
		if _, ok := readPending(l.Name); ok {
			vm, err := c.LookupVM(ctx, l.VM)
			if err != nil {
				return err
			}
			d, err := c.lookup(vm.UUID)
			if err != nil {
				return err
			}
			notes, err := c.settleDir(ctx, d, vm, l.Name)
			if err != nil {
				return err
			}
			if len(notes) > 0 {
				c.log.Warn("settled a killed session", "vm", l.VM, "done", notes)
			}
		}
		return ignoreNotExist(os.RemoveAll(l.Name))
	}
	return fmt.Errorf("remove leftover: unknown kind %q", l.Kind)
}

func (c *Connector) removeBitmap(ctx context.Context, l hypervisor.Leftover) error {
	vm, err := c.LookupVM(ctx, l.VM)
	if err != nil {
		return err
	}
	if vm.State != hypervisor.PowerOff {
		return fmt.Errorf("remove bitmap %s of %s: %w: the vm is running", l.Name, l.VM, hypervisor.ErrBusy)
	}
	var errs []error
	for _, dk := range vm.Disks {
		if !dk.Protectable || dk.Format != "qcow2" {
			continue
		}
		info, err := c.imageInfo(ctx, dk.Source, dk.Format)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, b := range info.FormatSpec.Data.Bitmaps {
			if b.Name == l.Name {
				errs = append(errs, c.qemuImg(ctx, "bitmap", "--remove", dk.Source, b.Name))
			}
		}
	}
	return errors.Join(errs...)
}

// sessionDirName is the scratch directory name of a session: a unix socket
// path holds at most 107 bytes, so it is named by a short hash of the
// checkpoint, not the checkpoint itself.
func sessionDirName(uuid, checkpoint string) string {
	sum := sha256.Sum256([]byte(checkpoint))
	return Prefix + uuid + "-" + hex.EncodeToString(sum[:4])
}

func (c *Connector) inScratch(p string) bool {
	rel, err := filepath.Rel(c.QemuScratchDir, filepath.Clean(p))
	return err == nil && strings.HasPrefix(rel, Prefix) && !strings.Contains(rel, "..")
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// stopProcess ends a process and waits until alive reports it gone (and
// the image lock it held released): SIGTERM (with SIGCONT, should it be
// stopped), then SIGKILL after 10 s.
func stopProcess(pid int, alive func() bool) error {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(pid, sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil
			}
			return err
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
		for i := 0; i < 200; i++ {
			if !alive() {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return fmt.Errorf("process %d does not end", pid)
}
