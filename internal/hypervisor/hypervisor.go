// Package hypervisor defines the Connector interface through which the
// engine talks to a virtualization platform (libvirt/KVM, VMware vSphere),
// and the types it exchanges: VMs, disks, backup sessions, changed-extent
// maps, restore plans and disk sinks. Connectors are picked by the scheme
// of their connection URI through a registry (Register, Open); what a
// connection can do is explicit in its Capabilities.
//
// A connector knows nothing of repositories or recovery points. It offers
// each protected disk of a VM as a random-access reader plus an extent map
// saying which ranges hold data, which are known to read as zeros, and which
// are unchanged since a named checkpoint. The engine turns that into a
// recovery point. For restores a connector plans where a point's VM goes
// (RestorePlan, one file format for every hypervisor with a section of the
// connector's own), renders the configuration it defines, and writes disks
// where the target keeps them (DiskSink); the engine only orchestrates.
//
// Every implementation (and every fake) must pass the conformance suite in
// package hypervisor/hvtest.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors. Implementations wrap them with %w.
var (
	// ErrVMNotFound means no VM matches the given name or UUID.
	ErrVMNotFound = errors.New("vm not found")
	// ErrNoAgent means the guest agent is not installed or not answering.
	ErrNoAgent = errors.New("guest agent not available")
	// ErrCheckpointMissing means the checkpoint an incremental backup was
	// asked to start from no longer exists (or its bitmap is broken).
	ErrCheckpointMissing = errors.New("checkpoint missing or broken")
	// ErrBusy means another job (a backup, a migration) holds the VM.
	ErrBusy = errors.New("vm busy with another job")
	// ErrUnsupported means the operation is not possible for this VM or disk.
	ErrUnsupported = errors.New("not supported")
	// ErrExists means a VM or file that would be created already exists.
	ErrExists = errors.New("already exists")
)

// PowerState of a VM.
type PowerState string

// Power states.
const (
	PowerOn     PowerState = "on"
	PowerOff    PowerState = "off"
	PowerPaused PowerState = "paused"
)

// Disk is a virtual disk of a VM as the hypervisor describes it.
type Disk struct {
	Target string `json:"target"` // guest device name: vda, sdb, hdc
	Source string `json:"source"` // host path, volume, or network name
	Type   string `json:"type"`   // file, block, network, volume
	Format string `json:"format"` // qcow2, raw, …
	Device string `json:"device"` // disk, cdrom, floppy, lun
	// Size is the virtual size in bytes (0 when unknown).
	Size int64 `json:"size"`
	// Protectable says whether kura can back the disk up; when false,
	// Reason says why ("pass-through block LUN", "network disk (rbd)").
	Protectable bool   `json:"protectable"`
	Reason      string `json:"reason,omitempty"`
}

// VM is one virtual machine of a connection.
type VM struct {
	Name  string     `json:"name"`
	UUID  string     `json:"uuid"`
	State PowerState `json:"state"`
	Disks []Disk     `json:"disks"`
	// Addresses are IP addresses reported by the guest agent (or DHCP
	// leases); empty when unknown.
	Addresses []string `json:"addresses,omitempty"`
	// Persistent is false for transient domains.
	Persistent bool `json:"persistent"`
	// HasAgent is true when a guest agent channel is configured and connected.
	HasAgent bool `json:"has_agent"`
	// DNSName is the guest's host name as its agent reports it (VMware
	// Tools); empty when unknown. ipaddr: selectors match it.
	DNSName string `json:"dns_name,omitempty"`
	// Attributes are further selectable properties by name, each with one
	// or more values (vSphere: moref, folder, resource_pool, tag). A
	// selector "KEY:GLOB" matches a VM having a value of KEY that matches.
	Attributes map[string][]string `json:"attributes,omitempty"`
}

// Consistency is the level a recovery point reached.
type Consistency string

// Consistency levels, from strongest to weakest. Application: guest
// filesystems frozen through the agent (fsfreeze hooks ran). Pause: the VM
// was paused while the point-in-time was taken. Crash: as after power loss.
// Off: the VM was powered off (file consistent).
const (
	ConsistencyApplication Consistency = "application"
	ConsistencyPause       Consistency = "pause"
	ConsistencyCrash       Consistency = "crash"
	ConsistencyOff         Consistency = "off"
)

// ConsistencyMode is what the user asked for.
type ConsistencyMode string

// Consistency modes: auto freezes through the agent and falls back to crash;
// application fails without the agent; crash never freezes; pause pauses the
// VM while the checkpoint is taken.
const (
	ModeAuto        ConsistencyMode = "auto"
	ModeApplication ConsistencyMode = "application"
	ModeCrash       ConsistencyMode = "crash"
	ModePause       ConsistencyMode = "pause"
)

// ExtentKind classifies a range of a disk in a backup session.
type ExtentKind uint8

// Extent kinds.
const (
	// ExtentData must be read from the session's reader.
	ExtentData ExtentKind = iota
	// ExtentZero reads as zeros (a hole or a zeroed cluster); never read it.
	ExtentZero
	// ExtentUnchanged is unchanged since the session's base checkpoint: take
	// it from the previous recovery point without reading.
	ExtentUnchanged
	// ExtentUnchangedZero is unchanged since the base checkpoint and reads
	// as zeros (a hole the previous point already had). Never read.
	ExtentUnchangedZero
)

// Extent is a range of a disk. Extent maps are sorted, contiguous and cover
// the whole disk.
type Extent struct {
	Offset int64      `json:"offset"`
	Length int64      `json:"length"`
	Kind   ExtentKind `json:"kind"`
}

// BackupOptions tells BeginBackup what to do.
type BackupOptions struct {
	// Consistency mode requested.
	Consistency ConsistencyMode
	// BaseCheckpoint is the checkpoint of the previous recovery point. Empty
	// means full: every allocated extent is Data. When it is missing or
	// broken, BeginBackup returns an error wrapping ErrCheckpointMissing
	// and the engine retries with an empty base (a reported repair).
	BaseCheckpoint string
	// NewCheckpoint is the name to give the checkpoint this backup creates
	// (the engine derives it with CheckpointName from the owner and the
	// recovery point id).
	NewCheckpoint string
	// Owner is the owner tag (OwnerTag) of the repository the backup goes
	// to. When the session ends successfully the connector removes the
	// checkpoints the new one supersedes (Superseded): older ones of the
	// same owner, never those of another repository, which keeps its own
	// chain on the same VM.
	Owner string
	// Disks limits the session to these targets (empty = every protectable
	// disk).
	Disks []string
	// BaseChangeIDs are, for connectors tracking changes by change ids
	// (Capabilities.ChangeTracking == TrackChangeIDs), the change id of
	// each disk (by target) at the previous recovery point. A disk without
	// one is read in full; an id the hypervisor no longer knows makes
	// BeginBackup fail with ErrCheckpointMissing.
	BaseChangeIDs map[string]string
	// Preexisting says what to do with a backup snapshot of kura already on
	// the VM whose session the connector cannot show dead (one of a killed
	// process on this host is always reclaimed, one of a live session
	// always makes the VM busy): PreexistingFail (the default) or
	// PreexistingDelete. Connectors without backup snapshots ignore it.
	Preexisting PreexistingPolicy
	// ScratchDir is where the connector may put sockets and scratch files
	// when it has no place of its own (the libvirt connector uses a
	// directory QEMU can reach, under /var/lib/libvirt/qemu/kura).
	ScratchDir string
}

// PreexistingPolicy is what a backup does with a backup snapshot kura left
// on a VM earlier (seed 003's PREEXISTING_VCB_SNAPSHOT).
type PreexistingPolicy string

// Pre-existing snapshot policies.
const (
	// PreexistingFail fails the VM's backup, naming the snapshot and
	// `kura cleanup`.
	PreexistingFail PreexistingPolicy = "fail"
	// PreexistingDelete removes the old snapshot and goes on; failing to
	// remove it fails the backup.
	PreexistingDelete PreexistingPolicy = "delete"
)

// ParsePreexisting checks a policy name ("" is PreexistingFail).
func ParsePreexisting(s string) (PreexistingPolicy, error) {
	switch p := PreexistingPolicy(s); p {
	case "":
		return PreexistingFail, nil
	case PreexistingFail, PreexistingDelete:
		return p, nil
	}
	return "", fmt.Errorf("invalid pre-existing snapshot policy %q: use fail or delete", s)
}

// SessionDisk is one disk exposed by a backup session.
type SessionDisk struct {
	Disk
	// Reader reads the disk as it was at the session's point in time. It is
	// safe for concurrent ReadAt calls.
	Reader io.ReaderAt
	// Extents covers the whole disk. With a base checkpoint, ranges not dirty
	// since it are ExtentUnchanged.
	Extents []Extent
	// Incremental is true when Extents is relative to the base checkpoint.
	Incremental bool
	// ChangeID is the disk's change-tracking id at the session's point in
	// time, for connectors tracking changes by change ids (vSphere CBT):
	// the next session's BackupOptions.BaseChangeIDs. Empty otherwise.
	ChangeID string
}

// BackupSession is an open point-in-time view of a VM's disks.
type BackupSession interface {
	// Disks returns the exposed disks, in the VM's order.
	Disks() []SessionDisk
	// Config returns the VM configuration captured with the point in time
	// and its format name (Capabilities.ConfigFormat: "libvirt-domain-xml",
	// "vsphere-vm-json").
	Config() (data []byte, format string)
	// Consistency is the level reached.
	Consistency() Consistency
	// Checkpoint is the name of the checkpoint created by this session
	// (empty when the VM's disks do not support change tracking).
	Checkpoint() string
	// Notes are human-readable remarks (fallbacks, repairs) to record.
	Notes() []string
	// Close ends the session. With success=true the new checkpoint is kept
	// and older checkpoints of kura are removed; otherwise the new
	// checkpoint is removed so the previous one stays the base. Close must
	// be called even when ctx was cancelled; it uses its own ctx.
	Close(ctx context.Context, success bool) error
}

// Leftover is something a killed run left behind.
type Leftover struct {
	VM   string `json:"vm"`
	Kind string `json:"kind"` // backup-job, checkpoint, bitmap, socket, scratch-file, nbd-server, snapshot
	Name string `json:"name"`
	// Detail explains why it is considered a leftover.
	Detail string `json:"detail"`
	// Foreign marks a checkpoint (or bitmap) of another repository
	// (Owner names it): listed, never removed.
	Foreign bool   `json:"foreign,omitempty"`
	Owner   string `json:"owner,omitempty"`
}

// LeftoverQuery says whose leftovers Leftovers looks for.
type LeftoverQuery struct {
	// VMs are names or UUIDs; empty means every VM of the connection.
	VMs []string
	// Keep holds checkpoint names still referenced by recovery points;
	// they are never reported. Connectors keeping no checkpoints on the VM
	// (vSphere: change ids live in the disks) ignore it.
	Keep map[string]bool
	// Owner is the owner tag of the repository asking: checkpoints of
	// other owners are reported Foreign.
	Owner string
}

// Connector is the extension point for a hypervisor platform.
type Connector interface {
	// URI identifies the connection ("qemu:///system").
	URI() string
	// Capabilities says what the connection can do.
	Capabilities() Capabilities
	// Host is the hypervisor host name.
	Host(ctx context.Context) (string, error)
	// ListVMs returns every VM of the connection.
	ListVMs(ctx context.Context) ([]VM, error)
	// LookupVM finds a VM by name or UUID; ErrVMNotFound when none.
	LookupVM(ctx context.Context, nameOrUUID string) (VM, error)
	// BeginBackup opens a point-in-time backup session of a VM.
	BeginBackup(ctx context.Context, vm VM, opts BackupOptions) (BackupSession, error)
	// Leftovers lists what killed runs left behind on the VMs of q.
	// Artefacts of a session whose process is still alive are not
	// leftovers. BeginBackup reclaims the leftovers of dead processes on
	// the VM it backs up by itself (saying so in the session's notes).
	Leftovers(ctx context.Context, q LeftoverQuery) ([]Leftover, error)
	// RemoveLeftover removes one leftover; a Foreign one is refused.
	RemoveLeftover(ctx context.Context, l Leftover) error
	// Restorer is the restore side: plans, disks, define, power.
	Restorer
	// Close releases the connection.
	Close() error
}
