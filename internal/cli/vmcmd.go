package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/hypervisor"
	// Every connector, registered by URI scheme.
	_ "github.com/kurabackup/kura/internal/hypervisor/connectors"
	"github.com/kurabackup/kura/internal/service"
)

// connect opens the hypervisor connection named by --connect, through the
// connector registered for its scheme.
func (a *App) connect(ctx context.Context) (hypervisor.Connector, error) {
	c, err := hypervisor.Open(ctx, a.connectURI, hypervisor.OpenOptions{Logger: a.logger, Password: a.connectPassword})
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
	list.Flags().StringVar(&search, "search", "", "selector: name:GLOB, uuid:UUID, ipaddr:ADDR|DNS, powerstate:on|off|paused, any:, or ATTRIBUTE:GLOB (tag:GLOB everywhere; vSphere also folder, resource_pool, moref)")
	cmd.AddCommand(list, a.vmTagCommand())
	return cmd
}

func (a *App) vmTagCommand() *cobra.Command {
	var edit service.TagEdit
	cmd := &cobra.Command{
		Use:   "tag VM [TAG...]",
		Short: "Add (or --remove, --clear) kura tags of a VM, which groups select with tag:GLOB",
		Long: `tag sets kura's tags on a VM, kept by the hypervisor with its
configuration (libvirt: the domain's metadata), so that a backup records
them and a restore brings them back. Protection groups selecting tag:GLOB
pick a change up at their next run. Without TAG, --remove or --clear it
shows the VM's tags.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			edit.Add = args[1:]
			for _, t := range edit.Add {
				if err := hypervisor.CheckTag(t); err != nil {
					return usageError("%v", err)
				}
			}
			conn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			svc := &service.Service{Conn: conn, Logger: a.logger}
			var vm hypervisor.VM
			if len(edit.Add) == 0 && len(edit.Remove) == 0 && !edit.Clear {
				vm, err = conn.LookupVM(cmd.Context(), args[0])
			} else {
				vm, err = svc.TagVM(cmd.Context(), args[0], edit)
			}
			if err != nil {
				return err
			}
			tags := vm.Attributes[hypervisor.TagAttr]
			if a.jsonOut {
				return a.printJSON(map[string]any{"vm": vm.Name, "uuid": vm.UUID, "tags": append([]string{}, tags...)})
			}
			if len(tags) == 0 {
				a.out("%s has no tags", vm.Name)
				return nil
			}
			a.out("%s: %s", vm.Name, strings.Join(tags, " "))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&edit.Remove, "remove", nil, "remove this tag (repeatable)")
	cmd.Flags().BoolVar(&edit.Clear, "clear", false, "remove every tag first (with TAGs: replace them)")
	return cmd
}

func printVMs(a *App, vms []hypervisor.VM) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUUID\tSTATE\tADDRESSES\tTAGS\tDISKS")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", vm.Name, vm.UUID, vm.State, strings.Join(vm.Addresses, ","),
			strings.Join(vm.Attributes[hypervisor.TagAttr], ","), first)
		for _, d := range disks[min(1, len(disks)):] {
			fmt.Fprintf(tw, "\t\t\t\t\t%s\n", d)
		}
	}
	tw.Flush()
}
