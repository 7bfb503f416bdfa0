package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
)

// ChoosePoints picks, for every VM of the repository that a selector
// matches, its newest point (strictly before `before` when it is not zero).
// VMs are those the points describe, whether or not they still exist;
// selectors on names and UUIDs apply (powerstate and ipaddr match only VMs
// the connector still knows, with their current state and addresses).
func (e *Engine) ChoosePoints(ctx context.Context, sels []hypervisor.Selector, before time.Time) ([]*repo.Manifest, error) {
	points, err := e.Repo.PointSummaries(ctx)
	if err != nil {
		return nil, fmt.Errorf("list recovery points: %w", err)
	}
	latest := map[string]*repo.Manifest{}
	for _, p := range points {
		if !before.IsZero() && !p.Started.Before(before) {
			continue
		}
		key := strings.ToLower(p.VM.UUID)
		if key == "" {
			key = "name:" + p.VM.Name
		}
		if cur := latest[key]; cur == nil || p.Started.After(cur.Started) {
			latest[key] = p
		}
	}
	live := map[string]hypervisor.VM{}
	if e.Conn != nil {
		if vms, err := e.Conn.ListVMs(ctx); err == nil {
			for _, vm := range vms {
				live[strings.ToLower(vm.UUID)] = vm
			}
		}
	}
	vms := make([]hypervisor.VM, 0, len(latest))
	byUUID := map[string]*repo.Manifest{}
	for key, p := range latest {
		vm, ok := live[strings.ToLower(p.VM.UUID)]
		if !ok {
			vm = hypervisor.VM{Name: p.VM.Name, UUID: p.VM.UUID, State: hypervisor.PowerOff}
		}
		vm.UUID = key
		byUUID[key] = p
		vms = append(vms, vm)
	}
	sel, err := hypervisor.Select(ctx, vms, sels, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*repo.Manifest, 0, len(sel))
	for _, vm := range sel {
		out = append(out, byUUID[vm.UUID])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VM.Name < out[j].VM.Name })
	return out, nil
}

// RestoreResult is the outcome for one VM of RestoreAll.
type RestoreResult struct {
	VM     string         `json:"vm"`
	Point  string         `json:"point"`
	State  phase.VM       `json:"state"` // Succeeded or Failed
	Report *RestoreReport `json:"report,omitempty"`
	Error  string         `json:"error,omitempty"`
	Err    error          `json:"-"`
}

// RestoreAllReport is the outcome of RestoreAll.
type RestoreAllReport struct {
	State phase.Job       `json:"state"`
	VMs   []RestoreResult `json:"vms"`
}

// RestoreAll restores each point with the same options, one after
// another, each isolated from the others: a failing VM is reported and the
// next one restored. nameSuffix, when not empty, restores each VM beside
// its original as <name><suffix> (opts.Name and opts.Plan must be empty).
func (e *Engine) RestoreAll(ctx context.Context, points []*repo.Manifest, opts RestoreOptions, nameSuffix string) (*RestoreAllReport, error) {
	if opts.Name != "" || opts.Plan != nil {
		return nil, fmt.Errorf("restore of several vms: a name or a plan applies to one vm only (use a name suffix)")
	}
	rep := &RestoreAllReport{}
	ok := 0
	for _, p := range points {
		o := opts
		if nameSuffix != "" {
			o.Name = p.VM.Name + nameSuffix
		}
		res := RestoreResult{VM: p.VM.Name, Point: p.ID, State: phase.Succeeded}
		if err := ctx.Err(); err != nil {
			res.State, res.Err, res.Error = phase.VMFailed, err, err.Error()
			rep.VMs = append(rep.VMs, res)
			continue
		}
		r, err := e.Restore(ctx, p, o)
		res.Report = r
		if err != nil {
			res.State, res.Err, res.Error = phase.VMFailed, err, err.Error()
			e.log().Warn("vm restore failed", "vm", p.VM.Name, "point", p.ID, "err", err)
		} else {
			ok++
		}
		rep.VMs = append(rep.VMs, res)
	}
	switch {
	case ok == len(rep.VMs):
		rep.State = StateCompleted
	case ok == 0:
		rep.State = StateFailed
	default:
		rep.State = StatePartiallyFailed
	}
	return rep, nil
}
