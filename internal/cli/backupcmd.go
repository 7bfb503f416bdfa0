package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/procinfo"
)

func (a *App) backupCommand() *cobra.Command {
	var opts engine.BackupOptions
	var consistency, preexisting string
	cmd := &cobra.Command{
		Use:   "backup SPEC...",
		Short: "Back up VMs: every disk and the configuration, incrementally",
		Long: `Back up the VMs the selectors match (name:GLOB, uuid:UUID, ipaddr:ADDR|DNS,
powerstate:on|off|paused, any:, or a plain VM name). Each VM gets one recovery
point holding every protectable disk and its configuration (domain XML,
.vmx). Backups are incremental (libvirt checkpoints, vSphere changed block
tracking) unless --full; every point is still restorable on its own. A
selector that matches no VM is reported as a failed item of the job.

Exit code: 0 all VMs succeeded, 3 some failed (or a selector matched
nothing), 4 all failed, 1 nothing ran.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch hypervisor.ConsistencyMode(consistency) {
			case hypervisor.ModeAuto, hypervisor.ModeApplication, hypervisor.ModeCrash, hypervisor.ModePause:
				opts.Consistency = hypervisor.ConsistencyMode(consistency)
			default:
				return usageError("invalid --consistency %q: use auto, application, crash or pause", consistency)
			}
			if opts.Unprotected != "skip" && opts.Unprotected != "fail" {
				return usageError("invalid --unprotected %q: use skip or fail", opts.Unprotected)
			}
			p, err := hypervisor.ParsePreexisting(preexisting)
			if err != nil {
				return usageError("invalid --preexisting-snapshot: %v", err)
			}
			opts.Preexisting = p
			ctx := cmd.Context()
			if _, err := hypervisor.ParseSelectors(args); err != nil {
				return usageError("%v", err)
			}
			svc, err := a.openService(ctx, true)
			if err != nil {
				return err
			}
			svc.Progress = a.progressSink()
			rep, err := svc.Backup(ctx, args, opts)
			endProgress(svc.Progress)
			if err != nil {
				return err
			}
			if a.jsonOut {
				_ = a.printJSON(rep)
			} else {
				printBackupReport(a, rep)
			}
			switch rep.State {
			case engine.StateCompleted:
				return nil
			case engine.StatePartiallyFailed:
				return withCode(ExitPartial, errReported)
			default:
				return withCode(ExitFailed, errReported)
			}
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Full, "full", false, "read every allocated block instead of only the changed ones")
	f.StringVar(&consistency, "consistency", "auto", "auto (freeze through the guest agent, else crash-consistent), application (fail without agent), crash, pause")
	f.StringSliceVar(&opts.Tags, "tag", nil, "tag to record with the points (repeatable)")
	f.IntVar(&opts.Parallel, "parallel", 2, "VMs backed up at once")
	f.IntVar(&opts.Retries, "retries", 2, "retries for a failed VM")
	f.DurationVar(&opts.RetryDelay, "retry-delay", 10*time.Second, "first retry delay (doubles each retry)")
	f.StringVar(&opts.Unprotected, "unprotected", "skip", "disks kura cannot read: skip (record them) or fail the VM")
	f.StringVar(&preexisting, "preexisting-snapshot", "fail", "a backup snapshot of kura already on a VM (vSphere; a killed run's): fail the VM, or delete it and go on")
	return cmd
}

func printBackupReport(a *App, rep *engine.BackupReport) {
	for _, r := range rep.VMs {
		if r.Err != nil {
			a.out("FAILED  %s after %d attempt(s): %s", r.VM, r.Attempts, explain(r.Err))
			continue
		}
		m := r.Point
		a.out("OK      %s point %s (%s, %s) read %s, new %s, stored %s in %s",
			r.VM, m.ID, m.Kind, m.Consistency, fmtBytes(m.Stats.BytesRead), fmtBytes(m.Stats.BytesNew),
			fmtBytes(m.Stats.BytesStored), m.Finished.Sub(m.Started).Round(time.Millisecond))
		for _, n := range m.Notes {
			a.out("        note: %s", n)
		}
	}
	a.out("job %s: %s (peak memory %s)", rep.Job, rep.State, fmtBytes(procinfo.PeakRSS()))
}
