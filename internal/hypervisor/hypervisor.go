// Package hypervisor defines the Connector interface through which the
// engine talks to a virtualization platform (libvirt/KVM first), and the
// types it exchanges: VMs, disks, backup sessions and changed-extent maps.
//
// A connector knows nothing of repositories or recovery points. It offers
// each protected disk of a VM as a random-access reader plus an extent map
// saying which ranges hold data, which are known to read as zeros, and which
// are unchanged since a named checkpoint. The engine turns that into a
// recovery point.
//
// Every implementation (and every fake) must pass the conformance suite in
// package hypervisor/hvtest.
package hypervisor

import (
	"context"
	"errors"
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
	// ScratchDir is where the connector may put sockets and scratch files
	// when it has no place of its own (the libvirt connector uses a
	// directory QEMU can reach, under /var/lib/libvirt/qemu/kura).
	ScratchDir string
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
}

// BackupSession is an open point-in-time view of a VM's disks.
type BackupSession interface {
	// Disks returns the exposed disks, in the VM's order.
	Disks() []SessionDisk
	// Config returns the VM configuration captured with the point in time
	// (libvirt domain XML), and its format name ("libvirt-domain-xml").
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
	Kind string `json:"kind"` // backup-job, checkpoint, bitmap, socket, scratch-file, nbd-server
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
	// they are never reported.
	Keep map[string]bool
	// Owner is the owner tag of the repository asking: checkpoints of
	// other owners are reported Foreign.
	Owner string
}

// Connector is the extension point for a hypervisor platform.
type Connector interface {
	// URI identifies the connection ("qemu:///system").
	URI() string
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

	// Restore targets.

	// DefineVM defines (creates or replaces) a persistent VM from its
	// configuration (libvirt domain XML) and returns it. It fails with
	// ErrExists when another VM already holds the name or the UUID.
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
	// StoragePoolPath returns the directory of a storage pool (a "dir"
	// pool); ErrUnsupported for pools of other types.
	StoragePoolPath(ctx context.Context, pool string) (string, error)
	// Close releases the connection.
	Close() error
}
