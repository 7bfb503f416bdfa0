package catalog

import (
	"encoding/json"
	"time"

	"github.com/kurabackup/kura/internal/phase"
)

// Point kinds.
const (
	KindFull        = "full"
	KindIncremental = "incremental"
)

// Job kinds.
const (
	JobBackup  = "backup"
	JobRestore = "restore"
	JobExport  = "export"
	JobVerify  = "verify"
	JobPrune   = "prune"
	JobGC      = "gc"
	JobCleanup = "cleanup"
	JobCopy    = "copy"
	JobInstant = "instant"
)

var jobKinds = map[string]bool{JobBackup: true, JobRestore: true, JobExport: true, JobVerify: true, JobPrune: true,
	JobGC: true, JobCleanup: true, JobCopy: true, JobInstant: true}

// Repository is a repository the catalog indexes.
type Repository struct {
	ID       string // the repository's own identifier (from its config)
	Location string // where it lives, e.g. a directory or URL
}

// VM is a virtual machine kura has seen on a hypervisor.
type VM struct {
	UUID       string
	Name       string
	Hypervisor string // connector kind, e.g. "libvirt"
	URI        string // connection URI of the hypervisor
	Host       string
	FirstSeen  time.Time
	LastSeen   time.Time
	Missing    bool // no longer present in the live inventory
}

// Point is a recovery point: one backup of one VM in one repository.
type Point struct {
	ID          string
	RepoID      string
	VMUUID      string
	VMName      string
	Kind        string // KindFull or KindIncremental
	Parent      string // ID of the point an incremental was based on
	Consistency string // e.g. "application", "filesystem", "crash"
	Checkpoint  string // hypervisor checkpoint left for the next incremental
	Started     time.Time
	Finished    time.Time
	BytesRead   int64
	BytesNew    int64
	BytesStored int64
	Tags        []string
	Notes       []string
	Disks       []PointDisk // in the order given when the point was added
}

// PointDisk is one disk of a recovery point.
type PointDisk struct {
	Target      string // device name in the VM, e.g. "vda"
	Source      string // image path or volume on the hypervisor
	Format      string // e.g. "qcow2", "raw"
	IndexID     string // identifier of the disk's chunk index in the repository
	Size        int64  // virtual size in bytes
	BytesRead   int64
	BytesNew    int64
	BytesStored int64
	Incremental bool // only changed blocks were read
}

// PointFilter selects points. Zero fields match everything.
type PointFilter struct {
	VM     string    // VM name or UUID
	RepoID string    // repository ID
	Since  time.Time // started at or after
	Until  time.Time // started at or before
}

// Job is one run of a long operation.
type Job struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`  // JobBackup, JobRestore, ...
	State    phase.Job `json:"state"` // phase.Running, phase.Completed, ...
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Host and PID identify the process running the job.
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Heartbeat is the last time the running process said it was alive.
	Heartbeat time.Time `json:"heartbeat"`
	// Error says why a job failed as a whole (an interruption, say).
	Error   string          `json:"error,omitempty"`
	Summary json.RawMessage `json:"summary"` // JSON given to FinishJob; "null" until then
	VMs     []JobVM         `json:"vms,omitempty"`
}

// JobVM is the outcome of one VM within a job. A record is identified by
// its job and the VM's UUID, or its name when the UUID is unknown (a VM
// selected by name that could not be found).
type JobVM struct {
	JobID    string   `json:"job_id"`
	VMName   string   `json:"vm_name"`
	VMUUID   string   `json:"vm_uuid"`
	State    phase.VM `json:"state"`
	Attempts int      `json:"attempts"`
	Error    string   `json:"error"`
	PointID  string   `json:"point_id"`
}

func (j JobVM) key() string {
	if j.VMUUID != "" {
		return j.VMUUID
	}
	return "name:" + j.VMName
}
