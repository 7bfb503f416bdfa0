package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt/domxml"
)

// Instant recovery (hypervisor.InstantHost). An instant VM's disks are
// qcow2 overlays whose backing store, written in the domain XML, is an NBD
// export on a unix socket: libvirt opens it as a network disk and QEMU's
// NBD client reads it. The disks stop the VM on read and write errors
// (error_policy/rerror_policy "stop"), so a restart of kura's server
// pauses the guest instead of failing its I/O; ResumeIOPaused continues.
// The VM carries a <kura:instant> element in its <metadata>.

// tagFile, in an instant directory, holds the hypervisor.InstantTag given
// to InstantDir (JSON).
const tagFile = "tag.json"

// instantNS is the namespace of kura's metadata element.
const instantNS = "https://kurabackup.org/xmlns/libvirt/instant/1"

// instantMeta is the metadata element of an instant VM.
type instantMeta struct {
	XMLName xml.Name     `xml:"instant"`
	Role    string       `xml:"role,attr"`
	Point   string       `xml:"point,attr"`
	Source  string       `xml:"source,attr,omitempty"`
	Dir     string       `xml:"dir,attr"`
	Owner   int          `xml:"owner,attr,omitempty"`
	Host    string       `xml:"host,attr,omitempty"`
	Disks   []metaPolicy `xml:"disk"`
}

// metaPolicy keeps a disk's saved error policies while the VM runs with
// "stop".
type metaPolicy struct {
	Target string `xml:"target,attr"`
	Error  string `xml:"error_policy,attr"`
	Read   string `xml:"rerror_policy,attr"`
}

var _ hypervisor.InstantHost = (*Connector)(nil)

func (c *Connector) localOnly(op string) error {
	if c.remote {
		return fmt.Errorf("%s on %s: %w: kura serves instant VMs from the hypervisor host itself", op, c.uri, hypervisor.ErrUnsupported)
	}
	return nil
}

// InstantDir implements hypervisor.InstantHost: a directory under the
// QEMU scratch directory, owned by QEMU's user, mode 0700, with an owner
// file naming the calling process (kura cleanup leaves the directories of
// live processes alone).
func (c *Connector) InstantDir(ctx context.Context, name string, tag hypervisor.InstantTag) (string, error) {
	if err := c.localOnly("instant directory"); err != nil {
		return "", err
	}
	if !strings.HasPrefix(name, Prefix) || strings.ContainsAny(name, "/\x00 ") || len(name) > 40 {
		return "", fmt.Errorf("instant directory name %q: must start with %q, at most 40 bytes, no slash or space", name, Prefix)
	}
	uid, gid, err := qemuOwner()
	if err != nil {
		return "", err
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{c.QemuScratchDir, 0o750}, {filepath.Join(c.QemuScratchDir, name), 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return "", fmt.Errorf("create %s: %w", d.path, err)
		}
		if err := os.Chown(d.path, uid, gid); err != nil {
			return "", fmt.Errorf("chown %s: %w", d.path, err)
		}
	}
	dir := filepath.Join(c.QemuScratchDir, name)
	b, err := json.Marshal(tag)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, tagFile), b, 0o600)
	}
	if err == nil {
		err = writeOwner(dir)
	}
	if err != nil {
		return "", fmt.Errorf("instant directory %s: %w", dir, err)
	}
	return dir, nil
}

// nbdURI is the backing file name written into an overlay.
func nbdURI(d hypervisor.InstantDisk) string {
	return "nbd+unix:///" + d.Export + "?socket=" + d.Socket
}

// CreateOverlay implements hypervisor.InstantHost. The backing is not
// opened (the domain XML describes it).
func (c *Connector) CreateOverlay(ctx context.Context, d hypervisor.InstantDisk) error {
	if err := c.localOnly("create overlay"); err != nil {
		return err
	}
	if !filepath.IsAbs(d.Overlay) || d.Size <= 0 {
		return fmt.Errorf("overlay %q of %d bytes: need an absolute path and a size", d.Overlay, d.Size)
	}
	if _, err := os.Lstat(d.Overlay); err == nil {
		return fmt.Errorf("overlay %s: %w", d.Overlay, hypervisor.ErrExists)
	}
	return c.qemuImg(ctx, "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", nbdURI(d), d.Overlay, strconv.FormatInt(d.Size, 10))
}

// DefineInstant implements hypervisor.InstantHost.
func (c *Connector) DefineInstant(ctx context.Context, spec hypervisor.InstantSpec) (hypervisor.VM, error) {
	if err := c.localOnly("define instant vm"); err != nil {
		return hypervisor.VM{}, err
	}
	raw, err := instantXML(spec)
	if err != nil {
		return hypervisor.VM{}, fmt.Errorf("instant vm %s: %w", spec.Name, err)
	}
	if !spec.Transient {
		return c.DefineVM(ctx, raw)
	}
	if _, err := c.lv.DomainLookupByName(spec.Name); err == nil {
		return hypervisor.VM{}, fmt.Errorf("instant vm %s: %w", spec.Name, hypervisor.ErrExists)
	}
	d, err := c.lv.DomainCreateXML(string(raw), 0)
	if err != nil {
		return hypervisor.VM{}, mapErr("start instant vm "+spec.Name, err)
	}
	c.log.Info("transient instant vm started", "vm", d.Name)
	return c.describe(ctx, d)
}

// instantXML turns the saved configuration into the instant VM's XML.
func instantXML(spec hypervisor.InstantSpec) ([]byte, error) {
	if len(spec.Disks) == 0 {
		return nil, errors.New("no disks")
	}
	byTarget := map[string]hypervisor.InstantDisk{}
	sizes := map[string]int64{}
	for _, d := range spec.Disks {
		byTarget[d.Target] = d
		sizes[d.Target] = d.Size
	}
	plan, err := domxml.DefaultPlan(spec.Config, domxml.Options{PointID: spec.Tag.Point, NewName: spec.Name,
		StorageDir: filepath.Dir(spec.Disks[0].Overlay), NetworkMap: spec.NetworkMap, Format: domxml.FormatQCOW2, DiskSizes: sizes})
	if err != nil {
		return nil, err
	}
	plan.UUID = spec.UUID
	if plan.UUID == "" {
		plan.UUID = hypervisor.NewUUID()
	}
	for i := range plan.Disks {
		d, ok := byTarget[plan.Disks[i].Target]
		plan.Disks[i].Skip = !ok
		plan.Disks[i].Path, plan.Disks[i].Format = d.Overlay, domxml.FormatQCOW2
		delete(byTarget, plan.Disks[i].Target)
	}
	if len(byTarget) > 0 {
		return nil, fmt.Errorf("disks %v are not disks of the saved configuration", slices.Sorted(maps.Keys(byTarget)))
	}
	out, err := domxml.Apply(spec.Config, plan)
	if err != nil {
		return nil, err
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(string(out)); err != nil {
		return nil, fmt.Errorf("parse rewritten domain xml: %w", err)
	}
	meta := instantMeta{Role: spec.Tag.Role, Point: spec.Tag.Point, Source: spec.Tag.Source, Dir: spec.Tag.Dir,
		Owner: spec.Tag.Owner, Host: spec.Tag.Host}
	for _, d := range spec.Disks {
		byTarget[d.Target] = d
	}
	for i := range dom.Devices.Disks {
		xd := &dom.Devices.Disks[i]
		d, ok := byTarget[targetOf(xd)]
		if !ok {
			continue
		}
		if xd.Driver == nil {
			xd.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu", Type: domxml.FormatQCOW2}
		}
		meta.Disks = append(meta.Disks, metaPolicy{Target: d.Target, Error: xd.Driver.ErrorPolicy, Read: xd.Driver.RErrorPolicy})
		xd.Driver.ErrorPolicy, xd.Driver.RErrorPolicy = "stop", "stop"
		xd.BackingStore = &libvirtxml.DomainDiskBackingStore{
			Format: &libvirtxml.DomainDiskFormat{Type: "raw"},
			Source: &libvirtxml.DomainDiskSource{Network: &libvirtxml.DomainDiskSourceNetwork{Protocol: "nbd", Name: d.Export,
				Hosts: []libvirtxml.DomainDiskSourceHost{{Transport: "unix", Socket: d.Socket}}}},
			BackingStore: &libvirtxml.DomainDiskBackingStore{},
		}
	}
	if spec.IsolatedNetwork != "" {
		isolate(&dom, spec.IsolatedNetwork)
	}
	if spec.Console {
		addConsole(&dom)
	}
	dom.Metadata = &libvirtxml.DomainMetadata{XML: meta.element()}
	s, err := dom.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal domain xml: %w", err)
	}
	return []byte(s), nil
}

func targetOf(d *libvirtxml.DomainDisk) string {
	if d.Target == nil {
		return ""
	}
	return d.Target.Dev
}

// isolate connects every interface to network net, with nothing that
// ties it to the host's switches.
func isolate(dom *libvirtxml.Domain, net string) {
	for i := range dom.Devices.Interfaces {
		ifc := &dom.Devices.Interfaces[i]
		if s := ifc.Source; s != nil && (s.Hostdev != nil || s.VHostUser != nil) {
			ifc.Driver, ifc.Backend = nil, nil
			if ifc.Model == nil {
				ifc.Model = &libvirtxml.DomainInterfaceModel{Type: "virtio"}
			}
		}
		ifc.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: net}}
		ifc.VirtualPort, ifc.Target, ifc.PortForward, ifc.BackendDomain = nil, nil, nil, nil
	}
}

// addConsole gives a VM without a display a VGA adapter.
func addConsole(dom *libvirtxml.Domain) {
	vga := libvirtxml.DomainVideoModel{Type: "vga"}
	switch v := dom.Devices.Videos; {
	case len(v) == 0:
		dom.Devices.Videos = []libvirtxml.DomainVideo{{Model: vga}}
	case v[0].Model.Type == "none":
		v[0].Model = vga
	}
}

// element renders the metadata element with kura's namespace prefix.
func (m instantMeta) element() string {
	attr := func(name, v string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(v))
		return " " + name + `="` + b.String() + `"`
	}
	var b strings.Builder
	b.WriteString(`<kura:instant xmlns:kura="` + instantNS + `"`)
	b.WriteString(attr("role", m.Role) + attr("point", m.Point) + attr("dir", m.Dir))
	if m.Source != "" {
		b.WriteString(attr("source", m.Source))
	}
	if m.Owner != 0 {
		b.WriteString(attr("owner", strconv.Itoa(m.Owner)))
	}
	if m.Host != "" {
		b.WriteString(attr("host", m.Host))
	}
	b.WriteString(">")
	for _, d := range m.Disks {
		b.WriteString("<kura:disk" + attr("target", d.Target) + attr("error_policy", d.Error) + attr("rerror_policy", d.Read) + "/>")
	}
	b.WriteString("</kura:instant>")
	return b.String()
}

// parseInstantMeta finds kura's element in a domain's <metadata>.
func parseInstantMeta(x *libvirtxml.Domain) (*instantMeta, bool) {
	if x.Metadata == nil || !strings.Contains(x.Metadata.XML, instantNS) {
		return nil, false
	}
	dec := xml.NewDecoder(strings.NewReader(x.Metadata.XML))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Space == instantNS && se.Name.Local == "instant" {
			var m instantMeta
			if dec.DecodeElement(&m, &se) != nil {
				return nil, false
			}
			return &m, true
		}
	}
}

// InstantVMs implements hypervisor.InstantHost.
func (c *Connector) InstantVMs(ctx context.Context) ([]hypervisor.InstantVM, error) {
	if err := c.localOnly("list instant vms"); err != nil {
		return nil, err
	}
	doms, _, err := c.lv.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, mapErr("list domains", err)
	}
	var out []hypervisor.InstantVM
	for _, d := range doms {
		x, _, err := c.domainXML(d, 0)
		if err != nil {
			continue // undefined meanwhile
		}
		m, ok := parseInstantMeta(x)
		if !ok {
			continue
		}
		vm, err := c.describe(ctx, d)
		if err != nil {
			continue
		}
		out = append(out, hypervisor.InstantVM{VM: vm, Tag: hypervisor.InstantTag{Role: m.Role, Point: m.Point,
			Source: m.Source, Dir: m.Dir, Owner: m.Owner, Host: m.Host}})
	}
	return out, nil
}

// ResumeIOPaused implements hypervisor.InstantHost.
func (c *Connector) ResumeIOPaused(ctx context.Context, nameOrUUID string) (bool, error) {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return false, err
	}
	state, reason, err := c.lv.DomainGetState(d, 0)
	if err != nil {
		return false, mapErr("state of "+d.Name, err)
	}
	if golibvirt.DomainState(state) != golibvirt.DomainPaused || golibvirt.DomainPausedReason(reason) != golibvirt.DomainPausedIoerror {
		return false, nil
	}
	if err := c.lv.DomainResume(d); err != nil {
		return true, mapErr("resume "+d.Name, err)
	}
	c.log.Info("vm paused by a disk error resumed", "vm", d.Name)
	return true, nil
}

// FinishInstant implements hypervisor.InstantHost.
func (c *Connector) FinishInstant(ctx context.Context, nameOrUUID string) error {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	x, _, err := c.domainXML(d, golibvirt.DomainXMLInactive)
	if err != nil {
		return err
	}
	m, ok := parseInstantMeta(x)
	if !ok {
		return fmt.Errorf("finish %s: %w", d.Name, hypervisor.ErrNotInstant)
	}
	for i := range x.Devices.Disks {
		xd := &x.Devices.Disks[i]
		if xd.BackingStore != nil && xd.BackingStore.Source != nil && xd.BackingStore.Source.Network != nil {
			return fmt.Errorf("finish %s: disk %s still reads from its nbd backing: copy it first", d.Name, targetOf(xd))
		}
		for _, p := range m.Disks {
			if p.Target == targetOf(xd) && xd.Driver != nil {
				xd.Driver.ErrorPolicy, xd.Driver.RErrorPolicy = p.Error, p.Read
			}
		}
	}
	x.Metadata = nil
	s, err := x.Marshal()
	if err != nil {
		return fmt.Errorf("marshal domain xml: %w", err)
	}
	if _, err := c.lv.DomainDefineXMLFlags(s, golibvirt.DomainDefineValidate); err != nil {
		return mapErr("redefine "+d.Name, err)
	}
	if on, err := c.active(d); err == nil && on {
		err := c.lv.DomainSetMetadata(d, int32(golibvirt.DomainMetadataElement), nil, []string{"kura"}, []string{instantNS}, golibvirt.DomainAffectLive)
		if err != nil {
			return mapErr("drop the instant tag of running "+d.Name, err)
		}
	}
	c.log.Info("instant vm is now an ordinary vm", "vm", d.Name)
	return nil
}

// CreateIsolatedNetwork implements hypervisor.InstantHost: a transient
// bridge with no forward mode and no IP address (so no DHCP or DNS). The
// bridge is named after the network: left to pick the next free virbrN
// itself, libvirt gave two networks created at once the same one (CI:
// "error creating bridge interface virbr4: File exists").
func (c *Connector) CreateIsolatedNetwork(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, Prefix) || strings.ContainsAny(name, "/\x00 '\"<>&") {
		return fmt.Errorf("network name %q must start with %q", name, Prefix)
	}
	if _, err := c.lv.NetworkCreateXML(fmt.Sprintf("<network><name>%s</name><bridge name='%s' stp='off'/></network>", name, bridgeName(name))); err != nil {
		return mapErr("create isolated network "+name, err)
	}
	return nil
}

// bridgeName is the bridge of isolated network name: "kura" and 10 hex
// digits of its hash (an interface name holds at most 15 bytes).
func bridgeName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "kura" + hex.EncodeToString(sum[:5])
}

// RemoveNetwork implements hypervisor.InstantHost.
func (c *Connector) RemoveNetwork(ctx context.Context, name string) error {
	n, err := c.lv.NetworkLookupByName(name)
	if err != nil {
		if lvCode(err) == golibvirt.ErrNoNetwork {
			return nil
		}
		return mapErr("network "+name, err)
	}
	if err := c.lv.NetworkDestroy(n); err != nil && lvCode(err) != golibvirt.ErrNoNetwork {
		return mapErr("remove network "+name, err)
	}
	// A defined (persistent) network of that name would stay: kura only
	// makes transient ones.
	_ = c.lv.NetworkUndefine(n)
	return nil
}
