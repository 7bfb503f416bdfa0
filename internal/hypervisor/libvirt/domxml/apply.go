package domxml

import (
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Apply rewrites the saved domain XML according to the plan and returns the
// XML to define. See ApplyNotes.
func Apply(domainXML []byte, p *Plan) ([]byte, error) {
	out, _, err := ApplyNotes(domainXML, p)
	return out, err
}

// ApplyNotes is Apply that also returns human-readable notes on what it
// dropped or could not carry over (an nvram store, encryption, host
// devices…), for the restore report.
//
// The plan is a restore in place when its name and UUID are the saved ones.
// Otherwise the parts of the XML that bind it to the old VM or host are
// dropped or rewritten (see the package documentation).
func ApplyNotes(domainXML []byte, p *Plan) ([]byte, []string, error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	dom, err := parse(domainXML)
	if err != nil {
		return nil, nil, err
	}
	a := &applier{dom: dom, plan: p, oldName: dom.Name, oldUUID: normUUID(dom.UUID)}
	a.inPlace = p.Name == dom.Name && p.UUID != "" && normUUID(p.UUID) == a.oldUUID
	if err := a.run(); err != nil {
		return nil, nil, err
	}
	s, err := dom.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("marshal domain xml: %w", err)
	}
	return []byte(s + "\n"), a.notes, nil
}

type applier struct {
	dom              *libvirtxml.Domain
	plan             *Plan
	oldName, oldUUID string
	inPlace          bool
	notes            []string
}

func (a *applier) note(format string, args ...any) {
	a.notes = append(a.notes, fmt.Sprintf(format, args...))
}

func normUUID(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "-", ""))
}

func (a *applier) run() error {
	d := a.dom
	d.ID = nil
	clearAliases(d)
	d.Name = a.plan.Name
	d.UUID = a.plan.UUID // "" lets libvirt pick a new one
	a.rewriteUUIDCopies()
	a.resize()
	if d.Devices == nil {
		d.Devices = &libvirtxml.DomainDeviceList{}
	}
	if err := a.disks(); err != nil {
		return err
	}
	if err := a.interfaces(); err != nil {
		return err
	}
	a.secLabels()
	a.chardevs()
	a.nvram()
	if !a.inPlace {
		a.hostBound()
	}
	return nil
}

// rewriteUUIDCopies updates the places that repeat the VM's UUID (SMBIOS
// system uuid, hwuuid), which libvirt requires to match.
func (a *applier) rewriteUUIDCopies() {
	d := a.dom
	if normUUID(d.HWUUID) == a.oldUUID {
		d.HWUUID = ""
	}
	for i := range d.SysInfo {
		sm := d.SysInfo[i].SMBIOS
		if sm == nil || sm.System == nil {
			continue
		}
		entries := sm.System.Entry[:0]
		for _, e := range sm.System.Entry {
			if e.Name == "uuid" && normUUID(e.Value) == a.oldUUID {
				if a.plan.UUID == "" {
					continue
				}
				e.Value = a.plan.UUID
			}
			entries = append(entries, e)
		}
		sm.System.Entry = entries
	}
}

// resize applies the plan's memory and vCPU count.
func (a *applier) resize() {
	d, p := a.dom, a.plan
	if p.MemoryMiB > 0 {
		kib := uint(p.MemoryMiB) * 1024
		old := uint64(0)
		if d.Memory != nil {
			old = toKiB(d.Memory.Value, d.Memory.Unit)
		}
		if old/1024 != uint64(p.MemoryMiB) {
			d.Memory = &libvirtxml.DomainMemory{Value: kib, Unit: "KiB"}
			d.CurrentMemory = &libvirtxml.DomainCurrentMemory{Value: kib, Unit: "KiB"}
			if d.CPU != nil && d.CPU.Numa != nil && len(d.CPU.Numa.Cell) > 0 {
				a.note("memory changed to %d MiB but the guest NUMA cells keep their sizes: edit the XML if libvirt refuses it", p.MemoryMiB)
			}
		}
	}
	if p.VCPUs > 0 && (d.VCPU == nil || d.VCPU.Value != uint(p.VCPUs)) {
		if d.VCPU == nil {
			d.VCPU = &libvirtxml.DomainVCPU{}
		}
		n := uint(p.VCPUs)
		d.VCPU.Value = n
		if d.VCPU.Current > n {
			d.VCPU.Current = 0
		}
		d.VCPUs = nil // per-vCPU hotplug table no longer matches
		if d.CPU != nil && d.CPU.Topology != nil {
			t := d.CPU.Topology
			per := max(t.Dies, 1) * max(t.Clusters, 1) * max(t.Cores, 1) * max(t.Threads, 1)
			if p.VCPUs%per == 0 {
				t.Sockets = p.VCPUs / per
			} else {
				*t = libvirtxml.DomainCPUTopology{Sockets: p.VCPUs, Dies: 1, Cores: 1, Threads: 1}
			}
		}
	}
}

// disks points each planned disk at its restored image and drops the rest.
func (a *applier) disks() error {
	byTarget := map[string]*PlanDisk{}
	for i := range a.plan.Disks {
		byTarget[a.plan.Disks[i].Target] = &a.plan.Disks[i]
	}
	seen := map[string]bool{}
	kept := a.dom.Devices.Disks[:0]
	for _, disk := range a.dom.Devices.Disks {
		if !plannedDisk(&disk) {
			a.removable(&disk)
			kept = append(kept, disk)
			continue
		}
		pd, ok := byTarget[disk.Target.Dev]
		if !ok {
			return fmt.Errorf("%w: disk %s has no entry in the plan's disks (add one, with skip: true to leave it out)", ErrPlanMismatch, disk.Target.Dev)
		}
		seen[pd.Target] = true
		if pd.Skip {
			a.note("disk %s left out of the VM as the plan says", pd.Target)
			continue
		}
		a.pointDisk(&disk, pd)
		kept = append(kept, disk)
	}
	a.dom.Devices.Disks = kept
	for _, pd := range a.plan.Disks {
		if !seen[pd.Target] {
			return fmt.Errorf("%w: plan disk %s is not a disk of the saved VM", ErrPlanMismatch, pd.Target)
		}
	}
	return nil
}

func (a *applier) pointDisk(disk *libvirtxml.DomainDisk, pd *PlanDisk) {
	var src libvirtxml.DomainDiskSource
	if strings.HasPrefix(pd.Path, "/dev/") {
		src.Block = &libvirtxml.DomainDiskSourceBlock{Dev: pd.Path}
	} else {
		src.File = &libvirtxml.DomainDiskSourceFile{File: pd.Path}
	}
	if old := disk.Source; old != nil {
		src.StartupPolicy = old.StartupPolicy
		src.Reservations = old.Reservations
		if a.inPlace && old.File != nil && src.File != nil {
			src.File.SecLabel = old.File.SecLabel
		}
		if old.Encryption != nil {
			a.note("disk %s was encrypted (%s); the restored image is not", pd.Target, old.Encryption.Format)
		}
	}
	if disk.Encryption != nil {
		a.note("disk %s was encrypted (%s); the restored image is not", pd.Target, disk.Encryption.Format)
		disk.Encryption = nil
	}
	disk.Source = &src
	if disk.Driver == nil {
		disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
	}
	disk.Driver.Type = pd.Format
	disk.BackingStore = nil // the restored image is self-contained
	disk.Mirror = nil
}

// removable handles cdroms and floppies: media on the old host may be
// missing on the new one, so a new VM starts without it rather than fails.
func (a *applier) removable(disk *libvirtxml.DomainDisk) {
	disk.BackingStore = nil
	disk.Mirror = nil
	if disk.Source == nil {
		return
	}
	disk.Source.Index = 0 // node index of the running VM
	if a.inPlace {
		return
	}
	switch {
	case disk.Source.File != nil && disk.Source.File.File != "":
		disk.Source.StartupPolicy = "optional"
		disk.Source.File.SecLabel = nil
	case disk.Source.Block != nil:
		dev := "?"
		if disk.Target != nil {
			dev = disk.Target.Dev
		}
		a.note("%s: host device %s ejected", dev, disk.Source.Block.Dev)
		disk.Source = nil
	}
}

// interfaces applies MAC addresses and network mapping.
func (a *applier) interfaces() error {
	ifs := a.dom.Devices.Interfaces
	if len(a.plan.Networks) != len(ifs) {
		return fmt.Errorf("%w: the plan has %d networks, the saved VM %d interfaces", ErrPlanMismatch, len(a.plan.Networks), len(ifs))
	}
	for i := range ifs {
		ifc, pn := &ifs[i], a.plan.Networks[i]
		kind, _ := netKind(ifc)
		if pn.Type != kind {
			return fmt.Errorf("%w: networks[%d].type is %q, the saved interface is %q", ErrPlanMismatch, i, pn.Type, kind)
		}
		orig := ""
		if ifc.MAC != nil {
			orig, _ = hypervisor.ParseMAC(ifc.MAC.Address)
		}
		mac := pn.MAC
		switch {
		case a.plan.KeepMACs && mac != "" && !strings.EqualFold(mac, orig):
			return fmt.Errorf("%w: networks[%d].mac: %s differs from the original %s while keep_macs is true", ErrInvalidPlan, i, mac, orig)
		case a.plan.KeepMACs:
			mac = orig
		case mac == "":
			mac = NewMAC()
		}
		if mac == "" {
			ifc.MAC = nil // libvirt generates one
		} else {
			ifc.MAC = &libvirtxml.DomainInterfaceMAC{Address: mac}
		}
		switch s := ifc.Source; kind {
		case NetNetwork:
			// portid and the resolved bridge are state of the running VM.
			s.Network = &libvirtxml.DomainInterfaceSourceNetwork{Network: pn.To, PortGroup: s.Network.PortGroup}
		case NetBridge:
			s.Bridge.Bridge = pn.To
		case NetDirect:
			s.Direct.Dev = pn.To
		}
		// Tap/macvtap device names are assigned per run; keep only a
		// device the user manages (type ethernet, managed='no').
		if ifc.Target != nil && ifc.Target.Managed != "no" {
			ifc.Target = nil
		}
		ifc.Guest = nil
	}
	return nil
}
