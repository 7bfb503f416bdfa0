package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/server"
)

func (a *App) capacityCommand() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "capacity",
		Short: "Expected storage per protection group and repository, and when each repository fills",
		Long: `Estimate, for each protection group of the server configuration, the storage its
points need in a year — the first full copy of each VM plus the measured churn
(new bytes stored per backup, the median of each VM's recent points) of every
point the retention keeps with the group's backup schedule — and, for each
local repository, when it fills at the current rate. Measured from the
catalog (--catalog) of the server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			if a.catalogPath == "" {
				a.catalogPath = cfg.Server.CatalogPath()
			}
			cat, err := a.openCatalog(cmd.Context())
			if err != nil {
				return err
			}
			caps, err := server.Capacity(cmd.Context(), cat, cfg, time.Now())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(caps)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tGROUP\tVMS\tSTORED\tCHURN/BACKUP\tBACKUPS/DAY\tKEPT/VM\tIN 1 YEAR")
			for _, r := range caps {
				for _, g := range r.Groups {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%.1f\t%d\t%s\n", r.Repository, g.Group, g.VMs, fmtBytes(g.StoredBytes),
						fmtBytes(g.ChurnBytes), g.BackupsPerDay, g.KeptPoints, fmtBytes(g.Expected1Year))
				}
				full := "does not fill within a year at this rate"
				if r.FullOn != nil {
					full = "fills on " + r.FullOn.Local().Format("2006-01-02")
				}
				fmt.Fprintf(tw, "%s\t(all)\t\t\t%s/day\t\t\t%s — %s\n", r.Repository, fmtBytes(r.GrowthPerDay), fmtBytes(r.Expected1Year), full)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "server configuration file")
	return cmd
}
