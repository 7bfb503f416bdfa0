package vsphere

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/diskwrite"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/vmdk"
)

// Section is the vSphere section of a restore plan: where the VM goes in
// the inventory (seed 003's alternate catalog: datastore, folder path,
// resource pool, host).
type Section struct {
	// Datastore holds the VM's .vmx (new disks go where the plan's disk
	// paths say).
	Datastore string `yaml:"datastore" json:"datastore"`
	// Folder is the inventory path of the VM folder ("/DC/vm/restored").
	Folder string `yaml:"folder" json:"folder"`
	// ResourcePool is the inventory path (or name) of the resource pool.
	ResourcePool string `yaml:"resource_pool" json:"resource_pool"`
	// Host is an ESXi host to run on (empty: vSphere chooses in the pool).
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
}

// Network kinds of a plan's interfaces.
const (
	netNetwork = "network"     // a standard port group (by name)
	netDVPG    = "dvportgroup" // a distributed port group (by name)
	netOpaque  = "opaque"      // an NSX opaque network (kept as is)
)

// PlanRestore implements hypervisor.Restorer. In place the plan keeps the
// VM's name, instance UUID, MAC addresses, disk files and place; as a new
// VM (req.Name) it puts the .vmx and disks in "[DATASTORE] NAME/" on
// req.Storage (default: the original's datastore), in req.Folder and
// req.ResourcePool (default: the original's), networks mapped by
// req.NetworkMap, new UUIDs and MAC addresses.
func (c *Connector) PlanRestore(ctx context.Context, src *hypervisor.RestoreSource, req hypervisor.RestoreRequest) (*hypervisor.RestorePlan, error) {
	if err := hypervisor.CheckRestorable(c.Capabilities(), c.uri, src); err != nil {
		return nil, err
	}
	sc, ci, err := decodeConfig(src.Config)
	if err != nil {
		return nil, err
	}
	if req.Format != "" && req.Format != "vmdk" {
		return nil, hypervisor.PlanError("format", "vSphere disks are vmdk, not %q", req.Format)
	}
	p := &hypervisor.RestorePlan{Point: src.Point, Hypervisor: Kind, Host: c.uri, Start: req.Start,
		MemoryMiB: int(ci.Hardware.MemoryMB), VCPUs: int(ci.Hardware.NumCPU)}
	sec := Section{Datastore: sc.Placement.Datastore, Folder: sc.Placement.Folder, ResourcePool: sc.Placement.ResourcePool}
	inPlace := req.Name == ""
	if inPlace {
		p.Name, p.UUID, p.KeepMACs, sec.Host = ci.Name, ci.InstanceUuid, true, sc.Placement.Host
	} else {
		if req.Name == ci.Name {
			return nil, hypervisor.PlanError("name", "%q is the original VM's name", req.Name)
		}
		p.Name = req.Name
		if req.Storage != "" {
			sec.Datastore = req.Storage
		}
		if req.Folder != "" {
			sec.Folder = req.Folder
		}
		if req.ResourcePool != "" {
			sec.ResourcePool = req.ResourcePool
		}
	}
	n := 0
	for _, sd := range sc.Disks {
		pd := hypervisor.PlanDisk{Target: sd.Target, Source: sd.File, Format: "vmdk", Size: sd.Capacity}
		if _, ok := src.Disk(sd.Target); !ok {
			pd.Skip = true
		}
		switch {
		case inPlace:
			pd.Path = sd.File
		case n == 0:
			pd.Path = fmt.Sprintf("[%s] %s/%s.vmdk", sec.Datastore, p.Name, p.Name)
		default:
			pd.Path = fmt.Sprintf("[%s] %s/%s_%d.vmdk", sec.Datastore, p.Name, p.Name, n)
		}
		if !pd.Skip {
			n++
		}
		p.Disks = append(p.Disks, pd)
	}
	pgs, err := c.portgroupNames(ctx)
	if err != nil {
		return nil, err
	}
	for _, nic := range nics(ci.Hardware.Device) {
		kind, name := nicNetwork(nic, pgs)
		pn := hypervisor.PlanNet{Type: kind, From: name, To: name}
		if to, ok := req.NetworkMap[name]; ok && name != "" {
			pn.To = to
		}
		if inPlace {
			pn.MAC = nic.GetVirtualEthernetCard().MacAddress
		}
		p.Networks = append(p.Networks, pn)
	}
	for from := range req.NetworkMap {
		if !slices.ContainsFunc(p.Networks, func(n hypervisor.PlanNet) bool { return n.From == from }) {
			return nil, hypervisor.PlanError("network map", "no interface uses %q", from)
		}
	}
	p.Section = &sec
	return p, nil
}

func nics(devices []types.BaseVirtualDevice) []types.BaseVirtualEthernetCard {
	var out []types.BaseVirtualEthernetCard
	for _, d := range devices {
		if n, ok := d.(types.BaseVirtualEthernetCard); ok {
			out = append(out, n)
		}
	}
	return out
}

// nicNetwork names the network a NIC is on.
func nicNetwork(nic types.BaseVirtualEthernetCard, pgs map[string]string) (kind, name string) {
	switch b := nic.GetVirtualEthernetCard().Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		return netNetwork, b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		return netDVPG, pgs[b.Port.PortgroupKey]
	case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
		return netOpaque, b.OpaqueNetworkId
	}
	return "other", ""
}

// portgroupNames maps distributed port group keys to names.
func (c *Connector) portgroupNames(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	pgs, err := c.finder.NetworkList(ctx, "*")
	if err != nil {
		return out, nil // no networks at all
	}
	for _, n := range pgs {
		if pg, ok := n.(*object.DistributedVirtualPortgroup); ok {
			var m mo.DistributedVirtualPortgroup
			if err := pg.Properties(ctx, pg.Reference(), []string{"key", "name"}, &m); err == nil {
				out[m.Key] = m.Name
			}
		}
	}
	return out, nil
}

// PrepareRestore implements hypervisor.Restorer: it checks the plan
// against the point and returns the document DefineVM takes (the VM's
// config spec with its disks at the plan's paths, and its placement).
func (c *Connector) PrepareRestore(ctx context.Context, src *hypervisor.RestoreSource, rp *hypervisor.RestorePlan) ([]byte, []string, error) {
	if err := hypervisor.CheckRestorable(c.Capabilities(), c.uri, src); err != nil {
		return nil, nil, err
	}
	if rp.Point != "" && rp.Point != src.Point {
		return nil, nil, hypervisor.PlanError("point", "the plan is for point %s, not %s", rp.Point, src.Point)
	}
	if rp.Hypervisor != Kind {
		return nil, nil, hypervisor.PlanError("hypervisor", "the plan is for a %q target, this connection is %s", rp.Hypervisor, Kind)
	}
	if err := rp.Validate(); err != nil {
		return nil, nil, err
	}
	var sec Section
	if err := rp.DecodeSection(&sec); err != nil {
		return nil, nil, err
	}
	sc, ci, err := decodeConfig(src.Config)
	if err != nil {
		return nil, nil, err
	}
	if err := checkPlan(rp, sec, sc, ci); err != nil {
		return nil, nil, err
	}
	if rp.UUID == "" {
		rp.UUID = hypervisor.NewUUID()
	}
	inPlace := rp.Name == ci.Name && strings.EqualFold(rp.UUID, ci.InstanceUuid)
	if inPlace {
		if err := c.checkInPlace(ctx, rp.UUID); err != nil {
			return nil, nil, err
		}
	}
	spec, notes, err := c.buildSpec(ctx, rp, sec, sc, ci, inPlace)
	if err != nil {
		return nil, nil, err
	}
	doc := defineDoc{Version: 1, Name: rp.Name, InstanceUUID: rp.UUID, InPlace: inPlace,
		Placement: placement{Datacenter: c.dc.InventoryPath, Folder: sec.Folder, ResourcePool: sec.ResourcePool, Host: sec.Host, Datastore: sec.Datastore}}
	for _, d := range rp.Disks {
		if !d.Skip {
			doc.Disks = append(doc.Disks, d.Path)
		}
	}
	out, err := doc.encode(spec)
	return out, notes, err
}

func checkPlan(rp *hypervisor.RestorePlan, sec Section, sc *savedConfig, ci *types.VirtualMachineConfigInfo) error {
	if sec.Datastore == "" {
		return hypervisor.PlanError("vsphere.datastore", "empty")
	}
	paths := map[string]string{}
	for i, d := range rp.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if !slices.ContainsFunc(sc.Disks, func(s savedDisk) bool { return s.Target == d.Target }) {
			return hypervisor.PlanError(f+".target", "the point has no disk %s", d.Target)
		}
		if d.Skip {
			continue
		}
		if d.Format != "vmdk" {
			return hypervisor.PlanError(f+".format", "%q: vSphere disks are vmdk", d.Format)
		}
		p, err := parseDSPath(d.Path)
		if err != nil || path.Ext(p.rel) != ".vmdk" || strings.HasSuffix(p.rel, "-flat.vmdk") {
			return hypervisor.PlanError(f+".path", "%q is not a datastore path of a .vmdk descriptor", d.Path)
		}
		if other, ok := paths[p.String()]; ok {
			return hypervisor.PlanError(f+".path", "%q is also the path of disk %s", d.Path, other)
		}
		paths[p.String()] = d.Target
	}
	if n := len(nics(ci.Hardware.Device)); len(rp.Networks) != n {
		return hypervisor.PlanError("networks", "%d entries for the %d network adapters of the point", len(rp.Networks), n)
	}
	for i, n := range rp.Networks {
		if n.Type != netOpaque && n.To == "" {
			return hypervisor.PlanError(fmt.Sprintf("networks[%d].to", i), "empty")
		}
	}
	return nil
}

// checkInPlace refuses to restore over a VM that has snapshots: its delta
// disks depend on the disk files the restore replaces.
func (c *Connector) checkInPlace(ctx context.Context, uuid string) error {
	ms, err := c.vms(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if strings.EqualFold(m.Config.InstanceUuid, uuid) && m.Snapshot != nil {
			if n := snapshotCount(m.Snapshot.RootSnapshotList); n > 0 {
				return fmt.Errorf("vsphere %s: the vm has %d snapshot(s) whose delta disks depend on the files a restore in place replaces: %w: remove them first, or restore beside it with --name",
					m.Name, n, hypervisor.ErrBusy)
			}
		}
	}
	return nil
}

// DiskExists implements hypervisor.Restorer: the .vmdk descriptor at a
// datastore path.
func (c *Connector) DiskExists(ctx context.Context, p string) (bool, error) {
	dp, err := parseDSPath(p)
	if err != nil {
		return false, err
	}
	return c.fileExists(ctx, dp)
}

// CreateDisk implements hypervisor.Restorer: the disk is written thin on
// the kura host (in d.ScratchDir), then at Commit uploaded to the
// datastore as a VMFS flat disk: the "-flat.vmdk" extent, then the
// descriptor (so the disk is visible only complete).
func (c *Connector) CreateDisk(ctx context.Context, d hypervisor.NewDisk) (hypervisor.DiskSink, error) {
	p, err := parseDSPath(d.Path)
	if err != nil {
		return nil, err
	}
	if d.Format != "vmdk" {
		return nil, fmt.Errorf("vsphere disk %s: format %q: vSphere disks are vmdk", d.Path, d.Format)
	}
	if !d.Overwrite {
		if ok, err := c.fileExists(ctx, p); err != nil {
			return nil, err
		} else if ok {
			return nil, fmt.Errorf("vsphere disk %s: %w", d.Path, hypervisor.ErrExists)
		}
	}
	if _, err := c.datastore(ctx, p.ds); err != nil {
		return nil, err
	}
	dir, err := diskwrite.StagingDir(d.ScratchDir, "vsphere-upload-")
	if err != nil {
		return nil, err
	}
	local := filepath.Join(dir, "disk.raw")
	w, err := diskwrite.Create(ctx, diskwrite.Target{Path: local, Format: "raw", Size: d.Size},
		diskwrite.Options{Overwrite: true, Logger: c.log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &uploadSink{Writer: w, c: c, dir: dir, local: local, p: p, size: d.Size}, nil
}

// uploadSink stages a disk locally and uploads it at Commit.
type uploadSink struct {
	*diskwrite.Writer
	c        *Connector
	dir      string
	local    string
	p        dsPath
	size     int64
	uploaded bool
}

func (u *uploadSink) flat() dsPath {
	return u.p.sibling(strings.TrimSuffix(path.Base(u.p.rel), ".vmdk") + "-flat.vmdk")
}

// Commit uploads the extent, then the descriptor.
func (u *uploadSink) Commit(ctx context.Context) error {
	defer os.RemoveAll(u.dir)
	if err := u.Writer.Commit(ctx); err != nil {
		return err
	}
	f, err := os.Open(u.local)
	if err != nil {
		return err
	}
	defer f.Close()
	flat := u.flat()
	if err := u.c.upload(ctx, flat, f, u.size); err != nil {
		_ = u.c.removeFile(context.WithoutCancel(ctx), flat)
		return err
	}
	sectors := (u.size + vmdk.SectorSize - 1) / vmdk.SectorSize
	desc := vmdk.NewDescriptor("vmfs", sectors*vmdk.SectorSize, "lsilogic",
		vmdk.Extent{Access: "RW", Sectors: sectors, Type: vmdk.ExtentVMFS, File: path.Base(flat.rel)}).Encode()
	if err := u.c.upload(ctx, u.p, strings.NewReader(string(desc)), int64(len(desc))); err != nil {
		_ = u.c.removeFile(context.WithoutCancel(ctx), flat)
		return err
	}
	u.uploaded = true
	return nil
}

// Abort removes the staged disk, or the uploaded files after Commit.
func (u *uploadSink) Abort(ctx context.Context) error {
	defer os.RemoveAll(u.dir)
	if !u.uploaded {
		return u.Writer.Abort(ctx)
	}
	u.uploaded = false
	err := u.c.removeFile(ctx, u.p)
	if ferr := u.c.removeFile(ctx, u.flat()); err == nil {
		err = ferr
	}
	return err
}
