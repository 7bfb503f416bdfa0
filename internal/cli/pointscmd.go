package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/repo"
)

func (a *App) pointsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "points", Short: "List and inspect recovery points"}
	var vm string
	list := &cobra.Command{
		Use:   "list",
		Short: "List recovery points (from the repository)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			points, err := r.PointSummaries(cmd.Context())
			if err != nil {
				return err
			}
			sel := points[:0]
			for _, p := range points {
				if vm == "" || p.VM.Name == vm || p.VM.UUID == vm {
					sel = append(sel, p)
				}
			}
			if a.jsonOut {
				return a.printJSON(sel)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POINT\tTIME\tVM\tKIND\tCONSISTENCY\tDISKS\tREAD\tNEW\tSTORED\tDURATION")
			for _, p := range sel {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", p.ID, p.Started.Local().Format("2006-01-02 15:04:05"),
					p.VM.Name, p.Kind, p.Consistency, len(p.Disks), fmtBytes(p.Stats.BytesRead), fmtBytes(p.Stats.BytesNew),
					fmtBytes(p.Stats.BytesStored), p.Finished.Sub(p.Started).Round(time.Millisecond))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&vm, "vm", "", "only points of this VM (name or UUID)")
	show := &cobra.Command{
		Use:   "show POINT",
		Short: "Show a recovery point in detail (POINT may be a unique prefix)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, m, err := a.loadPoint(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(m)
			}
			printPoint(a, m)
			return nil
		},
	}
	var runGC bool
	del := &cobra.Command{
		Use:   "delete POINT...",
		Short: "Delete recovery points (other points never depend on them); --gc frees the space",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := a.openService(ctx, false)
			if err != nil {
				return err
			}
			rep, err := svc.DeletePoints(ctx, args, runGC)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			for _, id := range rep.Deleted {
				a.out("deleted point %s", id)
			}
			printKept(a, rep.Kept)
			if rep.GC != nil {
				printGC(a, rep.GC)
			}
			return nil
		},
	}
	del.Flags().BoolVar(&runGC, "gc", false, "run gc afterwards")
	cmd.AddCommand(list, show, del)
	return cmd
}

func printPoint(a *App, m *repo.Manifest) {
	a.out("point        %s", m.ID)
	a.out("vm           %s (%s) on %s", m.VM.Name, m.VM.UUID, m.VM.Host)
	a.out("time         %s → %s (%s)", m.Started.Local().Format(time.RFC3339), m.Finished.Local().Format(time.RFC3339),
		m.Finished.Sub(m.Started).Round(time.Millisecond))
	a.out("kind         %s", m.Kind)
	if m.Parent != "" {
		a.out("parent       %s", m.Parent)
	}
	a.out("consistency  %s", m.Consistency)
	a.out("checkpoint   %s", m.Checkpoint)
	a.out("config       %s, %d bytes", m.ConfigFormat, len(m.Config))
	a.out("read %s, new %s, stored %s", fmtBytes(m.Stats.BytesRead), fmtBytes(m.Stats.BytesNew), fmtBytes(m.Stats.BytesStored))
	for _, d := range m.Disks {
		mode := "full"
		if d.Incremental {
			mode = "incremental"
		}
		a.out("disk %-6s %s %s %s (%s) read %s new %s stored %s", d.Target, d.Format, fmtBytes(d.Size), d.Source, mode,
			fmtBytes(d.Stats.BytesRead), fmtBytes(d.Stats.BytesNew), fmtBytes(d.Stats.BytesStored))
	}
	for _, t := range m.Tags {
		a.out("tag          %s", t)
	}
	for _, n := range m.Notes {
		a.out("note         %s", n)
	}
}

func (a *App) catalogCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "Maintain the catalog (a cache of the repository)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "rebuild",
		Short: "Recreate the catalog's recovery points from the repository alone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := a.openService(cmd.Context(), false)
			if err != nil {
				return err
			}
			if svc.Catalog == nil {
				_, err := a.openCatalog(cmd.Context())
				return err
			}
			// The hypervisor is optional here: without it the points are
			// rebuilt and the VMs not reconciled.
			if svc.Conn, err = a.connect(cmd.Context()); err != nil {
				a.logger.Warn("VMs not reconciled", "err", err)
			}
			rep, err := svc.RebuildCatalog(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			a.out("catalog rebuilt: %d recovery points of repository %s", rep.Points, rep.Repository)
			switch {
			case svc.Conn == nil:
				a.out("VMs not reconciled: no connection to %s", a.connectURI)
			case rep.ReconcileError != "":
				a.out("VMs not reconciled with %s: %s", a.connectURI, rep.ReconcileError)
			case len(rep.Missing) > 0:
				a.out("no longer defined on %s (marked missing, points kept): %s", a.connectURI, strings.Join(rep.Missing, ", "))
			}
			return nil
		},
	})
	return cmd
}
