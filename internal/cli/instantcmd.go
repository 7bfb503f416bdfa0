package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/instant"
	"github.com/kurabackup/kura/internal/progress"
)

// instantStateDir keeps the state of instant VMs beside the catalog.
func (a *App) instantStateDir() string {
	return filepath.Join(filepath.Dir(a.catalogFile()), "instant")
}

// instantManager opens the repository, connection and catalog and returns
// the manager of instant VMs; serving happens in a process it starts.
func (a *App) instantManager(ctx context.Context) (*instant.Manager, error) {
	svc, err := a.openService(ctx, true)
	if err != nil {
		return nil, err
	}
	m := svc.Instant(a.instantStateDir(), nil)
	m.Launch = a.launchServer(m)
	return m, nil
}

// launchServer starts "kura instant serve NAME" in its own session, with
// the same repository, passphrase source, catalog and connection, its
// output going to the instant VM's log. KURA_EXECUTABLE overrides the
// program started (default: this one).
func (a *App) launchServer(m *instant.Manager) func(ctx context.Context, name string) error {
	return func(ctx context.Context, name string) error {
		exe := os.Getenv("KURA_EXECUTABLE")
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return err
			}
		}
		abs := func(p string) string {
			if q, err := filepath.Abs(p); err == nil {
				return q
			}
			return p
		}
		args := []string{"--repo", abs(strings.TrimPrefix(a.repoLocation, "local:")), "--catalog", abs(a.catalogFile()),
			"--connect", a.connectURI, "--log-level", "info"}
		env := os.Environ()
		switch {
		case a.masterKey != "":
			args = append(args, "--master-key-file", abs(a.masterKey))
		case a.passwordFile != "":
			args = append(args, "--password-file", abs(a.passwordFile))
		case a.passphrase != "":
			env = append(env, "KURA_PASSWORD="+a.passphrase)
		}
		log, err := os.OpenFile(m.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer log.Close()
		cmd := exec.Command(exe, append(args, "instant", "serve", name)...)
		cmd.Stdout, cmd.Stderr, cmd.Env = log, log, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s instant serve: %w", exe, err)
		}
		go func() { _ = cmd.Wait() }() // reaped if it ends while we run
		return nil
	}
}

type instantFlags struct {
	name, storage string
	networks      []string
	start         bool
}

func (a *App) instantCommand() *cobra.Command {
	var f instantFlags
	cmd := &cobra.Command{
		Use:   "instant POINT",
		Short: "Run a VM straight from a recovery point (instant recovery); list, migrate, stop instant VMs",
		Long: `Run a recovery point as a new VM at once, without copying its disks first
(POINT may be a unique prefix of its id). kura serves each disk from the
repository over NBD (chunks read on demand, cached, read ahead) as the
backing of a local qcow2 overlay in --storage that takes every guest write.

The disks are served by a background process (kura instant serve NAME, its
log beside the catalog under instant/NAME/). It can be restarted: the guest
pauses while no server answers and resumes when it is back. While it
serves, the point is leased: prune and gc leave it alone.

  kura instant list                  the instant VMs, their points, overlays, bytes served
  kura instant migrate NAME          copy the disks to local storage while the VM runs
  kura instant stop NAME             remove the VM and stop serving`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runInstantStart(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "name of the new VM (default: the original's name + \"-instant\")")
	fl.StringVar(&f.storage, "storage", "", "directory or libvirt directory pool for the overlays (default: beside the original's disks)")
	fl.StringArrayVar(&f.networks, "network", nil, "map a network or bridge: OLD=NEW (repeatable)")
	fl.BoolVar(&f.start, "start", false, "start the VM")
	cmd.AddCommand(a.instantListCommand(), a.instantMigrateCommand(), a.instantStopCommand(), a.instantServeCommand())
	return cmd
}

func (a *App) runInstantStart(cmd *cobra.Command, point string, f instantFlags) error {
	nets, err := parseNetworkMap(f.networks)
	if err != nil {
		return err
	}
	m, err := a.instantManager(cmd.Context())
	if err != nil {
		return err
	}
	rep, err := m.Start(cmd.Context(), point, instant.StartOptions{Name: f.name, Storage: f.storage, NetworkMap: nets, Start: f.start})
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(rep)
	}
	a.out("instant vm %s (%s) runs point %s of %s, its disks served from the repository", rep.Name, rep.UUID, rep.Point, rep.SourceVM)
	for _, d := range rep.Disks {
		a.out("  %s: %s, writes go to %s", d.Target, fmtBytes(d.Size), d.Overlay)
	}
	state := "defined"
	if rep.Started {
		state = "started"
	}
	a.out("%s in %.1f s (disks served after %.1f s)", state, rep.Seconds, rep.ServingSeconds)
	a.out("next: kura instant migrate %s (to local disks while it runs), or kura instant stop %s", rep.Name, rep.Name)
	return nil
}

// parseNetworkMap parses --network OLD=NEW flags.
func parseNetworkMap(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, n := range flags {
		from, to, ok := strings.Cut(n, "=")
		if !ok || from == "" || to == "" {
			return nil, usageError("invalid --network %q: use OLD=NEW", n)
		}
		out[from] = to
	}
	return out, nil
}

func (a *App) instantListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List instant VMs: their points, state, overlay sizes, bytes served",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.instantManager(cmd.Context())
			if err != nil {
				return err
			}
			list, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			if len(list) == 0 {
				a.out("no instant vms")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPHASE\tVM\tPOINT\tFROM\tOVERLAYS\tSERVED\tSERVER")
			for _, e := range list {
				server := "down: kura instant serve " + e.Name
				if e.ServerPID != 0 {
					server = fmt.Sprintf("pid %d", e.ServerPID)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Phase, e.VMState, e.Point, e.SourceVM,
					fmtBytes(e.OverlayBytes), fmtBytes(e.BytesServed), server)
			}
			return tw.Flush()
		},
	}
}

func (a *App) instantMigrateCommand() *cobra.Command {
	var storage, format string
	var bandwidth int64
	cmd := &cobra.Command{
		Use:   "migrate NAME",
		Short: "Copy a running instant VM's disks to local storage, switch to them, stop serving",
		Long: `Copy the disks of a running instant VM (its overlays with their backing) to
local images while it runs, keeping every guest write, then switch the VM to
them and stop serving: it becomes an ordinary VM. If the copy fails or is
interrupted the VM keeps running from the repository with all its writes;
run the command again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != "qcow2" && format != "raw" {
				return usageError("invalid --format %q: use qcow2 or raw", format)
			}
			m, err := a.instantManager(cmd.Context())
			if err != nil {
				return err
			}
			sink := a.progressSink()
			rep, err := m.Migrate(cmd.Context(), args[0], instant.MigrateOptions{Storage: storage, Format: format,
				Bandwidth: bandwidth << 20, Progress: func(target string, done, total int64) {
					sink.Emit(progress.Event{Kind: "disk-progress", Job: "migrate", VM: args[0], Disk: target, Done: done, Total: total})
				}})
			endProgress(sink)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			for _, d := range rep.Disks {
				a.out("%s: %s (%s)", d.Target, d.Dest, d.Format)
			}
			a.out("instant vm %s now runs on local disks (%.1f s); serving stopped", rep.Name, rep.Seconds)
			return nil
		},
	}
	cmd.Flags().StringVar(&storage, "storage", "", "directory or libvirt directory pool for the images (default: beside the overlays)")
	cmd.Flags().StringVar(&format, "format", "", "image format: qcow2 (default) or raw")
	cmd.Flags().Int64Var(&bandwidth, "bandwidth", 0, "limit each disk's copy to this many MiB/s")
	return cmd
}

func (a *App) instantStopCommand() *cobra.Command {
	var opts instant.StopOptions
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Remove an instant VM and stop serving its disks (overlays kept unless --discard)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.instantManager(cmd.Context())
			if err != nil {
				return err
			}
			rep, err := m.Stop(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			a.out("instant vm %s removed; serving stopped", rep.Name)
			for _, k := range rep.Kept {
				a.out("  overlay kept (the guest's writes): %s", k)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Discard, "discard", false, "also delete the overlays (the guest's writes)")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "power the VM off if it runs")
	return cmd
}

func (a *App) instantServeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "serve NAME",
		Short: "Serve an instant VM's disks (run by kura instant; restart it after a crash or from a service manager)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.cacheBytes = instant.ServeCacheBytes
			svc, err := a.openService(cmd.Context(), true)
			if err != nil {
				return err
			}
			return svc.Instant(a.instantStateDir(), nil).Serve(cmd.Context(), args[0])
		},
	}
}
