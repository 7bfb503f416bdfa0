package libvirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Leftover kinds of instant recovery and boot verification.
const (
	KindInstantVM  = "instant-vm"
	KindNetwork    = "network"
	KindInstantDir = "instant-dir"
)

// Name prefixes of what instant recovery and boot verification create in
// the scratch directory and as networks.
const (
	InstantPrefix = Prefix + "instant-"
	VerifyPrefix  = Prefix + "verify-"
)

// ownerAlive reports whether the kura process that made dir (through
// InstantDir) still runs.
func ownerAlive(dir string) bool {
	_, live := dirOwner(dir)
	return live
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// instantLeftovers reports boot verification VMs whose kura process is
// gone, their isolated networks, and instant directories no VM uses and
// no live process owns. Instant VMs of kura instant are never leftovers:
// their overlays hold the guest's writes.
func (c *Connector) instantLeftovers(ctx context.Context, vms []string) ([]hypervisor.Leftover, error) {
	// A leftover belongs to the VMs asked for by its own name or by the
	// VM its point was taken of.
	want := func(name, source string) bool {
		return len(vms) == 0 || slices.Contains(vms, name) ||
			source != "" && slices.ContainsFunc(vms, func(v string) bool { return strings.EqualFold(v, source) })
	}
	dirTag := func(dir string) hypervisor.InstantTag {
		var t hypervisor.InstantTag
		if b, err := os.ReadFile(filepath.Join(dir, tagFile)); err == nil {
			_ = json.Unmarshal(b, &t)
		}
		return t
	}
	ivms, err := c.InstantVMs(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var out []hypervisor.Leftover
	used := map[string]bool{}
	for _, v := range ivms {
		dead := v.Tag.Role == hypervisor.RoleVerify && (v.Tag.Host == "" || v.Tag.Host == host) && !pidAlive(v.Tag.Owner)
		if !dead {
			used[v.Tag.Dir] = true
			continue
		}
		if want(v.Name, v.Tag.Source) || want(v.UUID, "") {
			out = append(out, hypervisor.Leftover{VM: v.Name, Kind: KindInstantVM, Name: v.Name,
				Detail: fmt.Sprintf("boot verification vm of point %s whose kura process (pid %d) is gone", v.Tag.Point, v.Tag.Owner)})
		}
	}
	nets, _, err := c.lv.ConnectListAllNetworks(1, 0)
	if err != nil {
		return nil, mapErr("list networks", err)
	}
	for _, n := range nets {
		dir := filepath.Join(c.QemuScratchDir, n.Name)
		if !strings.HasPrefix(n.Name, VerifyPrefix) || !want(n.Name, dirTag(dir).Source) {
			continue
		}
		if !ownerAlive(dir) {
			out = append(out, hypervisor.Leftover{VM: n.Name, Kind: KindNetwork, Name: n.Name,
				Detail: "isolated network of a boot verification whose kura process is gone"})
		}
	}
	for _, prefix := range []string{InstantPrefix, VerifyPrefix} {
		dirs, _ := filepath.Glob(filepath.Join(c.QemuScratchDir, prefix+"*"))
		for _, dir := range dirs {
			name := filepath.Base(dir)
			if used[dir] || ownerAlive(dir) || !want(name, dirTag(dir).Source) {
				continue
			}
			out = append(out, hypervisor.Leftover{VM: name, Kind: KindInstantDir, Name: dir,
				Detail: "directory of an instant vm or boot verification no vm uses and no kura process owns"})
		}
	}
	return out, nil
}

// removeInstantLeftover removes one leftover instantLeftovers reported.
func (c *Connector) removeInstantLeftover(ctx context.Context, l hypervisor.Leftover) error {
	switch l.Kind {
	case KindInstantVM:
		d, err := c.lookup(l.Name)
		if errors.Is(err, hypervisor.ErrVMNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.stop(d); err != nil {
			return err
		}
		if p, err := c.lv.DomainIsPersistent(d); err == nil && p == 1 {
			return mapErr("undefine "+d.Name, c.lv.DomainUndefineFlags(d, golibvirt.DomainUndefineKeepNvram))
		}
		return nil
	case KindNetwork:
		return c.RemoveNetwork(ctx, l.Name)
	case KindInstantDir:
		if !c.inScratch(l.Name) {
			return fmt.Errorf("remove leftover %s: not in %s", l.Name, c.QemuScratchDir)
		}
		return ignoreNotExist(os.RemoveAll(l.Name))
	}
	return fmt.Errorf("remove leftover: unknown kind %q", l.Kind)
}
