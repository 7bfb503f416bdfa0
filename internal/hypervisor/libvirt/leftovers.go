package libvirt

import (
	"context"
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

// Leftovers implements hypervisor.Connector. It reports, per VM: a backup
// job whose NBD socket lies in kura's scratch directory, kura checkpoints
// and (for shut-off VMs) qcow2 bitmaps not in keep, live qemu-nbd servers
// started by kura, and session scratch directories; then what killed boot
// verifications and instant recoveries left (instantleftovers.go).
func (c *Connector) Leftovers(ctx context.Context, vms []string, keep map[string]bool) ([]hypervisor.Leftover, error) {
	if c.remote {
		return nil, fmt.Errorf("cleanup on %s: %w", c.uri, errRemoteBackup)
	}
	all, err := c.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []hypervisor.Leftover
	for _, vm := range all {
		if len(vms) > 0 && !slices.Contains(vms, vm.Name) && !slices.Contains(vms, vm.UUID) {
			continue
		}
		lo, err := c.vmLeftovers(ctx, vm, keep)
		if err != nil {
			return nil, err
		}
		out = append(out, lo...)
	}
	lo, err := c.instantLeftovers(ctx, vms)
	if err != nil {
		return nil, err
	}
	return append(out, lo...), nil
}

func (c *Connector) vmLeftovers(ctx context.Context, vm hypervisor.VM, keep map[string]bool) ([]hypervisor.Leftover, error) {
	d, err := c.lookup(vm.UUID)
	if err != nil {
		return nil, err
	}
	var out []hypervisor.Leftover
	add := func(kind, name, detail string) {
		out = append(out, hypervisor.Leftover{VM: vm.Name, Kind: kind, Name: name, Detail: detail})
	}
	if vm.State != hypervisor.PowerOff {
		raw, err := c.lv.DomainBackupGetXMLDesc(d, 0)
		switch {
		case err == nil:
			var doc struct {
				Server struct {
					Socket string `xml:"socket,attr"`
				} `xml:"server"`
			}
			if xml.Unmarshal([]byte(raw), &doc) == nil && strings.HasPrefix(doc.Server.Socket, c.QemuScratchDir+"/") {
				add(KindBackupJob, filepath.Dir(doc.Server.Socket), "kura backup job still active (its NBD socket is "+doc.Server.Socket+")")
			}
		case lvCode(err) != golibvirt.ErrNoDomainBackup && lvCode(err) != golibvirt.ErrOperationInvalid:
			return nil, mapErr("backup job of "+vm.Name, err)
		}
	}
	// qemu-nbd servers first: they lock the images whose bitmaps follow.
	dirs, _ := filepath.Glob(filepath.Join(c.QemuScratchDir, Prefix+vm.UUID+"-*"))
	for _, dir := range dirs {
		pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, p := range pids {
			if pid, ok := readPid(p); ok {
				add(KindNBDServer, p, fmt.Sprintf("qemu-nbd (pid %d) of a killed backup session", pid))
			}
		}
	}
	cps, _, err := c.lv.DomainListAllCheckpoints(d, 1, 0)
	if err != nil {
		return nil, mapErr("list checkpoints of "+vm.Name, err)
	}
	known := map[string]bool{}
	for _, cp := range cps {
		known[cp.Name] = true
		if strings.HasPrefix(cp.Name, Prefix) && !keep[cp.Name] {
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
				if strings.HasPrefix(b.Name, Prefix) && !keep[b.Name] && !known[b.Name] && !seen[b.Name] {
					seen[b.Name] = true
					add(KindBitmap, b.Name, "kura bitmap in "+dk.Source+" not referenced by any recovery point")
				}
			}
		}
	}
	for _, dir := range dirs {
		add(KindScratch, dir, "scratch directory of a killed backup session")
	}
	return out, nil
}

// RemoveLeftover implements hypervisor.Connector.
func (c *Connector) RemoveLeftover(ctx context.Context, l hypervisor.Leftover) error {
	switch l.Kind {
	case KindBackupJob:
		d, err := c.lookup(l.VM)
		if err != nil {
			return err
		}
		return c.abortJob(d)
	case KindCheckpoint:
		d, err := c.lookup(l.VM)
		if err != nil {
			return err
		}
		return c.deleteCheckpoint(d, l.Name)
	case KindBitmap:
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
	case KindNBDServer:
		if !c.inScratch(l.Name) {
			return fmt.Errorf("remove leftover %s: not in %s", l.Name, c.QemuScratchDir)
		}
		if pid, ok := readPid(l.Name); ok {
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("stop qemu-nbd %d: %w", pid, err)
			}
			// Wait until it is gone (and its image lock released).
			for i := 0; i < 200; i++ {
				if _, alive := readPid(l.Name); !alive {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return ignoreNotExist(os.Remove(l.Name))
	case KindInstantVM, KindNetwork, KindInstantDir:
		return c.removeInstantLeftover(ctx, l)
	case KindScratch:
		if !c.inScratch(l.Name) {
			return fmt.Errorf("remove leftover %s: not in %s", l.Name, c.QemuScratchDir)
		}
		return ignoreNotExist(os.RemoveAll(l.Name))
	}
	return fmt.Errorf("remove leftover: unknown kind %q", l.Kind)
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
