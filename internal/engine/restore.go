package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

// defineTimeout bounds committing the images and defining the VM once every
// disk is written; that last step is not interrupted by cancellation, so a
// restore is either not visible at all or complete.
const defineTimeout = 2 * time.Minute

// Sentinel errors of restores.
var (
	// ErrConflict means a VM definition or a disk file the restore would
	// replace exists and the policy is to abort.
	ErrConflict = errors.New("restore conflicts with what exists")
)

// ConflictPolicy says what to do with an existing VM definition or disk
// file a restore would replace.
type ConflictPolicy string

// Conflict policies.
const (
	// ConflictPrompt asks RestoreOptions.Prompt for each conflict.
	ConflictPrompt ConflictPolicy = "prompt"
	// ConflictOverwrite replaces: a running VM is stopped and undefined
	// first, existing files are replaced.
	ConflictOverwrite ConflictPolicy = "overwrite"
	// ConflictKeep leaves what exists untouched and restores the rest.
	ConflictKeep ConflictPolicy = "keep"
	// ConflictAbort fails before changing anything, naming every conflict.
	ConflictAbort ConflictPolicy = "abort"
)

// ParseConflictPolicy checks a policy name.
func ParseConflictPolicy(s string) (ConflictPolicy, error) {
	switch p := ConflictPolicy(s); p {
	case ConflictPrompt, ConflictOverwrite, ConflictKeep, ConflictAbort:
		return p, nil
	}
	return "", fmt.Errorf("invalid conflict policy %q: use prompt, overwrite, keep or abort", s)
}

// Conflict is an existing VM definition or disk file in the way of a
// restore.
type Conflict struct {
	Kind     string         `json:"kind"` // vm or disk
	Name     string         `json:"name"` // VM name or file path
	UUID     string         `json:"uuid,omitempty"`
	Target   string         `json:"target,omitempty"` // disk target
	Running  bool           `json:"running,omitempty"`
	Decision ConflictPolicy `json:"decision,omitempty"` // overwrite or keep
}

func (c Conflict) String() string {
	if c.Kind == "vm" {
		s := fmt.Sprintf("vm %s (%s) is defined", c.Name, c.UUID)
		if c.Running {
			s += " and running"
		}
		return s
	}
	return fmt.Sprintf("disk %s: file %s exists", c.Target, c.Name)
}

// RestoreOptions control a restore.
type RestoreOptions struct {
	// Name of the restored VM; empty restores in place (the original name,
	// UUID, MAC addresses and disk paths).
	Name string
	// Storage is where new disk images go, in the target's terms: an
	// absolute directory or a libvirt directory storage pool, a vSphere
	// datastore. Default: beside the original's disks.
	Storage string
	// Folder and ResourcePool place a new VM in a vSphere inventory.
	Folder, ResourcePool string
	// NetworkMap maps networks or bridges of the saved configuration to
	// new ones.
	NetworkMap map[string]string
	// Format of the restored images (libvirt: qcow2 or raw), or empty (the
	// connector's default for each disk).
	Format string
	// Start the VM once restored.
	Start bool
	// Plan, when set, is used as is instead of one derived from the
	// options above (kura restore --plan-file).
	Plan *hypervisor.RestorePlan
	// OnConflict is the conflict policy (default abort).
	OnConflict ConflictPolicy
	// Prompt decides one conflict under ConflictPrompt: it returns
	// overwrite, keep or abort. Nil means abort.
	Prompt func(Conflict) (ConflictPolicy, error)
	// Workers fetching and decoding chunks (default GOMAXPROCS).
	Workers int
	// ScratchDir holds qemu-nbd's sockets.
	ScratchDir string
}

// RestoreReport is the outcome of restoring one VM.
type RestoreReport struct {
	Point    string        `json:"point"`
	SourceVM string        `json:"source_vm"`
	VM       string        `json:"vm"`
	UUID     string        `json:"uuid"`
	InPlace  bool          `json:"in_place"`
	Host     string        `json:"host"`
	Disks    []DiskRestore `json:"disks"`
	// Conflicts found and how each was decided.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Defined is false when the existing definition was kept.
	Defined  bool      `json:"defined"`
	Started  bool      `json:"started"`
	Notes    []string  `json:"notes,omitempty"`
	Begun    time.Time `json:"begun"`
	Finished time.Time `json:"finished"`
	Seconds  float64   `json:"seconds"`
}

// restoreSource describes point m for a connector. Points written before
// kura recorded the hypervisor and configuration format are libvirt's.
func restoreSource(m *repo.Manifest) *hypervisor.RestoreSource {
	src := &hypervisor.RestoreSource{Point: m.ID, VMName: m.VM.Name, VMUUID: m.VM.UUID, Hypervisor: m.VM.Hypervisor,
		Config: m.Config, ConfigFormat: m.ConfigFormat}
	if src.ConfigFormat == "" && len(src.Config) > 0 {
		src.ConfigFormat = hypervisor.LegacyConfigFormat
	}
	if src.Hypervisor == "" {
		src.Hypervisor = hypervisor.LegacyHypervisor
	}
	for _, d := range m.Disks {
		src.Disks = append(src.Disks, hypervisor.SourceDisk{Target: d.Target, Source: d.Source, Format: d.Format, Size: d.Size})
	}
	return src
}

// PlanRestore derives the restore plan of point m from the options (or
// checks opts.Plan against the point) through the target connector. A
// point from another kind of hypervisor, which the target cannot convert,
// is refused (hypervisor.ErrIncompatible).
func (e *Engine) PlanRestore(ctx context.Context, m *repo.Manifest, opts RestoreOptions) (*hypervisor.RestorePlan, error) {
	src := restoreSource(m)
	if err := hypervisor.CheckRestorable(e.Conn.Capabilities(), e.Conn.URI(), src); err != nil {
		return nil, err
	}
	if opts.Plan != nil {
		p := *opts.Plan
		if p.Point != "" && p.Point != m.ID {
			return nil, fmt.Errorf("%w: the plan is for point %s, not %s", hypervisor.ErrInvalidPlan, p.Point, m.ID)
		}
		p.Point = m.ID
		if opts.Start {
			p.Start = true
		}
		check := p
		if _, _, err := e.Conn.PrepareRestore(ctx, src, &check); err != nil {
			return nil, err
		}
		return &p, nil
	}
	return e.Conn.PlanRestore(ctx, src, hypervisor.RestoreRequest{Name: opts.Name, Storage: opts.Storage,
		Folder: opts.Folder, ResourcePool: opts.ResourcePool, NetworkMap: opts.NetworkMap, Format: opts.Format, Start: opts.Start})
}

// Restore restores point m as one VM: plan, check conflicts before changing
// anything, apply the conflict policy, write every disk under a partial
// name, and only when all are complete commit them and define the VM (then
// start it when asked). An interrupted or failed restore leaves no VM
// defined and no image under a final name.
func (e *Engine) Restore(ctx context.Context, m *repo.Manifest, opts RestoreOptions) (*RestoreReport, error) {
	rep := &RestoreReport{Point: m.ID, SourceVM: m.VM.Name, Host: e.Conn.URI(), Begun: e.now()}
	m, release, err := e.lease(ctx, "restore", m)
	if err != nil {
		return rep, err
	}
	defer release()
	plan, err := e.PlanRestore(ctx, m, opts)
	if err != nil {
		return rep, err
	}
	config, notes, err := e.Conn.PrepareRestore(ctx, restoreSource(m), plan)
	if err != nil {
		return rep, err
	}
	rep.VM, rep.UUID, rep.Notes = plan.Name, plan.UUID, notes
	rep.InPlace = plan.Name == m.VM.Name && plan.UUID != "" && strings.EqualFold(plan.UUID, m.VM.UUID)
	vmsConf, diskConf, err := e.findConflicts(ctx, plan)
	if err != nil {
		return rep, err
	}
	all := append(append([]Conflict(nil), vmsConf...), diskConf...)
	err = decide(all, opts)
	rep.Conflicts = all
	if err != nil {
		return rep, err
	}
	vmsConf, diskConf = all[:len(vmsConf)], all[len(vmsConf):]
	jobs, err := restoreJobs(m, plan, diskConf, rep)
	if err != nil {
		return rep, err
	}
	if err := e.checkDisksInUse(ctx, jobs, vmsConf); err != nil {
		return rep, err
	}
	keepVM := false
	for _, c := range vmsConf {
		switch {
		case c.Decision == ConflictKeep:
			keepVM = true
		case c.Running:
			if err := e.Conn.StopVM(ctx, c.UUID); err != nil {
				return rep, fmt.Errorf("stop vm %s before replacing it: %w", c.Name, err)
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("vm %s was running: stopped to be replaced", c.Name))
		}
	}

	jobID := e.startJob(ctx, "restore")
	e.emit(progress.Event{Kind: progress.VMStart, Job: jobID, VM: plan.Name})
	pending, err := e.writeDisks(ctx, jobID, plan.Name, jobs, opts.ScratchDir, opts.Workers, e.Conn.CreateDisk)
	if err == nil {
		err = ctx.Err()
		if err != nil {
			pending.abort(context.WithoutCancel(ctx))
		}
	}
	if err == nil {
		rep.Disks = append(rep.Disks, pending.results...)
		// From here on the restore completes even if ctx is cancelled.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defineTimeout)
		err = e.finishRestore(dctx, pending, vmsConf, keepVM, config, plan, rep)
		cancel()
	}
	if err == nil && plan.Start {
		if serr := e.Conn.StartVM(ctx, plan.Name); serr != nil {
			err = fmt.Errorf("vm %s restored but not started: %w", plan.Name, serr)
		} else {
			rep.Started = true
		}
	}
	rep.Finished = e.now()
	rep.Seconds = rep.Finished.Sub(rep.Begun).Seconds()
	state := StateCompleted
	if err != nil {
		state = StateFailed
		e.emit(progress.Event{Kind: progress.VMFailed, Job: jobID, VM: plan.Name, Err: err.Error()})
	} else {
		e.emit(progress.Event{Kind: progress.VMDone, Job: jobID, VM: plan.Name, Data: map[string]any{"point": m.ID}})
	}
	e.finishJob(ctx, jobID, state, rep)
	return rep, err
}

// finishRestore commits the written images, replaces or keeps the VM
// definition and defines the restored VM. A connector that replaces a VM
// in place (Capabilities.ReplaceInPlace) keeps the VM of the plan's name
// and UUID: it is not undefined first.
func (e *Engine) finishRestore(ctx context.Context, pending *pendingDisks, vmsConf []Conflict, keepVM bool, config []byte,
	plan *hypervisor.RestorePlan, rep *RestoreReport) error {
	if err := pending.commit(ctx); err != nil {
		return err
	}
	if keepVM {
		rep.Notes = append(rep.Notes, "the existing definition of the vm was kept (conflict policy keep)")
		return nil
	}
	inPlace := e.Conn.Capabilities().ReplaceInPlace
	for _, c := range vmsConf {
		if inPlace && c.Name == plan.Name && strings.EqualFold(c.UUID, plan.UUID) {
			continue
		}
		if err := e.Conn.UndefineVM(ctx, c.UUID); err != nil && !errors.Is(err, hypervisor.ErrVMNotFound) {
			return fmt.Errorf("undefine vm %s to replace it: %w", c.Name, err)
		}
	}
	vm, err := e.Conn.DefineVM(ctx, config)
	if err != nil {
		return fmt.Errorf("disks restored but the vm could not be defined: %w", err)
	}
	rep.Defined, rep.UUID = true, vm.UUID
	return nil
}

// restoreJobs lists the images to write: every planned disk not skipped and
// not kept.
func restoreJobs(m *repo.Manifest, plan *hypervisor.RestorePlan, diskConf []Conflict, rep *RestoreReport) ([]diskJob, error) {
	decision := map[string]ConflictPolicy{}
	for _, c := range diskConf {
		decision[c.Target] = c.Decision
	}
	var jobs []diskJob
	for _, pd := range plan.Disks {
		if pd.Skip {
			rep.Notes = append(rep.Notes, fmt.Sprintf("disk %s not restored (skipped: the point holds no data for it, or the plan says skip)", pd.Target))
			continue
		}
		de, err := pointDisk(m, pd.Target)
		if err != nil {
			return nil, err
		}
		switch decision[pd.Target] {
		case ConflictKeep:
			rep.Disks = append(rep.Disks, DiskRestore{Target: pd.Target, Path: pd.Path, Format: pd.Format, Size: de.Size, Kept: true})
			continue
		case ConflictOverwrite:
			jobs = append(jobs, diskJob{entry: de, path: pd.Path, format: pd.Format, overwrite: true})
		default:
			jobs = append(jobs, diskJob{entry: de, path: pd.Path, format: pd.Format})
		}
	}
	return jobs, nil
}
