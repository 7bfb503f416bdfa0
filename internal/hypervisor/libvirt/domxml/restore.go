package domxml

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// ConfigFormat is the configuration format of points taken from libvirt:
// the domain XML (hypervisor.LegacyConfigFormat for points that did not
// record one).
const ConfigFormat = "libvirt-domain-xml"

// Planner implements the planning half of hypervisor.Restorer for a
// connector whose VMs are defined from libvirt domain XML.
type Planner struct {
	// Kind is the connector's kind, written into plans.
	Kind string
	// URI is the connection's URI (the plan's host).
	URI string
	// PoolPath resolves a directory storage pool name to its directory.
	PoolPath func(ctx context.Context, pool string) (string, error)
}

// PlanRestore implements hypervisor.Restorer: in place it keeps name,
// UUID, MAC addresses and disk paths; beside the original it plans a new
// VM named req.Name with new UUID and MACs and disks in req.Storage (an
// absolute directory or a directory pool; default: the directory of the
// original's first disk). Disks the point holds no data for are skipped.
func (pl Planner) PlanRestore(ctx context.Context, src *hypervisor.RestoreSource, req hypervisor.RestoreRequest) (*hypervisor.RestorePlan, error) {
	if err := pl.check(src); err != nil {
		return nil, err
	}
	if req.Folder != "" || req.ResourcePool != "" {
		return nil, fmt.Errorf("%w: folder/resource pool: libvirt has no vm folders or resource pools", ErrInvalidPlan)
	}
	sizes := map[string]int64{}
	for _, d := range src.Disks {
		sizes[d.Target] = d.Size
	}
	o := Options{PointID: src.Point, NewName: req.Name, NetworkMap: req.NetworkMap, Host: pl.URI, Kind: pl.Kind,
		Format: req.Format, InPlace: req.Name == "", DiskSizes: sizes}
	if !o.InPlace {
		dir, err := pl.storageDir(ctx, src, req.Storage)
		if err != nil {
			return nil, err
		}
		o.StorageDir = dir
	}
	p, err := DefaultPlan(src.Config, o)
	if err != nil {
		return nil, err
	}
	p.Start = req.Start
	for i := range p.Disks {
		if _, ok := sizes[p.Disks[i].Target]; !ok {
			p.Disks[i].Skip = true
		}
	}
	return p.ToRestorePlan(), nil
}

func (pl Planner) check(src *hypervisor.RestoreSource) error {
	caps := hypervisor.Capabilities{Kind: pl.Kind, RestoreFormats: []string{ConfigFormat}}
	return hypervisor.CheckRestorable(caps, pl.URI, src)
}

// storageDir resolves a storage request: a directory, a pool, or by
// default the directory of the original's first disk.
func (pl Planner) storageDir(ctx context.Context, src *hypervisor.RestoreSource, storage string) (string, error) {
	switch {
	case storage == "":
		for _, d := range src.Disks {
			if filepath.IsAbs(d.Source) {
				return filepath.Dir(d.Source), nil
			}
		}
		return "", fmt.Errorf("%w: storage: the original disks have no local path: give a directory or pool", ErrInvalidPlan)
	case filepath.IsAbs(storage):
		return filepath.Clean(storage), nil
	case strings.ContainsAny(storage, `/\`):
		return "", fmt.Errorf("%w: storage: %q is neither an absolute directory nor a pool name", ErrInvalidPlan, storage)
	case pl.PoolPath == nil:
		return "", fmt.Errorf("%w: storage: %q: this connection has no storage pools: give an absolute directory", ErrInvalidPlan, storage)
	}
	dir, err := pl.PoolPath(ctx, storage)
	if err != nil {
		return "", fmt.Errorf("storage pool %s: %w", storage, err)
	}
	return dir, nil
}

// PrepareRestore implements hypervisor.Restorer: it checks the plan
// against the saved XML, gives it a new UUID when it has none, and returns
// the rewritten XML with notes.
func (pl Planner) PrepareRestore(_ context.Context, src *hypervisor.RestoreSource, rp *hypervisor.RestorePlan) ([]byte, []string, error) {
	if err := pl.check(src); err != nil {
		return nil, nil, err
	}
	if rp.Point != "" && rp.Point != src.Point {
		return nil, nil, fmt.Errorf("%w: the plan is for point %s, not %s", ErrInvalidPlan, rp.Point, src.Point)
	}
	p, err := FromRestorePlan(rp, pl.Kind)
	if err != nil {
		return nil, nil, err
	}
	if rp.UUID == "" {
		rp.UUID = hypervisor.NewUUID()
		p.UUID = rp.UUID
	}
	return ApplyNotes(src.Config, p)
}

// ImageFormat is the image format an export of a libvirt disk defaults
// to: raw for raw disks, qcow2 otherwise.
func ImageFormat(diskFormat string) string {
	if diskFormat == FormatRaw {
		return FormatRaw
	}
	return FormatQCOW2
}

// ExportConfig renders the saved domain XML for disks exported as files:
// same name, UUID and MAC addresses, disks pointing at the files, disks not
// exported left out, no nvram path. `virsh define` on it gives the VM back.
func ExportConfig(src *hypervisor.RestoreSource, disks []hypervisor.ExportedDisk) (hypervisor.ExportedConfig, error) {
	var out hypervisor.ExportedConfig
	if len(disks) == 0 {
		return out, fmt.Errorf("export: no disk to point the domain xml at")
	}
	sizes := map[string]int64{}
	for _, d := range src.Disks {
		sizes[d.Target] = d.Size
	}
	dir := filepath.Dir(disks[0].Path)
	// Plan "beside" the original to get paths in dir, then keep the
	// identity: the result is the original VM with its disks moved.
	p, err := DefaultPlan(src.Config, Options{PointID: src.Point, NewName: src.VMName + "-export", StorageDir: dir, DiskSizes: sizes})
	if err != nil {
		return out, err
	}
	p.KeepMACs, p.NVRAM = true, ""
	for i := range p.Networks {
		p.Networks[i].MAC = ""
	}
	for i := range p.Disks {
		d := &p.Disks[i]
		d.Skip = true
		for _, e := range disks {
			if e.Target == d.Target {
				d.Path, d.Format, d.Skip = e.Path, e.Format, false
			}
		}
		if d.Skip {
			out.Notes = append(out.Notes, fmt.Sprintf("disk %s left out of %s.xml", d.Target, src.VMName))
		}
	}
	if in, err := DefaultPlan(src.Config, Options{PointID: src.Point, InPlace: true}); err == nil {
		p.Name, p.UUID = in.Name, in.UUID
	} else {
		// In-place planning fails for disks without a local path; the
		// identity is still the point's.
		p.Name, p.UUID = src.VMName, src.VMUUID
	}
	xml, notes, err := ApplyNotes(src.Config, p)
	if err != nil {
		return out, err
	}
	out.File, out.Data = src.VMName+".xml", xml
	out.Hint = "virsh define " + out.File
	out.Notes = append(out.Notes, notes...)
	return out, nil
}

// Format describes the libvirt domain XML format for the registry.
func Format() hypervisor.ConfigFormat {
	return hypervisor.ConfigFormat{Name: ConfigFormat, ImageFormat: ImageFormat,
		ImageFormats: []string{FormatQCOW2, FormatRaw}, ExportConfig: ExportConfig}
}
