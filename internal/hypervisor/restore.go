package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ErrIncompatible means a recovery point's configuration cannot be defined
// on the target hypervisor: it comes from another kind of hypervisor and no
// conversion exists. Exporting the point's disks as files always works.
var ErrIncompatible = errors.New("configuration not restorable on this hypervisor")

// LegacyConfigFormat is the configuration format of points that did not
// record one (kura wrote only libvirt points before).
const LegacyConfigFormat = "libvirt-domain-xml"

// RestoreSource is what a recovery point offers a restore: the VM's
// identity, its saved configuration and its disks.
type RestoreSource struct {
	// Point is the recovery point's id.
	Point string
	// VMName and VMUUID identify the VM the point was taken of.
	VMName, VMUUID string
	// Hypervisor is the kind of connector the point was taken through
	// (Capabilities.Kind); empty for points of kura versions that did not
	// record it (libvirt).
	Hypervisor string
	// Config is the saved configuration, in ConfigFormat.
	Config       []byte
	ConfigFormat string
	// Disks are the disks the point holds data for.
	Disks []SourceDisk
}

// SourceDisk is one disk a recovery point holds.
type SourceDisk struct {
	Target string
	// Source is where the disk was (host path, "[datastore] path").
	Source string
	Format string
	Size   int64
}

// Disk returns the point's disk of that target.
func (s *RestoreSource) Disk(target string) (SourceDisk, bool) {
	i := slices.IndexFunc(s.Disks, func(d SourceDisk) bool { return d.Target == target })
	if i < 0 {
		return SourceDisk{}, false
	}
	return s.Disks[i], true
}

// RestoreRequest is what the user asked of a restore; a connector turns it
// into a RestorePlan.
type RestoreRequest struct {
	// Name of the restored VM; empty restores in place (the original name,
	// identity and disk locations).
	Name string
	// Storage is where new disks go, in the target's terms: an absolute
	// directory or a directory storage pool (libvirt), a datastore
	// (vSphere). Empty: beside the original's disks.
	Storage string
	// Folder and ResourcePool place a new VM in the inventory (vSphere);
	// connectors without such notions reject them.
	Folder, ResourcePool string
	// NetworkMap maps networks of the saved configuration to new ones.
	NetworkMap map[string]string
	// Format of the restored images (connector-specific; empty = the
	// connector's default for each disk).
	Format string
	// Start the VM once restored.
	Start bool
}

// NewDisk describes a disk image a restore writes.
type NewDisk struct {
	// Path and Format come from the plan.
	Path, Format string
	// Size is the virtual size in bytes.
	Size int64
	// Overwrite replaces an existing image at Path when committed (the
	// conflict policy decided so); otherwise an existing image is an
	// ErrExists.
	Overwrite bool
	// ScratchDir is local space for sockets or staged images.
	ScratchDir string
}

// DiskSink receives the bytes of one restored disk. The image starts
// reading as zeros: ranges not written stay zero (and unallocated where the
// format allows). WriteAt may be called concurrently, each range at most
// once. Nothing is visible at the final path before Commit.
type DiskSink interface {
	WriteAt(ctx context.Context, p []byte, off int64) error
	// DataBytes is the number of non-zero bytes written.
	DataBytes() int64
	// Commit makes the image visible at its path (renamed, or uploaded to
	// the target's storage).
	Commit(ctx context.Context) error
	// Abort removes everything the sink wrote. After Commit it undoes what
	// can be undone (an upload is deleted); a local file that replaced
	// another stays.
	Abort(ctx context.Context) error
}

// Restorer is the restore side of a connector: it plans where a point's VM
// goes, renders the configuration to define, writes disks where the target
// keeps them, and defines, starts, stops and undefines VMs. The engine
// orchestrates (conflict policy, streaming disks, commit order) and knows
// nothing of configuration formats or storage.
type Restorer interface {
	// PlanRestore derives a plan from a point and the request: in place
	// (req.Name empty: original identity and disk locations) or as a new VM
	// beside the original. It fails with ErrIncompatible when the point's
	// configuration format is not one of Capabilities().RestoreFormats.
	PlanRestore(ctx context.Context, src *RestoreSource, req RestoreRequest) (*RestorePlan, error)
	// PrepareRestore checks a plan (derived or edited) against the point
	// and returns the configuration DefineVM takes, with notes on what was
	// dropped or changed for the target. Invalid plans wrap ErrInvalidPlan.
	PrepareRestore(ctx context.Context, src *RestoreSource, plan *RestorePlan) (config []byte, notes []string, err error)
	// DiskExists reports whether an image exists at a plan path.
	DiskExists(ctx context.Context, path string) (bool, error)
	// CreateDisk starts writing a new image at a plan path.
	CreateDisk(ctx context.Context, d NewDisk) (DiskSink, error)

	// DefineVM defines (creates or replaces) a persistent VM from a
	// configuration PrepareRestore rendered (or one in a RestoreFormats
	// format) and returns it. It fails with ErrExists when another VM
	// already holds the name or the UUID. A VM of the same name and UUID
	// is replaced.
	DefineVM(ctx context.Context, config []byte) (VM, error)
	// UndefineVM removes a VM's definition: a running VM is stopped first
	// (forcefully), its checkpoint and snapshot metadata are removed, its
	// disk files are kept. ErrVMNotFound when none matches.
	UndefineVM(ctx context.Context, nameOrUUID string) error
	// StartVM boots a defined VM; nothing happens when it already runs.
	StartVM(ctx context.Context, nameOrUUID string) error
	// StopVM powers a VM off at once (like pulling the plug); nothing
	// happens when it is already off.
	StopVM(ctx context.Context, nameOrUUID string) error
}

// CheckRestorable returns an ErrIncompatible error when caps cannot define
// a VM from src's configuration format, naming both sides and the way out.
func CheckRestorable(caps Capabilities, uri string, src *RestoreSource) error {
	format := src.ConfigFormat
	if len(src.Config) == 0 {
		return fmt.Errorf("point %s: %w: it holds no configuration: export its disks instead (kura export %s --out DIR)",
			src.Point, ErrIncompatible, src.Point)
	}
	if slices.Contains(caps.RestoreFormats, format) {
		return nil
	}
	from := src.Hypervisor
	if from == "" {
		from = "another hypervisor"
	}
	return fmt.Errorf("point %s of vm %s was taken from %s (configuration format %q); the target %s is a %s connection, which has no conversion from it: %w; export its disks as files instead (kura export %s --out DIR)",
		src.Point, src.VMName, from, format, uri, caps.Kind, ErrIncompatible, src.Point)
}
