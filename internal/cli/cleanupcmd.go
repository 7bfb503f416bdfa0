package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/service"
)

func (a *App) cleanupCommand() *cobra.Command {
	var yes, dryRun bool
	cmd := &cobra.Command{
		Use:   "cleanup [VM...]",
		Short: "Find and remove what killed runs left behind (backup jobs, stale checkpoints, vSphere snapshots, NBD servers, scratch files, partial restore images, stale repository locks)",
		Long: `Find and remove what killed runs left behind: backup jobs, checkpoints and
bitmaps of this repository that no recovery point references, qemu-nbd
servers and scratch files of dead kura processes, partial images of
interrupted restores, and stale repository locks.

Without VM arguments, only the VMs this repository holds recovery points of
are looked at. Checkpoints of other repositories backing up the same VMs are
listed as theirs and never removed. A backup reclaims what a killed run left
on the VM it backs up by itself; cleanup is for the rest.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := a.openService(ctx, true)
			if err != nil {
				return err
			}
			opts := service.CleanupOptions{VMs: args, DryRun: dryRun}
			if !yes && !dryRun {
				opts.Confirm = func(found []hypervisor.Leftover) bool {
					if !a.jsonOut {
						printLeftovers(a, found)
					}
					removable := 0
					for _, l := range found {
						if !l.Foreign {
							removable++
						}
					}
					return a.confirm(fmt.Sprintf("remove these %d leftovers?", removable))
				}
			}
			rep, err := svc.Cleanup(ctx, opts)
			if errors.Is(err, service.ErrDeclined) {
				return fmt.Errorf("nothing removed: confirm on a terminal or pass --yes")
			}
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			if opts.Confirm == nil {
				printLeftovers(a, rep.Leftovers)
			}
			switch {
			case len(rep.Leftovers) == 0:
				a.out("nothing to clean up")
			case dryRun:
				a.out("dry run: nothing removed")
			default:
				a.out("removed %d leftovers, %d failed", rep.Removed, len(rep.Failed))
				for _, f := range rep.Failed {
					a.out("  %s %s: %s", f.Leftover.Kind, f.Leftover.Name, f.Error)
				}
			}
			if len(rep.Failed) > 0 {
				return withCode(ExitPartial, errReported)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "remove without asking")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be removed")
	return cmd
}

func printLeftovers(a *App, found []hypervisor.Leftover) {
	for _, l := range found {
		vm := l.VM
		if vm == "" {
			vm = "-"
		}
		mark := ""
		if l.Foreign {
			mark = " (kept)"
		}
		a.out("%s %s %s: %s%s", vm, l.Kind, l.Name, l.Detail, mark)
	}
}

// confirm asks a yes/no question on the terminal; false when not interactive.
func (a *App) confirm(question string) bool {
	if !a.interactive() {
		return false
	}
	fmt.Fprintf(a.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes"
}
