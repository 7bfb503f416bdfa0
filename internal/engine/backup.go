package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/throttle"
)

// Sentinel errors.
var (
	// ErrUnprotectedDisk means a VM has a disk kura cannot read and the
	// policy is to fail.
	ErrUnprotectedDisk = errors.New("vm has a disk kura cannot protect")
	// ErrNothingToProtect means a VM has no disk kura can read.
	ErrNothingToProtect = errors.New("vm has no protectable disk")
)

// Job states, as package phase defines them.
const (
	StateCompleted       = phase.Completed
	StatePartiallyFailed = phase.PartiallyFailed
	StateFailed          = phase.Failed
	StateCancelled       = phase.Cancelled
)

// Engine runs backup and restore jobs.
type Engine struct {
	Repo     *repo.Repository
	Catalog  catalog.Catalog // optional
	Conn     hypervisor.Connector
	Logger   *slog.Logger
	Progress progress.Sink
	// Now returns the current time; tests inject a fixed clock.
	Now func() time.Time
	// Job, when set, is the id of a catalog job the caller has started
	// (a server's queued job) and will finish: the engine records its VMs
	// in it instead of starting and finishing a job of its own.
	Job string

	heartbeats sync.Map // job id → chan struct{} stopping its heartbeat
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) emit(ev progress.Event) {
	if e.Progress == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = e.now()
	}
	e.Progress.Emit(ev)
}

// BackupOptions controls a backup job.
type BackupOptions struct {
	Full        bool
	Consistency hypervisor.ConsistencyMode
	Tags        []string
	// Parallel is the number of VMs backed up at once (default 2).
	Parallel int
	// Retries is how many times a failed VM is tried again (default 0).
	Retries int
	// RetryDelay is the first back-off delay; it doubles on each retry.
	RetryDelay time.Duration
	// Unprotected is "skip" (record the disk as unprotected and go on) or
	// "fail" (fail the VM).
	Unprotected string
	// Unmatched are selectors that matched no VM: each is a failed item of
	// the job (a typo must not pass for success).
	Unmatched []hypervisor.Match
	// Distrust names objects a verify found damaged (catalog.Damaged):
	// backups store them again when they meet the same data (repo.Writer
	// Distrust), which heals the points using them.
	Distrust []string
	// Skip, when set, is asked about each VM first: a non-empty reason
	// skips it (phase Skipped; a VM another group backed up in the same
	// schedule slot, say).
	Skip func(vm hypervisor.VM) string
	// Slot, when set, is called before each VM is backed up and waits for
	// room (limits across jobs: VMs at once per host, per repository);
	// release is called when the VM is done.
	Slot func(ctx context.Context, vm hypervisor.VM) (release func(), err error)
	// Throttle limits the reads of every disk together (nil: no limit).
	Throttle *throttle.Limiter
	// Preexisting is what to do with a backup snapshot of kura a killed
	// run left on a VM (vSphere): fail (the default) or delete.
	Preexisting hypervisor.PreexistingPolicy
}

// VMResult is the outcome for one VM.
type VMResult struct {
	VM       string         `json:"vm"`
	UUID     string         `json:"uuid"`
	State    phase.VM       `json:"state"` // Succeeded or Failed
	Attempts int            `json:"attempts"`
	Point    *repo.Manifest `json:"point,omitempty"`
	Error    string         `json:"error,omitempty"`
	Err      error          `json:"-"`
}

// BackupReport is the outcome of a backup job.
type BackupReport struct {
	Job      string     `json:"job"`
	State    phase.Job  `json:"state"`
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	VMs      []VMResult `json:"vms"`
}

// Backup backs up each VM, in parallel up to opts.Parallel, each isolated
// from the others. It returns an error only when the job could not run at
// all; per-VM failures are in the report.
func (e *Engine) Backup(ctx context.Context, vms []hypervisor.VM, opts BackupOptions) (*BackupReport, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 2
	}
	if opts.Consistency == "" {
		opts.Consistency = hypervisor.ModeAuto
	}
	if opts.Unprotected == "" {
		opts.Unprotected = "skip"
	}
	rep := &BackupReport{Started: e.now(), VMs: make([]VMResult, len(vms))}
	// The newest point of each VM is its parent: read the manifests once
	// for the whole job, not once per VM.
	latest, err := e.latestPoints(ctx, vms)
	if err != nil {
		return nil, err
	}
	jobID := e.startJob(ctx, "backup")
	rep.Job = jobID
	e.emit(progress.Event{Kind: "job-start", Job: jobID, Total: int64(len(vms))})

	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				rep.VMs[i] = VMResult{VM: vm.Name, UUID: vm.UUID, State: phase.VMFailed, Err: ctx.Err(), Error: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			if opts.Skip != nil {
				if why := opts.Skip(vm); why != "" {
					rep.VMs[i] = VMResult{VM: vm.Name, UUID: vm.UUID, State: phase.Skipped, Error: why}
					e.recordJobVM(ctx, jobID, rep.VMs[i])
					e.emit(progress.Event{Kind: progress.Message, Job: jobID, VM: vm.Name, Msg: "skipped: " + why})
					return
				}
			}
			if opts.Slot != nil {
				release, err := opts.Slot(ctx, vm)
				if err != nil {
					rep.VMs[i] = VMResult{VM: vm.Name, UUID: vm.UUID, State: phase.VMFailed, Err: err, Error: err.Error()}
					e.recordJobVM(ctx, jobID, rep.VMs[i])
					return
				}
				defer release()
			}
			rep.VMs[i] = e.backupWithRetries(ctx, jobID, vm, latest[vm.UUID], opts)
		}()
	}
	wg.Wait()

	for _, m := range opts.Unmatched {
		r := VMResult{VM: m.Selector.String(), State: phase.VMFailed, Err: m.Err, Error: m.Err.Error()}
		e.recordJobVM(ctx, jobID, r)
		rep.VMs = append(rep.VMs, r)
	}
	ok, skipped := 0, 0
	for _, r := range rep.VMs {
		switch {
		case r.State == phase.Skipped:
			skipped++
		case r.Err == nil:
			ok++
		}
	}
	rep.State = phase.Outcome(ok, len(rep.VMs)-ok-skipped, skipped)
	rep.Finished = e.now()
	e.finishJob(ctx, jobID, rep.State, rep)
	e.emit(progress.Event{Kind: "job-done", Job: jobID, Done: int64(ok), Total: int64(len(vms)),
		Data: map[string]any{"state": rep.State}})
	return rep, nil
}

func (e *Engine) backupWithRetries(ctx context.Context, jobID string, vm hypervisor.VM, parent *repo.Manifest, opts BackupOptions) VMResult {
	res := VMResult{VM: vm.Name, UUID: vm.UUID}
	delay := opts.RetryDelay
	for attempt := 1; ; attempt++ {
		res.Attempts = attempt
		e.emit(progress.Event{Kind: "vm-start", Job: jobID, VM: vm.Name, Data: map[string]any{"attempt": attempt}})
		m, err := e.backupVM(ctx, jobID, vm, parent, opts)
		if err == nil {
			res.State, res.Point, res.Err, res.Error = phase.Succeeded, m, nil, ""
			e.emit(progress.Event{Kind: "vm-done", Job: jobID, VM: vm.Name,
				Data: map[string]any{"point": m.ID, "kind": m.Kind, "consistency": m.Consistency}})
			break
		}
		res.State, res.Err, res.Error = phase.VMFailed, err, err.Error()
		e.log().Warn("vm backup failed", "vm", vm.Name, "attempt", attempt, "err", err)
		if attempt > opts.Retries || !retryable(ctx, err) {
			e.emit(progress.Event{Kind: "vm-failed", Job: jobID, VM: vm.Name, Err: err.Error()})
			break
		}
		e.emit(progress.Event{Kind: "vm-retry", Job: jobID, VM: vm.Name, Err: err.Error(),
			Data: map[string]any{"attempt": attempt, "delay": delay.String()}})
		if !sleepCtx(ctx, delay) {
			res.Err, res.Error = ctx.Err(), ctx.Err().Error()
			break
		}
		delay *= 2
	}
	e.recordJobVM(ctx, jobID, res)
	return res
}

// retryable says whether trying again could help.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return !errors.Is(err, ErrUnprotectedDisk) && !errors.Is(err, ErrNothingToProtect) &&
		!errors.Is(err, hypervisor.ErrVMNotFound) && !errors.Is(err, hypervisor.ErrUnsupported)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// protectedDisks returns the targets to back up and notes on skipped disks.
func protectedDisks(vm hypervisor.VM, policy string) ([]string, []string, error) {
	var targets, notes []string
	for _, d := range vm.Disks {
		switch {
		case d.Protectable:
			targets = append(targets, d.Target)
		case d.Device == "cdrom" || d.Device == "floppy":
			// removable media are not part of the VM's data
		case policy == "fail":
			return nil, nil, fmt.Errorf("%w: %s (%s); use --unprotected skip to back up the other disks",
				ErrUnprotectedDisk, d.Target, d.Reason)
		default:
			notes = append(notes, fmt.Sprintf("disk %s not protected: %s", d.Target, d.Reason))
		}
	}
	if len(targets) == 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrNothingToProtect, vm.Name)
	}
	return targets, notes, nil
}
