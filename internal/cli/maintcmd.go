package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
)

func (a *App) verifyCommand() *cobra.Command {
	var readData bool
	var bf bootFlags
	var outdated time.Duration
	cmd := &cobra.Command{
		Use:   "verify [--boot POINT|SPEC...]",
		Short: "Check the repository's structure; --read-data re-hashes every chunk; --boot boots points",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bf.boot {
				return a.runVerifyBoot(cmd, args, bf)
			}
			if len(args) > 0 {
				return usageError("verify takes no arguments without --boot")
			}
			svc, err := a.openService(cmd.Context(), false)
			if err != nil {
				return err
			}
			sink := a.progressSink()
			// Progress counts chunks; shown as (at most) chunk-size bytes each.
			cs := int64(svc.Repo.Config().ChunkSize)
			rep, err := svc.Verify(cmd.Context(), service.VerifyOptions{ReadData: readData, OutdatedAfter: outdated,
				Progress: func(done, total int64) {
					sink.Emit(progress.Event{Kind: "disk-progress", Job: "verify", VM: "verify", Disk: "chunks", Done: done * cs, Total: total * cs})
				}})
			endProgress(sink)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				printVerify(a, rep)
			}
			if len(rep.Problems) > 0 {
				return withCode(ExitProblems, errReported)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "read, decrypt and re-hash every referenced chunk")
	bf.bind(cmd)
	cmd.Flags().DurationVar(&outdated, "outdated-after", 0, "with --read-data: re-hash only chunks not verified within this long (e.g. 720h)")
	return cmd
}

func printVerify(a *App, rep *repo.VerifyReport) {
	for _, p := range rep.Problems {
		a.out("%s %s: %s", p.Kind, p.Object, p.Detail)
		for _, af := range p.Affected {
			a.out("    affects point %s disk %s", af.Point, af.Disk)
		}
	}
	if len(rep.Problems) == 0 {
		a.out("no problems found: %d points, %d indexes, %d chunks checked, %s of chunk data re-hashed",
			rep.Points, rep.Indexes, rep.Chunks, fmtBytes(rep.BytesRead))
		return
	}
	a.out("%d problems found; affected recovery points cannot be fully restored. Run a new full backup (kura backup --full) of the affected VMs.", len(rep.Problems))
}

func (a *App) pruneCommand() *cobra.Command {
	var opts service.PruneOptions
	p := &opts.Policy
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove recovery points outside the retention policy (per VM)",
		Long: `Remove the recovery points a retention policy does not keep, per VM. Every
rule keeps points independently; a point is kept if any rule keeps it. A count
of -1 keeps all the points the rule applies to (unlimited). Points a restore,
export, file browser or instant VM is reading are kept this time. Space is
freed by kura gc (or --gc).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.Empty() {
				return usageError("%v", service.ErrEmptyPolicy)
			}
			ctx := cmd.Context()
			svc, err := a.openService(ctx, false)
			if err != nil {
				return err
			}
			rep, err := svc.Prune(ctx, opts)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			removed := map[string]bool{}
			for _, id := range rep.Removed {
				removed[id] = true
			}
			for _, d := range rep.Decisions {
				verb := "keep  "
				switch {
				case removed[d.Item.ID] && opts.DryRun:
					verb = "would remove"
				case removed[d.Item.ID]:
					verb = "remove"
				case !d.Keep:
					verb = "in use"
				}
				a.out("%s %s %s %v", verb, d.Item.ID, d.Item.Time.Format(time.RFC3339), d.Reasons)
			}
			a.out("%d points kept, %d removed%s", len(rep.Decisions)-len(rep.Removed), len(rep.Removed),
				map[bool]string{true: " (dry run)"}[opts.DryRun])
			printKept(a, rep.Kept)
			switch {
			case rep.GC != nil:
				printGC(a, rep.GC)
			case !opts.DryRun && len(rep.Removed) > 0:
				a.out("space is freed by kura gc")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&p.Last, "keep-last", 0, "keep the N newest points (-1: all)")
	f.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest point of each of the last N hours (-1: every hour)")
	f.IntVar(&p.Daily, "keep-daily", 0, "keep the newest point of each of the last N days (-1: every day)")
	f.IntVar(&p.Weekly, "keep-weekly", 0, "keep the newest point of each of the last N weeks (-1: every week)")
	f.IntVar(&p.Monthly, "keep-monthly", 0, "keep the newest point of each of the last N months (-1: every month)")
	f.IntVar(&p.Quarterly, "keep-quarterly", 0, "keep the newest point of each of the last N calendar quarters (-1: every quarter)")
	f.IntVar(&p.Yearly, "keep-yearly", 0, "keep the newest point of each of the last N years (-1: every year)")
	f.DurationVar(&p.Within, "keep-within", 0, "keep every point newer than this duration before the VM's newest (e.g. 72h)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "show what would be removed")
	f.BoolVar(&opts.GC, "gc", false, "run gc afterwards")
	f.StringVar(&opts.VM, "vm", "", "only points of this VM (name or UUID)")
	return cmd
}

// printKept lists points a policy or a delete would remove but a reader holds.
func printKept(a *App, kept map[string]string) {
	for id, who := range kept {
		if strings.HasPrefix(who, "locked") { // immutable repository
			a.out("kept %s: %s", id, who)
			continue
		}
		a.out("kept %s: in use (%s); it goes at the next prune", id, who)
	}
}

func (a *App) gcCommand() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete chunks no recovery point refers to (safe while backups run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := a.openService(cmd.Context(), false)
			if err != nil {
				return err
			}
			rep, err := svc.GC(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			printGC(a, rep)
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be deleted")
	return cmd
}

func (a *App) locksCommand() *cobra.Command {
	var removeStale bool
	cmd := &cobra.Command{
		Use:   "locks",
		Short: "List repository locks; --remove-stale deletes locks of dead processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := a.backend(cmd.Context(), false)
			if err != nil {
				return err
			}
			if removeStale {
				removed, err := lock.RemoveStale(cmd.Context(), be)
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(removed)
				}
				a.out("%d stale locks removed", len(removed))
				return nil
			}
			infos, err := lock.List(cmd.Context(), be)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(infos)
			}
			for _, l := range infos {
				stale := ""
				if l.Stale {
					stale = " STALE: " + l.StaleReason
				}
				a.out("%s %-9s %s pid %d since %s%s", l.ID, l.Kind, l.Host, l.PID, l.Created.Format(time.RFC3339), stale)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&removeStale, "remove-stale", false, "delete stale locks")
	return cmd
}

func printGC(a *App, rep *repo.GCReport) {
	a.out("%d points keep %d chunks; %d unused chunks and %d unused indexes (%s)",
		rep.Points, rep.ReferencedChunks, rep.UnusedChunks, rep.UnusedIndexes, fmtBytes(rep.UnusedBytes))
	switch {
	case rep.DryRun:
		a.out("dry run: nothing deleted")
	case rep.Deferred:
		a.out("deletion deferred: backups that started before this gc are still running (%s); run kura gc again when they finish",
			strings.Join(rep.DeferredBy, "; "))
	default:
		a.out("deleted %d chunks and %d indexes, %s freed", rep.DeletedChunks, rep.DeletedIndexes, fmtBytes(rep.BytesFreed))
	}
	if rep.TempRemoved > 0 {
		a.out("removed %d leftover temporary files", rep.TempRemoved)
	}
	if rep.Locked > 0 {
		a.out("%d more unused objects (%s) are still locked by the immutability period and were left alone: they become deletable between %s and %s",
			rep.Locked, fmtBytes(rep.LockedBytes), rep.LockedFrom.UTC().Format(time.RFC3339), rep.LockedUntil.UTC().Format(time.RFC3339))
	}
}

func printInfo(a *App, location string, in *repo.Info) {
	a.out("repository   %s", in.Config.ID)
	a.out("location     %s", location)
	a.out("format       version %d, chunk size %s, encrypted %v, compression %s, ids %s", in.Config.Version,
		fmtBytes(int64(in.Config.ChunkSize)), in.Config.Encrypted, in.Config.Compression, in.Config.IDHash())
	a.out("points       %d", in.Points)
	a.out("chunks       %d (%s)", in.Chunks, fmtBytes(in.ChunkBytes))
	a.out("stored       %s in all", fmtBytes(in.StoredBytes))
	a.out("logical      %s of disks (%s non-zero)", fmtBytes(in.LogicalBytes), fmtBytes(in.ReferencedRaw))
	a.out("unique       %s before compression", fmtBytes(in.UniqueRaw))
	a.out("dedup        %.2fx", in.DedupRatio)
	a.out("compression  %.2fx", in.CompressionRatio)
	a.out("backend      %s, %d objects", in.Backend, in.Objects)
	if im := in.Config.Immutable; im != nil {
		a.out("immutable    every point's objects locked for %s (+%s slack)", im.Retain(), im.Slack())
	}
	if j := in.LastJob; j != nil {
		q := j.Requests
		a.out("last job     point %s (%s): %d requests (PUT %d, GET %d, HEAD %d, LIST %d, DELETE %d, retention %d, retried %d), %s sent, %s received",
			j.Point, j.Kind, q.Total(), q.Put, q.Get, q.Head, q.List, q.Delete, q.Retention, q.Retries, fmtBytes(q.BytesUp), fmtBytes(q.BytesDown))
	}
}
