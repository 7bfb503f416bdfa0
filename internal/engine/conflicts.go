package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// findConflicts lists what the plan would replace: VM definitions holding
// its name or UUID, and existing files at its disk paths. Nothing is
// changed.
func (e *Engine) findConflicts(ctx context.Context, plan *hypervisor.RestorePlan) (vms, disks []Conflict, err error) {
	seen := map[string]bool{}
	for _, key := range []string{plan.Name, plan.UUID} {
		if key == "" {
			continue
		}
		vm, err := e.Conn.LookupVM(ctx, key)
		if errors.Is(err, hypervisor.ErrVMNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("look for an existing vm %s: %w", key, err)
		}
		if seen[strings.ToLower(vm.UUID)] {
			continue
		}
		seen[strings.ToLower(vm.UUID)] = true
		vms = append(vms, Conflict{Kind: "vm", Name: vm.Name, UUID: vm.UUID, Running: vm.State != hypervisor.PowerOff})
	}
	for _, d := range plan.Disks {
		if d.Skip {
			continue
		}
		exists, err := e.Conn.DiskExists(ctx, d.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("disk %s: %w", d.Target, err)
		}
		if exists {
			disks = append(disks, Conflict{Kind: "disk", Name: d.Path, Target: d.Target})
		}
	}
	return vms, disks, nil
}

// decide applies the policy to every conflict, setting its Decision. With
// abort (or an abort answer to a prompt) it fails naming every conflict.
func decide(conflicts []Conflict, opts RestoreOptions) error {
	if len(conflicts) == 0 {
		return nil
	}
	policy := opts.OnConflict
	if policy == "" {
		policy = ConflictAbort
	}
	abort := false
	for i := range conflicts {
		if abort {
			break // one abort ends the restore: ask nothing more
		}
		d := policy
		if d == ConflictPrompt {
			if opts.Prompt == nil {
				d = ConflictAbort
			} else {
				var err error
				if d, err = opts.Prompt(conflicts[i]); err != nil {
					return err
				}
			}
		}
		switch d {
		case ConflictOverwrite, ConflictKeep:
			conflicts[i].Decision = d
		default:
			abort = true
		}
	}
	if !abort {
		return nil
	}
	names := make([]string, len(conflicts))
	for i, c := range conflicts {
		names[i] = c.String()
	}
	return fmt.Errorf("%w: %s (nothing was changed; use --on-conflict overwrite to replace, keep to keep them, or restore with --name NEW beside the original)",
		ErrConflict, strings.Join(names, "; "))
}

// checkDisksInUse refuses to write over a file a running VM uses, unless
// that VM is being replaced (it is stopped first).
func (e *Engine) checkDisksInUse(ctx context.Context, jobs []diskJob, replaced []Conflict) error {
	over := map[string]string{}
	for _, j := range jobs {
		if j.overwrite {
			over[filepath.Clean(j.path)] = j.entry.Target
		}
	}
	if len(over) == 0 {
		return nil
	}
	stopping := map[string]bool{}
	for _, c := range replaced {
		if c.Decision == ConflictOverwrite {
			stopping[strings.ToLower(c.UUID)] = true
		}
	}
	vms, err := e.Conn.ListVMs(ctx)
	if err != nil {
		return err
	}
	for _, vm := range vms {
		if vm.State == hypervisor.PowerOff || stopping[strings.ToLower(vm.UUID)] {
			continue
		}
		for _, d := range vm.Disks {
			if t, ok := over[filepath.Clean(d.Source)]; ok && d.Source != "" {
				return fmt.Errorf("%w: disk %s: %s is in use by running vm %s (stop it, or overwrite the vm too)",
					ErrConflict, t, d.Source, vm.Name)
			}
		}
	}
	return nil
}

// Conflicts lists what restoring according to plan would collide with
// (VMs holding its name or UUID, files at its disk paths), changing
// nothing: the preview of a restore.
func (e *Engine) Conflicts(ctx context.Context, plan *hypervisor.RestorePlan) ([]Conflict, error) {
	vms, disks, err := e.findConflicts(ctx, plan)
	if err != nil {
		return nil, err
	}
	return append(vms, disks...), nil
}
