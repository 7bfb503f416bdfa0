// Package cli implements the kura command line: flag parsing, opening the
// repository, catalog and hypervisor connection, rendering results as text
// or JSON, and mapping errors to exit codes. Work is done by the engine and
// lower layers; this package only wires them to the user.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/repo"
)

// Exit codes (documented in docs/design/architecture.md).
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitPartial  = 3
	ExitFailed   = 4
	ExitProblems = 5
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches an exit code to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageError marks an error as a usage error (exit code 2).
func usageError(format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, args...))
}

// Main runs kura with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// For performance work: KURA_CPUPROFILE=FILE writes a CPU profile,
	// KURA_TRACE=FILE an execution trace (go tool pprof, go tool trace).
	for _, c := range []struct {
		env   string
		start func(io.Writer) error
		stop  func()
	}{{"KURA_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile}, {"KURA_TRACE", trace.Start, trace.Stop}} {
		if path := os.Getenv(c.env); path != "" {
			if stop, err := startCapture(path, c.start, c.stop); err == nil {
				defer stop()
			} else {
				fmt.Fprintf(stderr, "kura: %s: %v\n", c.env, err)
			}
		}
	}
	app := newApp(stdin, stdout, stderr)
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	app.close()
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if isUsage(err) {
		code = ExitUsage
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "kura: %s\n", explain(err))
	}
	return code
}

// Version of kura; release builds set it with -ldflags "-X".
var Version = "0.1.0-dev"

// errReported means the command already printed its outcome; Main only sets
// the exit code.
var errReported = errors.New("reported")

func (a *App) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kura",
		Short: "Agentless backup and recovery for virtual machines",
		Long: `kura backs up whole virtual machines (every disk and the configuration) from
the hypervisor host into a deduplicating, compressed, encrypted repository,
incrementally through changed-block tracking, and restores whole VMs, disks or
single files from any recovery point.

Environment: KURA_REPO (repository), KURA_PASSWORD or KURA_PASSWORD_FILE
(passphrase), KURA_CONNECT (hypervisor URI: qemu:///system, vsphere://...),
KURA_CONNECT_PASSWORD or KURA_CONNECT_PASSWORD_FILE (vSphere login),
KURA_CATALOG (catalog database).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version: fmt.Sprintf("%s (repository format: reads %d-%d, writes %d-%d)", Version,
			repo.MinReadVersion, repo.MaxReadVersion, repo.MinWriteVersion, repo.MaxWriteVersion),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	a.bindGlobalFlags(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return withCode(ExitUsage, err)
	})
	root.AddCommand(
		a.repoCommand(),
		a.benchmarkCommand(),
		a.verifyCommand(),
		a.pruneCommand(),
		a.policyCommand(),
		a.gcCommand(),
		a.locksCommand(),
		a.vmCommand(),
		a.backupCommand(),
		a.pointsCommand(),
		a.catalogCommand(),
		a.cleanupCommand(),
		a.jobsCommand(),
		a.instantCommand(),
		a.serverCommand(),
		a.capacityCommand(),
		a.copyCommand(),
	)
	a.addRecoveryCommands(root)
	strictGroups(root)
	return root
}

// groupAnnotation marks commands that only group subcommands.
const groupAnnotation = "kura-group"

// strictGroups makes every command that only groups subcommands ("kura
// repo", "kura points") fail with a usage error, exit 2, on an unknown
// subcommand instead of printing its help and succeeding; alone, it prints
// its help.
func strictGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
	if c.HasParent() && c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[groupAnnotation] = "true"
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
}

// startCapture writes what start begins (a profile, a trace) to path
// until the returned function is called.
func startCapture(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { stop(); f.Close() }, nil
}
