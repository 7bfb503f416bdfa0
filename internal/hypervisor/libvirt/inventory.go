package libvirt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// ListVMs implements hypervisor.Connector.
func (c *Connector) ListVMs(ctx context.Context) ([]hypervisor.VM, error) {
	doms, _, err := c.lv.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, mapErr("list domains", err)
	}
	out := make([]hypervisor.VM, 0, len(doms))
	for _, d := range doms {
		vm, err := c.describe(ctx, d)
		if lvCode(err) == golibvirt.ErrNoDomain || errorsIsNotFound(err) {
			continue // undefined meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, vm)
	}
	return out, nil
}

// LookupVM implements hypervisor.Connector.
func (c *Connector) LookupVM(ctx context.Context, nameOrUUID string) (hypervisor.VM, error) {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return hypervisor.VM{}, err
	}
	return c.describe(ctx, d)
}

func (c *Connector) lookup(nameOrUUID string) (golibvirt.Domain, error) {
	if u, ok := parseUUID(nameOrUUID); ok {
		d, err := c.lv.DomainLookupByUUID(u)
		if err == nil {
			return d, nil
		}
		if lvCode(err) != golibvirt.ErrNoDomain {
			return d, mapErr("lookup domain "+nameOrUUID, err)
		}
	}
	d, err := c.lv.DomainLookupByName(nameOrUUID)
	if err != nil {
		return d, mapErr("lookup domain "+nameOrUUID, err)
	}
	return d, nil
}

func parseUUID(s string) (golibvirt.UUID, bool) {
	var u golibvirt.UUID
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return u, false
	}
	for i := range u {
		var b byte
		if _, err := fmt.Sscanf(h[2*i:2*i+2], "%02x", &b); err != nil {
			return u, false
		}
		u[i] = b
	}
	return u, true
}

func formatUUID(u golibvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func errorsIsNotFound(err error) bool { return golibvirt.IsNotFound(err) }

// domainXML returns the parsed live (or inactive) XML of a domain.
func (c *Connector) domainXML(d golibvirt.Domain, flags golibvirt.DomainXMLFlags) (*libvirtxml.Domain, string, error) {
	raw, err := c.lv.DomainGetXMLDesc(d, flags)
	if err != nil {
		return nil, "", mapErr("domain xml of "+d.Name, err)
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(raw); err != nil {
		return nil, "", fmt.Errorf("parse domain xml of %s: %w", d.Name, err)
	}
	return &x, raw, nil
}

func (c *Connector) describe(ctx context.Context, d golibvirt.Domain) (hypervisor.VM, error) {
	state, _, err := c.lv.DomainGetState(d, 0)
	if err != nil {
		return hypervisor.VM{}, mapErr("state of "+d.Name, err)
	}
	x, _, err := c.domainXML(d, 0)
	if err != nil {
		return hypervisor.VM{}, err
	}
	persistent, err := c.lv.DomainIsPersistent(d)
	if err != nil {
		return hypervisor.VM{}, mapErr("persistence of "+d.Name, err)
	}
	vm := hypervisor.VM{Name: d.Name, UUID: formatUUID(d.UUID), State: powerState(golibvirt.DomainState(state)),
		Persistent: persistent == 1}
	for _, ch := range x.Devices.Channels {
		if ch.Target != nil && ch.Target.VirtIO != nil && ch.Target.VirtIO.Name == "org.qemu.guest_agent.0" {
			vm.HasAgent = ch.Target.VirtIO.State == "connected"
		}
	}
	for _, xd := range x.Devices.Disks {
		vm.Disks = append(vm.Disks, c.disk(ctx, d, xd))
	}
	if vm.State == hypervisor.PowerOn {
		vm.Addresses = c.addresses(ctx, d, vm.HasAgent)
	}
	if tags := domainTags(x); len(tags) > 0 {
		vm.Attributes = map[string][]string{hypervisor.TagAttr: tags}
	}
	return vm, nil
}

func powerState(s golibvirt.DomainState) hypervisor.PowerState {
	switch s {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return hypervisor.PowerOn
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return hypervisor.PowerPaused
	}
	return hypervisor.PowerOff
}

// disk converts one disk of the domain XML and decides whether kura can
// protect it.
func (c *Connector) disk(ctx context.Context, d golibvirt.Domain, xd libvirtxml.DomainDisk) hypervisor.Disk {
	out := hypervisor.Disk{Device: xd.Device}
	if out.Device == "" {
		out.Device = "disk"
	}
	if xd.Target != nil {
		out.Target = xd.Target.Dev
	}
	if xd.Driver != nil {
		out.Format = xd.Driver.Type
	}
	src := xd.Source
	switch {
	case src == nil:
		out.Type = "file"
	case src.File != nil:
		out.Type, out.Source = "file", src.File.File
	case src.Block != nil:
		out.Type, out.Source = "block", src.Block.Dev
	case src.Network != nil:
		out.Type, out.Source = "network", src.Network.Protocol+":"+src.Network.Name
	case src.Volume != nil:
		out.Type, out.Source = "volume", src.Volume.Pool+"/"+src.Volume.Volume
	default:
		out.Type = "other"
	}
	out.Reason = c.unprotectable(out, src)
	out.Protectable = out.Reason == ""
	if out.Type == "volume" && out.Protectable {
		out.Source = c.volumePath(src.Volume) // checked by unprotectable
	}
	if out.Protectable {
		out.Size = c.diskSize(ctx, d, out)
	}
	return out
}

func (c *Connector) unprotectable(d hypervisor.Disk, src *libvirtxml.DomainDiskSource) string {
	switch {
	case d.Device == "cdrom" || d.Device == "floppy":
		return d.Device
	case d.Device == "lun":
		return "pass-through block LUN"
	case d.Type == "network":
		return fmt.Sprintf("network disk (%s) has no driver in kura", src.Network.Protocol)
	case d.Type == "block":
		return "block device disks are not supported yet"
	case d.Type == "volume" && c.volumePath(src.Volume) == "":
		return "storage volume does not resolve to a file"
	case d.Type != "file" && d.Type != "volume":
		return fmt.Sprintf("%s disk source is not supported", d.Type)
	case d.Source == "":
		return "no source (empty drive)"
	case d.Format != "qcow2" && d.Format != "raw":
		return fmt.Sprintf("format %q is not supported (qcow2 and raw are)", d.Format)
	}
	return ""
}

// volumePath resolves a storage volume to a file path ("" when it is not
// a file).
func (c *Connector) volumePath(v *libvirtxml.DomainDiskSourceVolume) string {
	pool, err := c.lv.StoragePoolLookupByName(v.Pool)
	if err != nil {
		return ""
	}
	vol, err := c.lv.StorageVolLookupByName(pool, v.Volume)
	if err != nil {
		return ""
	}
	typ, _, _, err := c.lv.StorageVolGetInfo(vol)
	if err != nil || golibvirt.StorageVolType(typ) != golibvirt.StorageVolFile {
		return ""
	}
	p, err := c.lv.StorageVolGetPath(vol)
	if err != nil {
		return ""
	}
	return p
}

// diskSize returns the virtual size (0 when unknown). Local raw and qcow2
// images are measured from their own headers (others by qemu-img info),
// never through QEMU: QEMU 7.2 aborts
// (qcow2_get_specific_info assertion) when its block nodes are queried
// while a backup job is creating its scratch images, so asking QEMU for a
// block device's size during an inventory can crash a VM another job is
// backing up. Remote disks are sized by libvirt's storage driver.
func (c *Connector) diskSize(ctx context.Context, d golibvirt.Domain, disk hypervisor.Disk) int64 {
	if c.remote {
		if vol, err := c.lv.StorageVolLookupByPath(disk.Source); err == nil {
			if _, capacity, _, err := c.lv.StorageVolGetInfo(vol); err == nil {
				return int64(capacity)
			}
		}
		return 0
	}
	// The header, whatever the state: qemu-img info costs a process (about
	// 40 ms here) per disk, and an inventory describes every VM.
	if n, err := imageVirtualSize(disk.Source, disk.Format); err == nil {
		return n
	}
	info, err := c.imageInfo(ctx, disk.Source, disk.Format)
	if err != nil {
		c.log.Debug("disk size unknown", "vm", d.Name, "disk", disk.Target, "err", err)
		return 0
	}
	return info.VirtualSize
}

// imageVirtualSize reads the virtual size of a local raw or qcow2 image
// without opening it through QEMU: the size field of a qcow2 header (a
// big-endian u64 at offset 24, after the "QFI\xfb" magic), or the length of
// a raw file or block device.
func imageVirtualSize(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	switch format {
	case "qcow2":
		var h [32]byte
		if _, err := f.ReadAt(h[:], 0); err != nil {
			return 0, fmt.Errorf("read qcow2 header of %s: %w", path, err)
		}
		if string(h[:4]) != "QFI\xfb" {
			return 0, fmt.Errorf("%s is not a qcow2 image", path)
		}
		return int64(binary.BigEndian.Uint64(h[24:32])), nil
	case "raw":
		return f.Seek(0, io.SeekEnd)
	}
	return 0, fmt.Errorf("size of %s: format %q: %w", path, format, hypervisor.ErrUnsupported)
}

type imageInfo struct {
	VirtualSize int64 `json:"virtual-size"`
	Format      string
	FormatSpec  struct {
		Data struct {
			Bitmaps []struct {
				Name  string   `json:"name"`
				Flags []string `json:"flags"`
			} `json:"bitmaps"`
		} `json:"data"`
	} `json:"format-specific"`
}

// imageInfo runs qemu-img info; -U lets it read an image a running QEMU
// holds.
func (c *Connector) imageInfo(ctx context.Context, path, format string) (*imageInfo, error) {
	args := []string{"info", "-U", "--output=json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	out, err := exec.CommandContext(ctx, c.QemuImg, append(args, path)...).Output()
	if err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %w%s", path, err, stderrOf(err))
	}
	var info imageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return &info, nil
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// addresses returns the guest's IP addresses from the agent, falling back
// to the DHCP leases of libvirt networks. Failures yield no addresses.
func (c *Connector) addresses(ctx context.Context, d golibvirt.Domain, agent bool) []string {
	var out []string
	collect := func(src golibvirt.DomainInterfaceAddressesSource) {
		var ifs []golibvirt.DomainInterface
		var err error
		if src == golibvirt.DomainInterfaceAddressesSrcAgent {
			err = c.agentCall(ctx, "addresses of "+d.Name, func(lv *golibvirt.Libvirt) error {
				var err error
				ifs, err = lv.DomainInterfaceAddresses(d, uint32(src), 0)
				return err
			})
		} else {
			ifs, err = c.lv.DomainInterfaceAddresses(d, uint32(src), 0)
		}
		if err != nil {
			c.log.Debug("interface addresses", "vm", d.Name, "source", src, "err", err)
			return
		}
		for _, i := range ifs {
			if i.Name == "lo" {
				continue
			}
			for _, a := range i.Addrs {
				out = append(out, a.Addr)
			}
		}
	}
	if agent {
		collect(golibvirt.DomainInterfaceAddressesSrcAgent)
	}
	if len(out) == 0 {
		collect(golibvirt.DomainInterfaceAddressesSrcLease)
	}
	return out
}
