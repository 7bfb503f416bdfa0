package instant

import "errors"

// Sentinel errors.
var (
	// ErrUnsupported means the hypervisor connection cannot run instant VMs.
	ErrUnsupported = errors.New("this hypervisor connection cannot run instant vms")
	// ErrNotFound means no instant VM has that name.
	ErrNotFound = errors.New("no such instant vm (see kura instant list)")
	// ErrExists means the name is taken by a VM, an instant VM or a file.
	ErrExists = errors.New("already exists")
	// ErrRunning means the operation needs the VM shut down.
	ErrRunning = errors.New("the vm is running: shut it down first, or use --force")
	// ErrNotRunning means the operation needs the VM running.
	ErrNotRunning = errors.New("the vm is not running")
	// ErrServing means another process serves the instant VM already.
	ErrServing = errors.New("the instant vm is served by another process already")
	// ErrBadProbe means a probe specification cannot be parsed.
	ErrBadProbe = errors.New("invalid probe")
)
