package vsphere

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Leftovers implements hypervisor.Connector: kura snapshots (named
// "kura-…") no live session of this host holds — seed 003's vcbCleanup.
// One whose session this host cannot check (another host's, see
// preexisting) is listed too, saying so: do not clean up a VM another
// host is backing up. A snapshot holds no change-tracking
// state, so q.Keep does not apply and none is foreign: a killed run's
// snapshot is removed whatever repository it was for (Owner names it).
func (c *Connector) Leftovers(ctx context.Context, q hypervisor.LeftoverQuery) ([]hypervisor.Leftover, error) {
	ms, err := c.vms(ctx)
	if err != nil {
		return nil, err
	}
	var out []hypervisor.Leftover
	for _, m := range ms {
		if len(q.VMs) > 0 && !slices.Contains(q.VMs, m.Name) && !slices.Contains(q.VMs, m.Config.InstanceUuid) {
			continue
		}
		if m.Snapshot == nil {
			continue
		}
		for _, k := range kuraSnapshots(m.Snapshot.RootSnapshotList) {
			if k.state == stateLive {
				continue
			}
			why := "not removed by its run"
			if k.state == stateUnknown {
				why = "whose run this host cannot check"
			}
			out = append(out, hypervisor.Leftover{VM: m.Name, Kind: "snapshot", Name: k.tree.Name, Owner: k.repo,
				Detail: fmt.Sprintf("backup snapshot of %s (%s) of %s, %s; removing it consolidates its delta disks",
					k.tree.CreateTime.Format(time.RFC3339), k.tree.Snapshot.Value, k.who(), why)})
		}
	}
	return out, nil
}

// RemoveLeftover implements hypervisor.Connector. The snapshot of a live
// session is refused.
func (c *Connector) RemoveLeftover(ctx context.Context, l hypervisor.Leftover) error {
	if l.Kind != "snapshot" {
		return fmt.Errorf("vsphere: unknown leftover kind %q", l.Kind)
	}
	ms, err := c.vms(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Name != l.VM || m.Snapshot == nil {
			continue
		}
		for _, k := range kuraSnapshots(m.Snapshot.RootSnapshotList) {
			if k.tree.Name != l.Name {
				continue
			}
			if k.state == stateLive {
				return fmt.Errorf("vsphere %s: snapshot %s: %s is using it: %w", l.VM, l.Name, k.who(), hypervisor.ErrBusy)
			}
			return c.removeSnapshot(ctx, k.tree.Snapshot)
		}
	}
	return nil // already gone
}

// snapshotCount is the number of snapshots of a tree.
func snapshotCount(tree []types.VirtualMachineSnapshotTree) int {
	n := len(tree)
	for _, t := range tree {
		n += snapshotCount(t.ChildSnapshotList)
	}
	return n
}
