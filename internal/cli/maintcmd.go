package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/retention"
)

func (a *App) verifyCommand() *cobra.Command {
	var readData bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the repository's structure; --read-data re-hashes every chunk",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			sink := a.progressSink()
			// Progress counts chunks; shown as (at most) chunk-size bytes each.
			cs := int64(r.Config().ChunkSize)
			rep, err := r.Verify(cmd.Context(), repo.VerifyOptions{ReadData: readData, Progress: func(done, total int64) {
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
	var p retention.Policy
	var dryRun, runGC bool
	var vm string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove recovery points outside the retention policy (per VM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.Empty() {
				return usageError("no retention policy given: use --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly or --keep-yearly")
			}
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			points, err := r.ListPoints(ctx)
			if err != nil {
				return err
			}
			var items []retention.Item
			for _, m := range points {
				if vm != "" && m.VM.Name != vm && m.VM.UUID != vm {
					continue
				}
				items = append(items, retention.Item{ID: m.ID, Time: m.Started, Group: m.VM.UUID})
			}
			decisions := retention.Apply(items, p)
			cat, _ := a.openCatalog(ctx)
			var removed, locked []string
			for _, d := range decisions {
				if d.Keep {
					continue
				}
				if dryRun {
					removed = append(removed, d.Item.ID)
					continue
				}
				if err := r.DeletePoint(ctx, d.Item.ID); errors.Is(err, repo.ErrStillLocked) {
					// Immutable repository: kept until its lock expires.
					locked = append(locked, err.Error())
					continue
				} else if err != nil {
					return fmt.Errorf("remove point %s: %w", d.Item.ID, err)
				}
				removed = append(removed, d.Item.ID)
				if cat != nil {
					_ = cat.DeletePoint(ctx, d.Item.ID)
				}
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"dry_run": dryRun, "decisions": decisions, "removed": removed, "locked": locked}); err != nil {
					return err
				}
			} else {
				for _, d := range decisions {
					verb := "keep  "
					if !d.Keep {
						verb = "remove"
						if dryRun {
							verb = "would remove"
						}
					}
					a.out("%s %s %s %v", verb, d.Item.ID, d.Item.Time.Format(time.RFC3339), d.Reasons)
				}
				for _, l := range locked {
					a.out("kept   %s", l)
				}
				a.out("%d points kept, %d removed%s", len(decisions)-len(removed), len(removed), map[bool]string{true: " (dry run)"}[dryRun])
			}
			if runGC && !dryRun && len(removed) > 0 {
				return a.runGC(cmd, false)
			}
			if !dryRun && len(removed) > 0 && !a.jsonOut {
				a.out("space is freed by kura gc")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&p.Last, "keep-last", 0, "keep the N newest points")
	f.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest point of each of the last N hours")
	f.IntVar(&p.Daily, "keep-daily", 0, "keep the newest point of each of the last N days")
	f.IntVar(&p.Weekly, "keep-weekly", 0, "keep the newest point of each of the last N weeks")
	f.IntVar(&p.Monthly, "keep-monthly", 0, "keep the newest point of each of the last N months")
	f.IntVar(&p.Yearly, "keep-yearly", 0, "keep the newest point of each of the last N years")
	f.DurationVar(&p.Within, "keep-within", 0, "keep every point newer than this duration (e.g. 72h)")
	f.BoolVar(&dryRun, "dry-run", false, "show what would be removed")
	f.BoolVar(&runGC, "gc", false, "run gc afterwards")
	f.StringVar(&vm, "vm", "", "only points of this VM (name or UUID)")
	return cmd
}

func (a *App) gcCommand() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete chunks no recovery point refers to (safe while backups run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runGC(cmd, dryRun)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be deleted")
	return cmd
}

func (a *App) runGC(cmd *cobra.Command, dryRun bool) error {
	r, err := a.openRepo(cmd.Context())
	if err != nil {
		return err
	}
	rep, err := r.GC(cmd.Context(), repo.GCOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(rep)
	}
	printGC(a, rep)
	return nil
}

func (a *App) locksCommand() *cobra.Command {
	var removeStale bool
	cmd := &cobra.Command{
		Use:   "locks",
		Short: "List repository locks; --remove-stale deletes locks of dead processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := a.backend(false)
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
	a.out("format       version %d, chunk size %s, encrypted %v", in.Config.Version, fmtBytes(int64(in.Config.ChunkSize)), in.Config.Encrypted)
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
