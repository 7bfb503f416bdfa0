package cli

import (
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/instant"
)

// bootFlags are the flags of kura verify --boot.
type bootFlags struct {
	boot, latest bool
	probes       []string
	timeout      time.Duration
	parallel     int
}

func (f *bootFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.boot, "boot", false, "boot points as throw-away VMs on an isolated network and check them (POINT or SPEC arguments)")
	fl.BoolVar(&f.latest, "latest", false, "with --boot and a SPEC: only each VM's newest point")
	fl.StringArrayVar(&f.probes, "probe", nil, "with --boot: a check once the agent answers: exec:CMD, exec[N]:CMD, exec:CMD => TEXT, file:PATH=SHA256, tcp:PORT (repeatable)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "with --boot: time each point has to boot and pass its probes")
	fl.IntVar(&f.parallel, "parallel", 1, "with --boot: points booted at once")
}

// runVerifyBoot is kura verify --boot POINT|SPEC...
func (a *App) runVerifyBoot(cmd *cobra.Command, args []string, f bootFlags) error {
	if len(args) == 0 {
		return usageError("verify --boot needs points or VM selectors (name:GLOB, uuid:UUID, any:)")
	}
	if f.parallel < 1 || f.timeout <= 0 {
		return usageError("--parallel must be at least 1 and --timeout positive")
	}
	var probes []instant.Probe
	for _, s := range f.probes {
		p, err := instant.ParseProbe(s)
		if err != nil {
			return usageError("%v", err)
		}
		probes = append(probes, p)
	}
	ctx := cmd.Context()
	svc, err := a.openService(ctx, true)
	if err != nil {
		return err
	}
	points, err := svc.BootPoints(ctx, args, f.latest)
	if err != nil {
		return err
	}
	m := svc.Instant(a.instantStateDir(), nil)
	opts := instant.VerifyOptions{Probes: probes, Timeout: f.timeout, Parallel: f.parallel,
		ScreenshotDir: filepath.Join(filepath.Dir(a.catalogFile()), "screenshots")}
	if !a.quiet && !a.jsonOut {
		opts.Progress = func(point, msg string) { a.logger.Info("verify --boot", "point", point, "msg", msg) }
	}
	res, err := m.VerifyBoot(ctx, points, opts)
	if a.jsonOut {
		if perr := a.printJSON(res); perr != nil {
			return perr
		}
	} else {
		for _, r := range res {
			if r.OK {
				a.out("ok    %s (%s): booted to its agent in %.1f s, %d probes passed; screenshot %s", r.Point, r.VM, r.BootSeconds, len(r.Probes), r.Screenshot)
			} else {
				a.out("FAIL  %s (%s): %s; screenshot %s", r.Point, r.VM, r.Reason, r.Screenshot)
			}
		}
	}
	if err != nil {
		return err
	}
	for _, r := range res {
		if !r.OK {
			return withCode(ExitProblems, errReported)
		}
	}
	return nil
}
