package hypervisor

import (
	"context"
	"errors"
)

// Optional capabilities for instant recovery and boot verification. A
// connector implements them when its platform can run a VM whose disks
// are local copy-on-write overlays on top of read-only NBD exports served
// by kura (InstantHost), run commands in guests through an agent
// (GuestAgent) and capture a VM's console (Console). The conformance suite
// for them is hvtest.RunInstant.

// ErrNotInstant means a VM is not one that DefineInstant made.
var ErrNotInstant = errors.New("not an instant vm")

// Instant VM roles, recorded in the definition (InstantTag.Role).
const (
	// RoleInstant is a VM an administrator recovers instantly; it lives
	// until migrated to local disks or stopped.
	RoleInstant = "instant"
	// RoleVerify is a throw-away VM of a boot verification; its owner
	// process removes it, and kura cleanup does when that process died.
	RoleVerify = "verify"
)

// InstantDisk is one disk of an instant VM: a local writable overlay
// (qcow2) whose backing is a read-only NBD export on a unix socket.
type InstantDisk struct {
	Target  string `json:"target"`
	Overlay string `json:"overlay"`
	Size    int64  `json:"size"`
	Socket  string `json:"socket"`
	Export  string `json:"export"`
}

// InstantTag identifies an instant VM; it is stored in the VM definition.
type InstantTag struct {
	Role  string `json:"role"`
	Point string `json:"point"`
	// Source is the UUID of the VM the point was taken of: kura cleanup
	// of that VM finds what a killed verification of it left.
	Source string `json:"source,omitempty"`
	// Dir is the directory InstantDir made for the VM's sockets.
	Dir string `json:"dir"`
	// Owner is the PID of the kura process that removes a RoleVerify VM
	// (on Host); 0 for RoleInstant.
	Owner int    `json:"owner,omitempty"`
	Host  string `json:"host,omitempty"`
}

// InstantSpec describes the VM DefineInstant creates from a saved
// configuration.
type InstantSpec struct {
	// Config is the saved configuration (libvirt domain XML) of the point.
	Config []byte
	// Name of the VM; UUID empty means a new random one. New MAC
	// addresses are always chosen.
	Name, UUID string
	// Disks are the disks the VM gets; disks of Config not listed are
	// left out.
	Disks []InstantDisk
	// NetworkMap maps networks or bridges of Config to others.
	NetworkMap map[string]string
	// IsolatedNetwork, when set, connects every network interface to this
	// network instead (made with CreateIsolatedNetwork).
	IsolatedNetwork string
	// Console adds a display when Config has none, for Screenshot.
	Console bool
	// Transient VMs run at once and vanish once stopped; others are
	// defined (persistent) and started with StartVM.
	Transient bool
	Tag       InstantTag
}

// InstantVM is a VM made by DefineInstant.
type InstantVM struct {
	VM
	Tag InstantTag `json:"tag"`
}

// DiskCopy is one disk of a running VM to copy to a new local image.
type DiskCopy struct {
	Target string `json:"target"`
	Dest   string `json:"dest"`
	Format string `json:"format"` // qcow2 or raw
}

// CopyOptions tune CopyDisks.
type CopyOptions struct {
	// Bandwidth limits each copy, in bytes per second (0: no limit).
	Bandwidth int64
	// Progress, when set, is called with each disk's copied and total
	// bytes as the copy advances.
	Progress func(target string, done, total int64)
}

// InstantHost runs VMs from NBD exports.
type InstantHost interface {
	// InstantDir creates (or reuses) a private directory named name
	// (which starts with "kura-") where the hypervisor can reach unix
	// sockets and images kura creates, records tag and the calling
	// process in it (for Leftovers), and returns its path.
	InstantDir(ctx context.Context, name string, tag InstantTag) (string, error)
	// CreateOverlay creates d.Overlay: an empty qcow2 image of d.Size
	// bytes whose backing is export d.Export on d.Socket.
	CreateOverlay(ctx context.Context, d InstantDisk) error
	// DefineInstant defines the VM (a transient one also starts). Reads
	// the NBD server cannot answer pause the VM instead of failing in
	// the guest; ResumeIOPaused resumes it once the server is back.
	// ErrExists when the name or UUID is taken.
	DefineInstant(ctx context.Context, spec InstantSpec) (VM, error)
	// InstantVMs lists the VMs made by DefineInstant (not finished).
	InstantVMs(ctx context.Context) ([]InstantVM, error)
	// ResumeIOPaused resumes a VM paused because a disk could not be
	// read, and reports whether it was paused so.
	ResumeIOPaused(ctx context.Context, nameOrUUID string) (bool, error)
	// CopyDisks copies disks of a running VM (overlay and backing, so
	// every guest write too) to new local images while the VM runs, and
	// switches the VM to them once every copy is in sync. If the copy
	// fails or ctx ends first, the VM stays on its disks, nothing the
	// guest wrote is lost and the new images are removed. A copy job a
	// killed run left on a disk is cancelled first.
	CopyDisks(ctx context.Context, nameOrUUID string, disks []DiskCopy, opts CopyOptions) error
	// FinishInstant makes an instant VM whose disks were all copied an
	// ordinary VM: the tag goes and the saved configuration's disk error
	// policies come back (for its next boot).
	FinishInstant(ctx context.Context, nameOrUUID string) error
	// CreateIsolatedNetwork creates a transient network named name with
	// no route anywhere and no address service.
	CreateIsolatedNetwork(ctx context.Context, name string) error
	// RemoveNetwork removes a network CreateIsolatedNetwork made (no
	// error when it is gone).
	RemoveNetwork(ctx context.Context, name string) error
	// StoragePoolPath returns the local directory of a storage pool of
	// the host, where instant disks may be put or migrated to.
	StoragePoolPath(ctx context.Context, pool string) (string, error)
}

// ExecResult is the outcome of a command run in a guest.
type ExecResult struct {
	Exit   int    `json:"exit"`
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
}

// GuestAgent talks to a running guest through its agent. Errors wrap
// ErrNoAgent when the agent does not answer.
type GuestAgent interface {
	// GuestPing succeeds when the agent answers.
	GuestPing(ctx context.Context, nameOrUUID string) error
	// GuestExec runs path with args in the guest and waits for it to end.
	GuestExec(ctx context.Context, nameOrUUID, path string, args ...string) (ExecResult, error)
	// GuestReadFile returns the contents of path in the guest, failing
	// beyond limit bytes.
	GuestReadFile(ctx context.Context, nameOrUUID, path string, limit int64) ([]byte, error)
}

// Console captures a running VM's display.
type Console interface {
	// Screenshot returns the VM's screen as a PNG image.
	Screenshot(ctx context.Context, nameOrUUID string) ([]byte, error)
}
