package cli

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/lock"
)

func (a *App) cleanupCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "cleanup [VM...]",
		Short: "Find and remove what killed runs left behind (backup jobs, stale checkpoints, vSphere snapshots, sockets, scratch files, stale repository locks)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			conn, err := a.connect(ctx)
			if err != nil {
				return err
			}
			points, err := r.ListPoints(ctx)
			if err != nil {
				return err
			}
			keep := map[string]bool{}
			for _, p := range points {
				if p.Checkpoint != "" {
					keep[p.Checkpoint] = true
				}
			}
			left, err := conn.Leftovers(ctx, args, keep)
			if err != nil {
				return err
			}
			// Repository locks of processes that died: shared locks never
			// block backups, but they defer gc.
			locks, err := lock.List(ctx, r.Backend())
			if err != nil {
				return err
			}
			var stale []lock.Info
			for _, l := range locks {
				if l.Stale {
					stale = append(stale, l)
					left = append(left, hypervisor.Leftover{Kind: "repository-lock", Name: l.ID,
						Detail: fmt.Sprintf("%s lock of pid %d on %s: %s", l.Kind, l.PID, l.Host, l.StaleReason)})
				}
			}
			if len(left) == 0 {
				if a.jsonOut {
					return a.printJSON([]hypervisor.Leftover{})
				}
				a.out("nothing to clean up")
				return nil
			}
			if !a.jsonOut {
				for _, l := range left {
					a.out("%s %s %s: %s", l.VM, l.Kind, l.Name, l.Detail)
				}
			}
			if !yes {
				if !a.confirm(fmt.Sprintf("remove these %d leftovers?", len(left))) {
					return fmt.Errorf("nothing removed: confirm on a terminal or pass --yes")
				}
			}
			var failed int
			if len(stale) > 0 {
				if _, err := lock.RemoveStale(ctx, r.Backend()); err != nil {
					failed += len(stale)
					a.logger.Error("remove stale locks", "err", err)
				}
			}
			for _, l := range left {
				if l.Kind == "repository-lock" {
					continue
				}
				if err := conn.RemoveLeftover(ctx, l); err != nil {
					failed++
					a.logger.Error("remove leftover", "vm", l.VM, "kind", l.Kind, "name", l.Name, "err", err)
				}
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"leftovers": left, "failed": failed})
			}
			a.out("removed %d leftovers, %d failed", len(left)-failed, failed)
			if failed > 0 {
				return withCode(ExitPartial, errReported)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "remove without asking")
	return cmd
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
