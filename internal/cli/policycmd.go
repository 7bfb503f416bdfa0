package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/retention"
	"github.com/kurabackup/kura/internal/schedule"
	"github.com/kurabackup/kura/internal/service"
)

func (a *App) policyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Retention policies: see what one keeps before using it",
	}
	cmd.AddCommand(a.policySimulateCommand())
	return cmd
}

// simRules is the order rules are listed in.
var simRules = []string{"last", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "within"}

func (a *App) policySimulateCommand() *cobra.Command {
	var (
		p                      retention.Policy
		every, span, end, expr string
		zone                   string
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Show which points a retention policy keeps of hypothetical backups",
		Long: `Apply a retention policy (the --keep-* flags of kura prune) to hypothetical
backups taken --every DURATION (or on a --cron schedule) over the --span before
--end (default now), and show how many points it keeps, per rule, and which.
Durations take d and w too (400d, 2w). Calendar rules bucket in UTC, so times
are shown in UTC. Nothing is read or changed.`,
		Example: "  kura policy simulate --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 10 --every 24h --span 400d",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.Empty() {
				return usageError("%v", service.ErrEmptyPolicy)
			}
			d, err := config.ParseDuration(span)
			if err != nil || d <= 0 {
				return usageError("--span %q: give a positive duration such as 400d or 10w", span)
			}
			to := time.Now()
			if end != "" {
				if to, err = parseEnd(end); err != nil {
					return usageError("--end %q: use 2006-01-02 or 2006-01-02T15:04:05Z07:00", end)
				}
			}
			var tl retention.Timeline
			switch {
			case expr != "" && cmd.Flags().Changed("every"):
				return usageError("give --every or --cron, not both")
			case expr != "":
				sc, err := schedule.Spec{Cron: expr, Timezone: zone}.Compile()
				if err != nil {
					return usageError("%v", err)
				}
				tl = sc
			default:
				iv, err := config.ParseDuration(every)
				if err != nil || iv <= 0 {
					return usageError("--every %q: give a positive duration such as 24h or 1d", every)
				}
				tl = retention.Interval(iv.D())
			}
			sim, err := retention.Simulate(p, to.Add(-d.D()), to, tl)
			if err != nil {
				return usageError("%v", err)
			}
			if a.jsonOut {
				return a.printJSON(sim)
			}
			printSimulation(a, sim)
			return nil
		},
	}
	f := cmd.Flags()
	for _, k := range []struct {
		name, what string
		n          *int
	}{{"last", "the N newest points", &p.Last}, {"hourly", "the newest point of each of the last N hours", &p.Hourly},
		{"daily", "the newest point of each of the last N days", &p.Daily}, {"weekly", "the newest point of each of the last N weeks", &p.Weekly},
		{"monthly", "the newest point of each of the last N months", &p.Monthly},
		{"quarterly", "the newest point of each of the last N calendar quarters", &p.Quarterly},
		{"yearly", "the newest point of each of the last N years", &p.Yearly}} {
		f.IntVar(k.n, "keep-"+k.name, 0, "keep "+k.what+" (-1: all)")
	}
	f.DurationVar(&p.Within, "keep-within", 0, "keep every point newer than this duration before the newest (e.g. 72h)")
	f.StringVar(&every, "every", "24h", "interval between hypothetical backups")
	f.StringVar(&expr, "cron", "", "take the hypothetical backups on this cron schedule instead (\"0 2 * * *\")")
	f.StringVar(&zone, "timezone", "", "time zone of --cron (default: local)")
	f.StringVar(&span, "span", "400d", "how far back the hypothetical backups go")
	f.StringVar(&end, "end", "", "time of the newest backup and of the prune (default now)")
	return cmd
}

func parseEnd(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02", s, time.Local)
}

func printSimulation(a *App, sim *retention.Simulation) {
	const layout = "2006-01-02 15:04"
	a.out("policy   %s", sim.Policy)
	if len(sim.Points) == 0 {
		a.out("backups  none between %s and %s UTC", sim.From.UTC().Format(layout), sim.To.UTC().Format(layout))
		return
	}
	a.out("backups  %d, %s .. %s UTC", len(sim.Points), sim.Points[0].Time.UTC().Format(layout),
		sim.Points[len(sim.Points)-1].Time.UTC().Format(layout))
	a.out("kept     %d, the oldest from %s UTC (%.0f days before the end)", sim.Kept,
		sim.OldestKept.UTC().Format(layout), sim.To.Sub(sim.OldestKept).Hours()/24)
	for _, r := range simRules {
		if n, ok := sim.PerRule[r]; ok {
			a.out("  %-10s %d", r, n)
		}
	}
	a.out("kept points (newest first):")
	for i := len(sim.Points) - 1; i >= 0; i-- {
		if pt := sim.Points[i]; pt.Keep {
			a.out("  %s  %s", pt.Time.UTC().Format(layout), strings.Join(pt.Reasons, ", "))
		}
	}
}
