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
	// JobBootVerify boots points and checks them (kura verify --boot).
	JobBootVerify = "boot-verify"
)

var jobKinds = map[string]bool{JobBackup: true, JobRestore: true, JobExport: true, JobVerify: true, JobPrune: true,
	JobGC: true, JobCleanup: true, JobCopy: true, JobInstant: true, JobBootVerify: true}

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
	// Damaged is true while a verify problem (a missing or corrupt object)
	// affects the point; Verified is when a verify last found it sound.
	// Both are the catalog's own state: AddPoint does not set them.
	Damaged  bool
	Verified time.Time
	// Copies are the other repositories holding the point (kura copy
	// keeps point ids), sorted; catalog state, ignored by AddPoint.
	Copies []string
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

// VMStatus summarises the points of one VM.
type VMStatus struct {
	UUID    string `json:"uuid"`
	Name    string `json:"name"`
	Missing bool   `json:"missing"`
	Points  int    `json:"points"`
	Damaged int    `json:"damaged"`
	// Newest is the newest point; NewestGood the newest not damaged one.
	NewestID       string    `json:"newest_id,omitempty"`
	Newest         time.Time `json:"newest"`
	NewestGoodID   string    `json:"newest_good_id,omitempty"`
	NewestGood     time.Time `json:"newest_good"`
	BytesStored    int64     `json:"bytes_stored"`
	LastBytesNew   int64     `json:"last_bytes_new"`
	NewestVerified time.Time `json:"newest_verified"`
}

// Damage is a verify problem: a missing or corrupt object of a repository
// and the points it affects.
type Damage struct {
	Object string    `json:"object"` // e.g. "chunks/ab/ab…"
	Kind   string    `json:"kind"`   // "missing" or "corrupt"
	Detail string    `json:"detail"`
	Found  time.Time `json:"found"`
	Points []string  `json:"points"`
}

// JobSpec describes a job to queue.
type JobSpec struct {
	Kind    string          `json:"kind"`
	Group   string          `json:"group,omitempty"`
	Trigger string          `json:"trigger,omitempty"` // "schedule:<id>", "api:<user>", "catch-up:<id>"
	Params  json.RawMessage `json:"params,omitempty"`
}

// JobFilter selects jobs. Zero fields match everything; Limit <= 0 means
// all.
type JobFilter struct {
	Kind  string
	State phase.Job
	Group string
	Since time.Time
	Limit int
}

// LogLine is one line of a job's log.
type LogLine struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Level   string          `json:"level"`
	Message string          `json:"message"`
	Attrs   json.RawMessage `json:"attrs,omitempty"`
}

// ScheduleRun is when a schedule last fired.
type ScheduleRun struct {
	ID   string    `json:"id"`
	Last time.Time `json:"last"`
	Job  string    `json:"job,omitempty"`
}

// AuditEntry records one change or restore: who did what to what.
type AuditEntry struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target,omitempty"`
	Outcome string          `json:"outcome"` // "ok", "denied", "failed"
	Remote  string          `json:"remote,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// AuditFilter selects audit entries, newest first. Limit <= 0 means all.
type AuditFilter struct {
	Since  time.Time
	Actor  string
	Action string
	Limit  int
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
	// Queued jobs (EnqueueJob): when, for which group, why, with what.
	Queued          time.Time       `json:"queued"`
	Group           string          `json:"group,omitempty"`
	Trigger         string          `json:"trigger,omitempty"`
	Params          json.RawMessage `json:"params,omitempty"`
	CancelRequested bool            `json:"cancel_requested,omitempty"`
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
