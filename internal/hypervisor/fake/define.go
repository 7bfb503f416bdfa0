package fake

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kurabackup/kura/internal/diskwrite"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt/domxml"
)

// source is the disk's source as the inventory and the configuration show
// it.
func (d *disk) source(vm, imageDir string) string {
	switch {
	case d.path != "":
		return d.path
	case imageDir != "":
		return filepath.Join(imageDir, vm+"-"+d.spec.Target+".raw")
	}
	return "mem:" + vm + "/" + d.spec.Target
}

// domainXML is the configuration a session saves: libvirt domain XML with
// the VM's name, UUID and disks (as raw files). A VM created by DefineVM
// saves the XML it was defined with.
func (st *vmState) domainXML(imageDir string) []byte {
	if st.config != nil {
		return slices.Clone(st.config)
	}
	var b strings.Builder
	b.WriteString("<domain type='fake'>\n")
	fmt.Fprintf(&b, "  <name>%s</name>\n  <uuid>%s</uuid>\n", esc(st.spec.Name), esc(st.spec.UUID))
	b.WriteString("  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>\n  <devices>\n")
	for _, d := range st.disks {
		fmt.Fprintf(&b, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n"+
			"      <source file='%s'/>\n      <target dev='%s' bus='virtio'/>\n    </disk>\n",
			esc(d.source(st.spec.Name, imageDir)), esc(d.spec.Target))
	}
	b.WriteString("  </devices>\n</domain>\n")
	return []byte(b.String())
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// fakeDomain is what DefineVM reads from domain XML.
type fakeDomain struct {
	Name  string `xml:"name"`
	UUID  string `xml:"uuid"`
	Disks []struct {
		Device string `xml:"device,attr"`
		Source struct {
			File string `xml:"file,attr"`
		} `xml:"source"`
		Target struct {
			Dev string `xml:"dev,attr"`
		} `xml:"target"`
	} `xml:"devices>disk"`
}

// DefineVM implements hypervisor.Connector: it adds (or replaces, when
// name and UUID match) a shut-off VM whose disks are the XML's source
// files; it holds no data of its own.
func (c *Connector) DefineVM(_ context.Context, config []byte) (hypervisor.VM, error) {
	var x fakeDomain
	if err := xml.Unmarshal(config, &x); err != nil {
		return hypervisor.VM{}, fmt.Errorf("fake define: parse domain xml: %w", err)
	}
	if x.Name == "" || x.UUID == "" {
		return hypervisor.VM{}, fmt.Errorf("fake define: domain xml needs a name and a uuid")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	byName, byUUID := c.find(x.Name), c.find(x.UUID)
	if byName != nil && !strings.EqualFold(byName.spec.UUID, x.UUID) {
		return hypervisor.VM{}, fmt.Errorf("fake define %s: %w: a vm of that name has uuid %s", x.Name, hypervisor.ErrExists, byName.spec.UUID)
	}
	if byUUID != nil && byUUID.spec.Name != x.Name {
		return hypervisor.VM{}, fmt.Errorf("fake define %s: %w: uuid %s belongs to vm %s", x.Name, hypervisor.ErrExists, x.UUID, byUUID.spec.Name)
	}
	st := &vmState{spec: VMSpec{Name: x.Name, UUID: x.UUID, State: hypervisor.PowerOff}, config: slices.Clone(config)}
	for _, d := range x.Disks {
		if d.Device != "" && d.Device != "disk" {
			continue
		}
		st.spec.Disks = append(st.spec.Disks, DiskSpec{Target: d.Target.Dev})
		st.disks = append(st.disks, &disk{spec: DiskSpec{Target: d.Target.Dev}, path: d.Source.File})
	}
	if byName != nil {
		st.spec.State = byName.spec.State
		c.vms[slices.Index(c.vms, byName)] = st
	} else {
		c.vms = append(c.vms, st)
	}
	return st.vm(c.ImageDir), nil
}

// UndefineVM implements hypervisor.Connector.
func (c *Connector) UndefineVM(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.find(key)
	if st == nil {
		return fmt.Errorf("fake undefine: %w: %s", hypervisor.ErrVMNotFound, key)
	}
	if st.job != nil {
		return fmt.Errorf("fake undefine %s: %w", key, hypervisor.ErrBusy)
	}
	c.vms = slices.DeleteFunc(c.vms, func(v *vmState) bool { return v == st })
	return nil
}

// StartVM implements hypervisor.Connector.
func (c *Connector) StartVM(_ context.Context, key string) error {
	return c.setPower(key, hypervisor.PowerOn)
}

// StopVM implements hypervisor.Connector.
func (c *Connector) StopVM(_ context.Context, key string) error {
	return c.setPower(key, hypervisor.PowerOff)
}

func (c *Connector) setPower(key string, s hypervisor.PowerState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.find(key)
	if st == nil {
		return fmt.Errorf("fake power %s: %w: %s", s, hypervisor.ErrVMNotFound, key)
	}
	st.spec.State = s
	return nil
}

// Capabilities implements hypervisor.Connector: a libvirt-like
// hypervisor whose configurations are domain XML.
func (c *Connector) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{Kind: Kind, ConfigFormat: domxml.ConfigFormat,
		RestoreFormats: []string{domxml.ConfigFormat}, Backup: true,
		ChangeTracking: hypervisor.TrackCheckpoints, OfflineChangeTracking: true, Pause: true}
}

func (c *Connector) planner() domxml.Planner {
	return domxml.Planner{Kind: Kind, URI: c.URI(), PoolPath: func(_ context.Context, pool string) (string, error) {
		if p, ok := c.Pools[pool]; ok {
			return p, nil
		}
		return "", fmt.Errorf("fake: no storage pool %s: %w", pool, hypervisor.ErrUnsupported)
	}}
}

// PlanRestore implements hypervisor.Restorer with domxml (Pools are its
// storage pools).
func (c *Connector) PlanRestore(ctx context.Context, src *hypervisor.RestoreSource, req hypervisor.RestoreRequest) (*hypervisor.RestorePlan, error) {
	return c.planner().PlanRestore(ctx, src, req)
}

// PrepareRestore implements hypervisor.Restorer.
func (c *Connector) PrepareRestore(ctx context.Context, src *hypervisor.RestoreSource, p *hypervisor.RestorePlan) ([]byte, []string, error) {
	return c.planner().PrepareRestore(ctx, src, p)
}

// DiskExists implements hypervisor.Restorer: a file at path.
func (c *Connector) DiskExists(_ context.Context, path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// CreateDisk implements hypervisor.Restorer: a real image file written
// with diskwrite.
func (c *Connector) CreateDisk(ctx context.Context, d hypervisor.NewDisk) (hypervisor.DiskSink, error) {
	if err := os.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", d.Path, err)
	}
	return diskwrite.Create(ctx, diskwrite.Target{Path: d.Path, Format: d.Format, Size: d.Size},
		diskwrite.Options{Overwrite: d.Overwrite, ScratchDir: d.ScratchDir})
}

// DefinedConfig returns the XML a VM was defined with (nil when it was
// added with AddVM or does not exist).
func (c *Connector) DefinedConfig(key string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.find(key); st != nil {
		return slices.Clone(st.config)
	}
	return nil
}
