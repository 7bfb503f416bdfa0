package domxml

import (
	"fmt"
	"path/filepath"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Options say what DefaultPlan should plan.
type Options struct {
	// PointID is the recovery point restored.
	PointID string
	// NewName is the restored VM's name (ignored with InPlace; required
	// otherwise).
	NewName string
	// StorageDir is where new disk images go (required unless InPlace).
	StorageDir string
	// NetworkMap maps network or bridge names of the saved XML to names on
	// the target host.
	NetworkMap map[string]string
	// Host is the target libvirt URI.
	Host string
	// Kind is the target connector's kind (the plan's hypervisor).
	Kind string
	// Format of the restored images (qcow2 or raw); empty keeps each disk's
	// format when it is qcow2 or raw and uses qcow2 otherwise.
	Format string
	// InPlace restores over the original VM: same name, UUID, MAC
	// addresses and disk paths.
	InPlace bool
	// DiskSizes gives the virtual size of each disk by target (from the
	// recovery point's manifest); optional.
	DiskSizes map[string]int64
}

// parse parses domain XML.
func parse(domainXML []byte) (*libvirtxml.Domain, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(domainXML)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidXML, err)
	}
	if d.Name == "" {
		return nil, fmt.Errorf("%w: no <name>", ErrInvalidXML)
	}
	return &d, nil
}

// plannedDisk says whether a disk of the XML is part of a plan: a disk or
// lun device (not cdrom or floppy) with a target.
func plannedDisk(d *libvirtxml.DomainDisk) bool {
	if d.Target == nil || d.Target.Dev == "" {
		return false
	}
	return d.Device == "" || d.Device == "disk"
}

// diskSource returns a disk's host path or volume name ("" when none).
func diskSource(d *libvirtxml.DomainDisk) string {
	s := d.Source
	switch {
	case s == nil:
		return ""
	case s.File != nil:
		return s.File.File
	case s.Block != nil:
		return s.Block.Dev
	case s.Volume != nil:
		return s.Volume.Pool + "/" + s.Volume.Volume
	case s.Network != nil:
		return s.Network.Protocol + ":" + s.Network.Name
	}
	return ""
}

// netKind returns an interface's type and its network/bridge/device name.
func netKind(ifc *libvirtxml.DomainInterface) (kind, name string) {
	s := ifc.Source
	switch {
	case s == nil:
		return "unknown", ""
	case s.Network != nil:
		return NetNetwork, s.Network.Network
	case s.Bridge != nil:
		return NetBridge, s.Bridge.Bridge
	case s.Direct != nil:
		return NetDirect, s.Direct.Dev
	case s.User != nil:
		return "user", ""
	case s.Ethernet != nil:
		return "ethernet", ""
	case s.VHostUser != nil:
		return "vhostuser", ""
	case s.Hostdev != nil:
		return "hostdev", ""
	case s.Internal != nil:
		return "internal", ""
	case s.Null != nil:
		return "null", ""
	}
	return "other", ""
}

// DefaultPlan derives a restore plan from the saved domain XML. In place, it
// keeps name, UUID, MAC addresses and disk paths; otherwise it plans a new VM
// beside the original: opts.NewName, a new UUID, new MAC addresses, and disks
// in opts.StorageDir named <name>-<target>.<format>.
func DefaultPlan(domainXML []byte, opts Options) (*Plan, error) {
	dom, err := parse(domainXML)
	if err != nil {
		return nil, err
	}
	if opts.Format != "" && opts.Format != FormatQCOW2 && opts.Format != FormatRaw {
		return nil, fmt.Errorf("%w: format: %q is not qcow2 or raw", ErrInvalidPlan, opts.Format)
	}
	p := &Plan{RestorePlan: hypervisor.RestorePlan{Point: opts.PointID, Hypervisor: opts.Kind, Host: opts.Host, KeepMACs: opts.InPlace}}
	if opts.InPlace {
		p.Name, p.UUID = dom.Name, dom.UUID
	} else {
		if opts.NewName == "" {
			return nil, fmt.Errorf("%w: name: a restore beside the original needs a new name", ErrInvalidPlan)
		}
		if opts.NewName == dom.Name {
			return nil, fmt.Errorf("%w: name: %q is the original VM's name", ErrInvalidPlan, opts.NewName)
		}
		if !filepath.IsAbs(opts.StorageDir) {
			return nil, fmt.Errorf("%w: storage: %q is not an absolute directory", ErrInvalidPlan, opts.StorageDir)
		}
		p.Name = opts.NewName
		if dom.OS != nil && dom.OS.NVRam != nil {
			p.NVRAM = filepath.Join(opts.StorageDir, opts.NewName+"_VARS.fd")
		}
	}
	if dom.Memory != nil {
		p.MemoryMiB = int(toKiB(dom.Memory.Value, dom.Memory.Unit) / 1024)
	}
	if dom.VCPU != nil {
		p.VCPUs = int(dom.VCPU.Value)
	}
	if dom.Devices == nil {
		return p, nil
	}
	for i := range dom.Devices.Disks {
		d := &dom.Devices.Disks[i]
		if !plannedDisk(d) {
			continue
		}
		pd := PlanDisk{Target: d.Target.Dev, Source: diskSource(d), Size: opts.DiskSizes[d.Target.Dev]}
		orig := ""
		if d.Driver != nil {
			orig = d.Driver.Type
		}
		pd.Format = opts.Format
		if pd.Format == "" {
			pd.Format = FormatQCOW2
			if orig == FormatRaw {
				pd.Format = FormatRaw
			}
		}
		switch {
		case opts.InPlace && filepath.IsAbs(pd.Source):
			pd.Path = pd.Source
		case opts.InPlace:
			return nil, fmt.Errorf("%w: disk %s has no local path (%q): restore it beside the original", ErrPlanMismatch, pd.Target, pd.Source)
		default:
			pd.Path = filepath.Join(opts.StorageDir, opts.NewName+"-"+pd.Target+"."+pd.Format)
		}
		p.Disks = append(p.Disks, pd)
	}
	for i := range dom.Devices.Interfaces {
		ifc := &dom.Devices.Interfaces[i]
		kind, name := netKind(ifc)
		n := PlanNet{Type: kind, From: name, To: name}
		if to, ok := opts.NetworkMap[name]; ok && name != "" {
			n.To = to
		}
		switch {
		case opts.InPlace && ifc.MAC != nil:
			n.MAC = ifc.MAC.Address
		case !opts.InPlace:
			n.MAC = NewMAC()
		}
		p.Networks = append(p.Networks, n)
	}
	for from := range opts.NetworkMap {
		if !planMaps(p, from) {
			return nil, fmt.Errorf("%w: network map: no interface uses %q", ErrPlanMismatch, from)
		}
	}
	return p, nil
}

func planMaps(p *Plan, from string) bool {
	for _, n := range p.Networks {
		if n.From == from {
			return true
		}
	}
	return false
}

// toKiB converts a libvirt memory value to KiB.
func toKiB(v uint, unit string) uint64 {
	x := uint64(v)
	switch strings.ToLower(unit) {
	case "b", "bytes":
		return x / 1024
	case "kb":
		return x * 1000 / 1024
	case "", "k", "kib":
		return x
	case "mb":
		return x * 1000 * 1000 / 1024
	case "m", "mib":
		return x * 1024
	case "gb":
		return x * 1000 * 1000 * 1000 / 1024
	case "g", "gib":
		return x * 1024 * 1024
	case "tb":
		return x * 1000 * 1000 * 1000 * 1000 / 1024
	case "t", "tib":
		return x * 1024 * 1024 * 1024
	}
	return x
}
