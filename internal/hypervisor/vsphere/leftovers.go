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
// "kura-…") a killed or failed run left on VMs — seed 003's vcbCleanup.
// A session removes its snapshot whatever the outcome, so every kura
// snapshot outside a running backup is a leftover; keep does not apply.
// Do not run it while a backup of the same VMs runs.
func (c *Connector) Leftovers(ctx context.Context, vms []string, _ map[string]bool) ([]hypervisor.Leftover, error) {
	ms, err := c.vms(ctx)
	if err != nil {
		return nil, err
	}
	var out []hypervisor.Leftover
	for _, m := range ms {
		if len(vms) > 0 && !slices.Contains(vms, m.Name) && !slices.Contains(vms, m.Config.InstanceUuid) {
			continue
		}
		if m.Snapshot == nil {
			continue
		}
		for _, s := range kuraSnapshots(m.Snapshot.RootSnapshotList) {
			out = append(out, hypervisor.Leftover{VM: m.Name, Kind: "snapshot", Name: s.Name,
				Detail: fmt.Sprintf("kura backup snapshot of %s (%s) not removed by its run; removing it consolidates its delta disks",
					s.CreateTime.Format(time.RFC3339), s.Snapshot.Value)})
		}
	}
	return out, nil
}

// RemoveLeftover implements hypervisor.Connector.
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
		for _, s := range kuraSnapshots(m.Snapshot.RootSnapshotList) {
			if s.Name == l.Name {
				return c.removeSnapshot(ctx, s.Snapshot)
			}
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
