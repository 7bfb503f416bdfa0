package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/procinfo"
)

// addRecoveryCommands adds restore, export and files.
func (a *App) addRecoveryCommands(root *cobra.Command) {
	root.AddCommand(a.restoreCommand(), a.exportCommand(), a.filesCommand())
}

type restoreFlags struct {
	name, storage, format, planFile, onConflict, before, suffix string
	folder, pool                                                string
	networks                                                    []string
	start, plan, all, latest                                    bool
	workers                                                     int
}

func (a *App) restoreCommand() *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore POINT | --plan-file FILE | --all SPEC...",
		Short: "Restore a whole VM from a recovery point, in place or as a new VM",
		Long: `Restore a recovery point (POINT may be a unique prefix of its id).

Without --name the VM goes back to its original place: same name, UUID, MAC
addresses and disk paths, replacing its disks and definition (recreated if it
was deleted). With --name NEW it is restored beside the original: a new UUID
and MAC addresses, disks in --storage (a directory or a libvirt directory
pool, a vSphere datastore; default: beside the original's disks), networks
mapped with --network OLD=NEW, host-bound parts (saved state, host devices,
fixed ports) dropped; on vSphere --folder and --resource-pool place it.
A point restores only to the kind of hypervisor it came from (kura export
writes any point's disks as files).

--plan prints the full restore plan as YAML for editing; --plan-file uses it
(the plan names its point: POINT may then be left out).

Conflicts (a VM of that name or UUID is defined, a disk file exists) are
found before anything changes. --on-conflict: prompt (the default on a
terminal: asks for each), abort (the default otherwise: fails naming every
conflict), keep (leaves what exists untouched, restores the rest), overwrite
(replaces; a running VM is stopped first). Disks are written under
*.kura-partial names and the VM is defined only once every disk is complete,
so an interrupted restore leaves no half VM.

--all SPEC... restores every VM the selectors match (name:GLOB, uuid:UUID, a
name...) from its latest point (or the latest --before TIME), each isolated
from the others; --name-suffix restores them beside the originals.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runRestore(cmd, args, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "restore as a new VM of this name beside the original")
	fl.StringVar(&f.storage, "storage", "", "where the new VM's disks go: a directory or libvirt directory pool, a vSphere datastore")
	fl.StringVar(&f.folder, "folder", "", "vSphere: VM folder of the new VM (inventory path, e.g. /DC/vm/restored)")
	fl.StringVar(&f.pool, "resource-pool", "", "vSphere: resource pool of the new VM (inventory path)")
	fl.StringArrayVar(&f.networks, "network", nil, "map a network or bridge: OLD=NEW (repeatable)")
	fl.StringVar(&f.format, "format", "", "libvirt image format: qcow2 or raw (default: as saved)")
	fl.BoolVar(&f.start, "start", false, "start the VM once restored")
	fl.BoolVar(&f.plan, "plan", false, "print the restore plan (YAML) and exit")
	fl.StringVar(&f.planFile, "plan-file", "", "restore according to this plan (YAML from --plan)")
	fl.StringVar(&f.onConflict, "on-conflict", "", "prompt, overwrite, keep or abort (default: prompt on a terminal, else abort)")
	fl.BoolVar(&f.all, "all", false, "restore every VM the selectors match")
	fl.BoolVar(&f.latest, "latest", false, "with --all: each VM's latest point (the default)")
	fl.StringVar(&f.before, "before", "", "with --all: each VM's latest point before TIME (RFC 3339 or 2006-01-02[ 15:04])")
	fl.StringVar(&f.suffix, "name-suffix", "", "with --all: restore each VM beside its original as NAME+SUFFIX")
	fl.IntVar(&f.workers, "workers", 0, "parallel chunk fetches (default: CPUs)")
	return cmd
}

func (a *App) runRestore(cmd *cobra.Command, args []string, f restoreFlags) error {
	ctx := cmd.Context()
	opts := engine.RestoreOptions{Name: f.name, Storage: f.storage, Folder: f.folder, ResourcePool: f.pool,
		Format: f.format, Start: f.start, Workers: f.workers, ScratchDir: defaultScratchDir()}
	if len(f.networks) > 0 {
		opts.NetworkMap = map[string]string{}
		for _, n := range f.networks {
			from, to, ok := strings.Cut(n, "=")
			if !ok || from == "" || to == "" {
				return usageError("invalid --network %q: use OLD=NEW", n)
			}
			opts.NetworkMap[from] = to
		}
	}
	policy := f.onConflict
	if policy == "" {
		policy = string(engine.ConflictAbort)
		if a.interactive() {
			policy = string(engine.ConflictPrompt)
		}
	}
	p, err := engine.ParseConflictPolicy(policy)
	if err != nil {
		return usageError("%v", err)
	}
	opts.OnConflict = p
	if p == engine.ConflictPrompt {
		if !a.interactive() {
			return usageError("--on-conflict prompt needs a terminal: use overwrite, keep or abort")
		}
		in := bufio.NewReader(a.stdin)
		opts.Prompt = func(c engine.Conflict) (engine.ConflictPolicy, error) { return a.askConflict(in, c) }
	}
	if f.planFile != "" {
		data, err := os.ReadFile(f.planFile)
		if err != nil {
			return fmt.Errorf("read plan: %w", err)
		}
		if opts.Plan, err = hypervisor.DecodePlanYAML(data); err != nil {
			return fmt.Errorf("plan %s: %w", f.planFile, err)
		}
	}
	if !f.all && (f.before != "" || f.latest || f.suffix != "") {
		return usageError("--latest, --before and --name-suffix go with --all")
	}
	if !f.all && len(args) == 0 && opts.Plan != nil && opts.Plan.Point != "" {
		args = []string{opts.Plan.Point}
	}
	if f.all && len(args) == 0 {
		return usageError("--all needs selectors: kura restore --all SPEC...")
	}
	if !f.all && len(args) != 1 {
		return usageError("restore takes one POINT (or --plan-file FILE naming it, or --all SPEC...)")
	}
	if !f.all && opts.Plan != nil && opts.Plan.Point != "" && !strings.HasPrefix(strings.ToLower(opts.Plan.Point), strings.ToLower(args[0])) &&
		!strings.HasPrefix(strings.ToLower(args[0]), strings.ToLower(opts.Plan.Point)) {
		return usageError("the plan is for point %s, not %s", opts.Plan.Point, args[0])
	}
	eng, err := a.openEngine(ctx)
	if err != nil {
		return err
	}
	if f.all {
		return a.restoreAll(cmd, eng, args, f, opts)
	}
	m, err := eng.Repo.LoadPoint(ctx, args[0])
	if err != nil {
		return err
	}
	if f.plan {
		plan, err := eng.PlanRestore(ctx, m, opts)
		if err != nil {
			return err
		}
		out, err := hypervisor.EncodePlanYAML(plan)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(out)
		return err
	}
	eng.Progress = a.progressSink()
	rep, err := eng.Restore(ctx, m, opts)
	endProgress(eng.Progress)
	if err != nil {
		if a.jsonOut && rep != nil {
			_ = a.printJSON(map[string]any{"error": err.Error(), "report": rep})
		}
		return err
	}
	if a.jsonOut {
		return a.printJSON(rep)
	}
	printRestore(a, rep)
	return nil
}

func (a *App) restoreAll(cmd *cobra.Command, eng *engine.Engine, specs []string, f restoreFlags, opts engine.RestoreOptions) error {
	ctx := cmd.Context()
	if f.name != "" || f.planFile != "" || f.plan {
		return usageError("--all restores several VMs: --name, --plan and --plan-file apply to one (use --name-suffix)")
	}
	if f.latest && f.before != "" {
		return usageError("--latest and --before exclude each other")
	}
	var before time.Time
	if f.before != "" {
		var err error
		if before, err = parseTime(f.before); err != nil {
			return usageError("invalid --before: %v", err)
		}
	}
	sels, err := hypervisor.ParseSelectors(specs)
	if err != nil {
		return usageError("%v", err)
	}
	points, err := eng.ChoosePoints(ctx, sels, before)
	if err != nil {
		return err
	}
	if len(points) == 0 {
		return fmt.Errorf("no recovery point matches %v: see kura points list", specs)
	}
	eng.Progress = a.progressSink()
	rep, err := eng.RestoreAll(ctx, points, opts, f.suffix)
	endProgress(eng.Progress)
	if err != nil {
		return err
	}
	if a.jsonOut {
		_ = a.printJSON(rep)
	} else {
		for _, v := range rep.VMs {
			if v.Err != nil {
				a.out("FAILED  %s point %s: %s", v.VM, v.Point, explain(v.Err))
				continue
			}
			printRestore(a, v.Report)
		}
		a.out("restore: %s", rep.State)
	}
	switch rep.State {
	case engine.StateCompleted:
		return nil
	case engine.StatePartiallyFailed:
		return withCode(ExitPartial, errReported)
	}
	return withCode(ExitFailed, errReported)
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time like 2026-01-31T18:00:00Z or 2026-01-31 18:00", s)
}

// askConflict asks on the terminal what to do with one conflict.
func (a *App) askConflict(in *bufio.Reader, c engine.Conflict) (engine.ConflictPolicy, error) {
	for {
		fmt.Fprintf(a.stderr, "%s: [o]verwrite, [k]eep or [a]bort? ", c)
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return engine.ConflictAbort, nil
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "o", "overwrite":
			return engine.ConflictOverwrite, nil
		case "k", "keep":
			return engine.ConflictKeep, nil
		case "a", "abort", "":
			return engine.ConflictAbort, nil
		}
	}
}

func printRestore(a *App, rep *engine.RestoreReport) {
	where := "as new vm"
	if rep.InPlace {
		where = "in place as"
	}
	a.out("OK      point %s of %s restored %s %s (%s) in %.1fs, peak memory %s", rep.Point, rep.SourceVM, where, rep.VM, rep.UUID,
		rep.Seconds, fmtBytes(procinfo.PeakRSS()))
	for _, d := range rep.Disks {
		if d.Kept {
			a.out("        disk %-5s %s kept (existing file)", d.Target, d.Path)
			continue
		}
		a.out("        disk %-5s %s (%s) %s, data %s, %.1fs, %s/s", d.Target, d.Path, d.Format, fmtBytes(d.Size),
			fmtBytes(d.DataBytes), d.Seconds, fmtBytes(int64(d.Rate)))
	}
	for _, c := range rep.Conflicts {
		a.out("        conflict: %s: %s", c, c.Decision)
	}
	switch {
	case rep.Started:
		a.out("        vm defined and started")
	case rep.Defined:
		a.out("        vm defined (not started; use --start or virsh start %s)", rep.VM)
	}
	for _, n := range rep.Notes {
		a.out("        note: %s", n)
	}
}

func (a *App) exportCommand() *cobra.Command {
	var opts engine.ExportOptions
	cmd := &cobra.Command{
		Use:   "export POINT --out DIR",
		Short: "Write a point's disk images and its configuration (domain XML, .vmx) as files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if opts.OutDir == "" {
				return usageError("export needs --out DIR")
			}
			if opts.Format != "" && !slices.Contains(engine.ExportFormats, opts.Format) {
				return usageError("invalid --format %q: use %s", opts.Format, strings.Join(engine.ExportFormats, ", "))
			}
			r, m, err := a.loadPoint(ctx, args[0])
			if err != nil {
				return err
			}
			opts.ScratchDir = defaultScratchDir()
			eng := &engine.Engine{Repo: r, Logger: a.logger, Progress: a.progressSink()}
			rep, err := eng.Export(ctx, m, opts)
			endProgress(eng.Progress)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			for _, d := range rep.Disks {
				a.out("disk %-5s %s (%s) %s, data %s, %.1fs, %s/s", d.Target, d.Path, d.Format, fmtBytes(d.Size),
					fmtBytes(d.DataBytes), d.Seconds, fmtBytes(int64(d.Rate)))
			}
			if rep.ConfigFile != "" {
				a.out("configuration %s (%s)", rep.ConfigFile, rep.Hint)
			}
			for _, n := range rep.Notes {
				a.out("note: %s", n)
			}
			a.out("exported in %.1fs, peak memory %s", rep.Seconds, fmtBytes(procinfo.PeakRSS()))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.OutDir, "out", "", "output directory")
	fl.StringVar(&opts.Disk, "disk", "", "only this disk (target, e.g. vdb)")
	fl.StringVar(&opts.Format, "format", "", "image format: qcow2, raw or vmdk (default: as saved for libvirt points, vmdk for vSphere points)")
	fl.IntVar(&opts.Workers, "workers", 0, "parallel chunk fetches (default: CPUs)")
	return cmd
}

// defaultScratchDir holds the sockets of the qemu-nbd processes that write
// restored images.
func defaultScratchDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/kura/scratch"
	}
	return filepath.Join(os.TempDir(), "kura-scratch")
}
