package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/service"
)

// connect opens the hypervisor connection named by --connect.
func (a *App) connect(ctx context.Context) (hypervisor.Connector, error) {
	c, err := libvirt.Connect(ctx, a.connectURI, a.logger)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", a.connectURI, err)
	}
	a.onClose(func() { _ = c.Close() })
	return c, nil
}

func (a *App) vmCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "vm", Short: "Inspect the hypervisor's virtual machines"}
	var search string
	list := &cobra.Command{
		Use:   "list",
		Short: "List VMs with their disks, addresses and whether each disk can be protected",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec := search
			if spec == "" {
				spec = "any:"
			}
			if _, err := hypervisor.ParseSelector(spec); err != nil {
				return usageError("%v", err)
			}
			conn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			svc := &service.Service{Conn: conn, Logger: a.logger}
			vms, _, err := svc.SelectVMs(cmd.Context(), []string{spec})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(vms)
			}
			printVMs(a, vms)
			return nil
		},
	}
	list.Flags().StringVar(&search, "search", "", "selector: name:GLOB, uuid:UUID, ipaddr:ADDR|DNS, powerstate:on|off|paused, any:")
	cmd.AddCommand(list)
	return cmd
}

func printVMs(a *App, vms []hypervisor.VM) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUUID\tSTATE\tADDRESSES\tDISKS")
	for _, vm := range vms {
		var disks []string
		for _, d := range vm.Disks {
			s := fmt.Sprintf("%s %s %s %s", d.Target, d.Format, fmtBytes(d.Size), d.Source)
			if !d.Protectable {
				s += " (not protected: " + d.Reason + ")"
			}
			disks = append(disks, s)
		}
		first := ""
		if len(disks) > 0 {
			first = disks[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", vm.Name, vm.UUID, vm.State, strings.Join(vm.Addresses, ","), first)
		for _, d := range disks[min(1, len(disks)):] {
			fmt.Fprintf(tw, "\t\t\t\t%s\n", d)
		}
	}
	tw.Flush()
}
