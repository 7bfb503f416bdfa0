package catalog

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to version i+1. Never edit a released migration: append a new
// one.
var migrations = []string{
	// 1: initial schema.
	`
CREATE TABLE repositories (
	id       TEXT PRIMARY KEY,
	location TEXT NOT NULL DEFAULT ''
);

CREATE TABLE vms (
	uuid       TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	hypervisor TEXT NOT NULL DEFAULT '',
	uri        TEXT NOT NULL DEFAULT '',
	host       TEXT NOT NULL DEFAULT '',
	first_seen INTEGER,
	last_seen  INTEGER,
	missing    INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1))
);
CREATE INDEX vms_name ON vms(name);

CREATE TABLE points (
	id           TEXT PRIMARY KEY,
	repo_id      TEXT NOT NULL REFERENCES repositories(id),
	vm_uuid      TEXT NOT NULL,
	vm_name      TEXT NOT NULL,
	kind         TEXT NOT NULL CHECK (kind IN ('full', 'incremental')),
	parent       TEXT NOT NULL DEFAULT '',
	consistency  TEXT NOT NULL DEFAULT '',
	checkpoint   TEXT NOT NULL DEFAULT '',
	started      INTEGER,
	finished     INTEGER,
	bytes_read   INTEGER NOT NULL DEFAULT 0,
	bytes_new    INTEGER NOT NULL DEFAULT 0,
	bytes_stored INTEGER NOT NULL DEFAULT 0,
	tags         TEXT NOT NULL DEFAULT '[]',
	notes        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX points_repo_vm_started ON points(repo_id, vm_uuid, started);
CREATE INDEX points_vm_name ON points(vm_name);
CREATE INDEX points_vm_uuid ON points(vm_uuid);
CREATE INDEX points_started ON points(started);

CREATE TABLE point_disks (
	point_id     TEXT NOT NULL REFERENCES points(id) ON DELETE CASCADE,
	seq          INTEGER NOT NULL,
	target       TEXT NOT NULL,
	source       TEXT NOT NULL DEFAULT '',
	format       TEXT NOT NULL DEFAULT '',
	size         INTEGER NOT NULL DEFAULT 0,
	index_id     TEXT NOT NULL DEFAULT '',
	bytes_read   INTEGER NOT NULL DEFAULT 0,
	bytes_new    INTEGER NOT NULL DEFAULT 0,
	bytes_stored INTEGER NOT NULL DEFAULT 0,
	incremental  INTEGER NOT NULL DEFAULT 0 CHECK (incremental IN (0, 1)),
	PRIMARY KEY (point_id, target)
);

CREATE TABLE jobs (
	id       TEXT PRIMARY KEY,
	kind     TEXT NOT NULL,
	started  INTEGER,
	finished INTEGER,
	state    TEXT NOT NULL,
	summary  TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX jobs_started ON jobs(started);

CREATE TABLE job_vms (
	job_id   TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
	vm_key   TEXT NOT NULL,
	vm_name  TEXT NOT NULL DEFAULT '',
	vm_uuid  TEXT NOT NULL DEFAULT '',
	state    TEXT NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL DEFAULT 0,
	error    TEXT NOT NULL DEFAULT '',
	point_id TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, vm_key)
);
`,
	// 2: who runs a job, whether it is alive, why it failed.
	`
ALTER TABLE jobs ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN heartbeat INTEGER;
ALTER TABLE jobs ADD COLUMN error TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_state ON jobs(state);
`,
	// 3: the server: queued jobs and their logs, schedules, verification
	// state, the audit log.
	`
ALTER TABLE jobs ADD COLUMN queued INTEGER;
ALTER TABLE jobs ADD COLUMN grp TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN trig TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN params TEXT NOT NULL DEFAULT 'null';
ALTER TABLE jobs ADD COLUMN cancel INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_grp_started ON jobs(grp, started);

CREATE TABLE job_log (
	job_id  TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
	seq     INTEGER NOT NULL,
	time    INTEGER NOT NULL,
	level   TEXT NOT NULL,
	message TEXT NOT NULL,
	attrs   TEXT NOT NULL DEFAULT 'null',
	PRIMARY KEY (job_id, seq)
);

CREATE TABLE schedule_runs (
	id     TEXT PRIMARY KEY,
	last   INTEGER NOT NULL,
	job_id TEXT NOT NULL DEFAULT ''
);

CREATE TABLE point_verified (
	point_id TEXT PRIMARY KEY,
	verified INTEGER NOT NULL
);

CREATE TABLE damage (
	repo_id TEXT NOT NULL,
	object  TEXT NOT NULL,
	kind    TEXT NOT NULL,
	detail  TEXT NOT NULL DEFAULT '',
	found   INTEGER NOT NULL,
	PRIMARY KEY (repo_id, object)
);
CREATE TABLE damage_points (
	repo_id  TEXT NOT NULL,
	object   TEXT NOT NULL,
	point_id TEXT NOT NULL,
	PRIMARY KEY (repo_id, object, point_id)
);
CREATE INDEX damage_points_point ON damage_points(point_id);

CREATE TABLE verified_chunks (
	repo_id  TEXT NOT NULL,
	digest   TEXT NOT NULL,
	verified INTEGER NOT NULL,
	PRIMARY KEY (repo_id, digest)
);

CREATE TABLE audit (
	seq     INTEGER PRIMARY KEY,
	time    INTEGER NOT NULL,
	actor   TEXT NOT NULL,
	action  TEXT NOT NULL,
	target  TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL DEFAULT '',
	remote  TEXT NOT NULL DEFAULT '',
	detail  TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX audit_time ON audit(time);
`,
	// 4: a per-VM summary of its points, kept up to date by every write,
	// so that the status of every VM of an estate is one small read.
	`
CREATE TABLE vm_summary (
	repo_id         TEXT NOT NULL,
	vm_uuid         TEXT NOT NULL,
	points          INTEGER NOT NULL,
	damaged         INTEGER NOT NULL,
	bytes_stored    INTEGER NOT NULL,
	newest_id       TEXT NOT NULL,
	newest          INTEGER,
	newest_bytes_new INTEGER NOT NULL,
	good_id         TEXT NOT NULL,
	good            INTEGER,
	verified        INTEGER,
	PRIMARY KEY (repo_id, vm_uuid)
);
` + summarySQL("1 = 1"),
	// 5: boot verification results (kura verify --boot). Not tied to the
	// points table: a rebuild of the points keeps them.
	`
CREATE TABLE boot_checks (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	point_id   TEXT NOT NULL,
	repo_id    TEXT NOT NULL DEFAULT '',
	vm_uuid    TEXT NOT NULL DEFAULT '',
	vm_name    TEXT NOT NULL DEFAULT '',
	started    INTEGER,
	finished   INTEGER,
	ok         INTEGER NOT NULL CHECK (ok IN (0, 1)),
	reason     TEXT NOT NULL DEFAULT '',
	screenshot TEXT NOT NULL DEFAULT '',
	probes     TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX boot_checks_point ON boot_checks(point_id, started);
CREATE INDEX boot_checks_vm ON boot_checks(vm_uuid, started);
`,
	// 6: copies of a point in other repositories (kura copy keeps point
	// ids): the point's row belongs to one repository, these name the
	// others holding it. Not a foreign key: rewriting a point's row keeps
	// its copies.
	`
CREATE TABLE point_copies (
	point_id TEXT NOT NULL,
	repo_id  TEXT NOT NULL REFERENCES repositories(id),
	PRIMARY KEY (point_id, repo_id)
);
CREATE INDEX point_copies_repo ON point_copies(repo_id);
`,
}

// SchemaVersion is the schema version this binary writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings the database to the newest schema. Each step runs in its
// own immediate transaction that re-reads the version, so two processes
// opening a fresh file at once apply every step exactly once.
func (c *SQLite) migrate(ctx context.Context) error {
	if _, err := c.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER NOT NULL,
	applied INTEGER NOT NULL
)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	for {
		done := false
		err := c.inTx(ctx, func(tx *sql.Tx) error {
			v, err := currentVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v > len(migrations) {
				return fmt.Errorf("%w: file has schema %d, this binary knows up to %d", ErrSchemaTooNew, v, len(migrations))
			}
			if v == len(migrations) {
				done = true
				return nil
			}
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(version, applied) VALUES (?, ?)`,
				v+1, c.now().UnixNano()); err != nil {
				return fmt.Errorf("record migration %d: %w", v+1, err)
			}
			c.logger.InfoContext(ctx, "catalog schema migrated", "path", c.path, "version", v+1)
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

func currentVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}
