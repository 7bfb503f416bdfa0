package catalog

import (
	"context"
	"time"

	"github.com/kurabackup/kura/internal/phase"
)

// Catalog is what kura keeps about its repositories, VMs, recovery points
// and jobs. SQLite (this package) is the embedded implementation; a
// PostgreSQL one serves several servers. Every implementation must pass
// the conformance suite in package catalog/catalogtest.
//
// Methods wrap ErrNotFound, ErrAmbiguous and ErrInvalid as documented on
// SQLite's methods, which define the semantics.
type Catalog interface {
	// Repositories.
	UpsertRepository(ctx context.Context, r Repository) error
	Repositories(ctx context.Context) ([]Repository, error)

	// VMs.
	UpsertVM(ctx context.Context, v VM) error
	VMs(ctx context.Context) ([]VM, error)
	MarkMissing(ctx context.Context, scope Scope, liveUUIDs []string) ([]string, error)

	// Recovery points.
	AddPoint(ctx context.Context, p Point) error
	DeletePoint(ctx context.Context, repoID, id string) error
	AddCopy(ctx context.Context, repoID, id string) error
	Points(ctx context.Context, f PointFilter) ([]Point, error)
	Point(ctx context.Context, idOrPrefix string) (Point, error)
	LatestPoint(ctx context.Context, repoID, vmUUID string) (Point, error)
	Rebuild(ctx context.Context, repoID string, points []Point, vms []VM) error
	// VMStatuses summarises every VM's points (newest, newest good,
	// count, damaged) in one query: the protection status of an estate.
	VMStatuses(ctx context.Context, repoID string) ([]VMStatus, error)

	// Verification state.
	MarkDamaged(ctx context.Context, repoID string, damage []Damage) error
	ClearDamage(ctx context.Context, repoID string, digests []string) error
	Damaged(ctx context.Context, repoID string) ([]Damage, error)
	MarkChunksVerified(ctx context.Context, repoID string, digests []string, at time.Time) error
	ChunksVerifiedSince(ctx context.Context, repoID string, since time.Time, fn func(digest string) error) error
	MarkPointsVerified(ctx context.Context, ids []string, at time.Time) error

	// Jobs run in this process (CLI) start Running.
	StartJob(ctx context.Context, kind string) (Job, error)
	Heartbeat(ctx context.Context, id string) error
	FinishJob(ctx context.Context, id string, state phase.Job, summary any) error
	RecordJobVM(ctx context.Context, v JobVM) error
	Jobs(ctx context.Context, limit int) ([]Job, error)
	FindJobs(ctx context.Context, f JobFilter) ([]Job, error)
	Job(ctx context.Context, id string) (Job, error)
	MarkInterrupted(ctx context.Context, alive func(pid int) bool) ([]Job, error)

	// Jobs queued by the server start New and are claimed to run.
	EnqueueJob(ctx context.Context, spec JobSpec) (Job, error)
	ClaimJob(ctx context.Context, id string) (Job, error)
	RequestCancel(ctx context.Context, id string) error
	AppendJobLog(ctx context.Context, id string, lines []LogLine) error
	JobLog(ctx context.Context, id string, afterSeq int64, limit int) ([]LogLine, error)

	// Schedules.
	ScheduleRuns(ctx context.Context) (map[string]ScheduleRun, error)
	RecordScheduleRun(ctx context.Context, run ScheduleRun) error

	// Boot checks (kura verify --boot); kept across rebuilds.
	AddBootCheck(ctx context.Context, b BootCheck) (int64, error)
	BootChecks(ctx context.Context, pointID string) ([]BootCheck, error)
	LatestVerifiedBoots(ctx context.Context) (map[string]BootCheck, error)

	// Audit log.
	AppendAudit(ctx context.Context, e AuditEntry) error
	Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)

	// Snapshot writes a consistent copy of the catalog's records to a new
	// file at path, in the embedded (SQLite) format whatever the
	// implementation, so that OpenWith reads it back: the server stores it
	// in a repository to protect itself.
	Snapshot(ctx context.Context, path string) error

	Close() error
}

var _ Catalog = (*SQLite)(nil)
