package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) jobsCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Show the job history kept in the catalog (newest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openCatalog(cmd.Context())
			if err != nil {
				return err
			}
			jobs, err := c.Jobs(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(jobs)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tKIND\tSTATE\tSTARTED\tDURATION\tVM\tVM STATE\tATTEMPTS\tPOINT / ERROR")
			for _, j := range jobs {
				dur := "running"
				if !j.Finished.IsZero() {
					dur = j.Finished.Sub(j.Started).Round(time.Millisecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\t\t\t\n", j.ID, j.Kind, j.State, j.Started.Local().Format("2006-01-02 15:04:05"), dur)
				for _, v := range j.VMs {
					detail := v.PointID
					if v.Error != "" {
						detail = v.Error
					}
					fmt.Fprintf(tw, "\t\t\t\t\t%s\t%s\t%d\t%s\n", v.VMName, v.State, v.Attempts, detail)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "number of jobs to show")
	return cmd
}
