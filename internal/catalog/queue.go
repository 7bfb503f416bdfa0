package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kurabackup/kura/internal/phase"
)

func newJobID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// EnqueueJob records a job to run later, in state New.
func (c *SQLite) EnqueueJob(ctx context.Context, spec JobSpec) (Job, error) {
	if !jobKinds[spec.Kind] {
		return Job{}, fmt.Errorf("enqueue job: %w: kind %q", ErrInvalid, spec.Kind)
	}
	id, err := newJobID()
	if err != nil {
		return Job{}, fmt.Errorf("enqueue job: %w", err)
	}
	params := spec.Params
	if len(params) == 0 {
		params = json.RawMessage("null")
	}
	if !json.Valid(params) {
		return Job{}, fmt.Errorf("enqueue job: %w: params are not JSON", ErrInvalid)
	}
	now := timeFromDB(timeToDB(c.now()))
	if _, err := c.w.ExecContext(ctx, `INSERT INTO jobs(id, kind, state, queued, grp, trig, params) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		id, spec.Kind, phase.New, timeToDB(now), spec.Group, spec.Trigger, string(params)); err != nil {
		return Job{}, fmt.Errorf("enqueue job: %w", classify(err))
	}
	return Job{ID: id, Kind: spec.Kind, State: phase.New, Queued: now, Group: spec.Group, Trigger: spec.Trigger,
		Params: params, Summary: json.RawMessage("null")}, nil
}

// ClaimJob moves a New job to Running, owned by this process. A job not
// New (claimed by another runner, or cancelled) gives ErrNotFound.
func (c *SQLite) ClaimJob(ctx context.Context, id string) (Job, error) {
	now := c.now()
	res, err := c.w.ExecContext(ctx, `UPDATE jobs SET state = ?, started = ?, heartbeat = ?, host = ?, pid = ?
WHERE id = ? AND state = ?`, phase.Running, timeToDB(now), timeToDB(now), c.host, c.pid, id, phase.New)
	if err != nil {
		return Job{}, fmt.Errorf("claim job %s: %w", id, classify(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return Job{}, fmt.Errorf("claim job %s: %w", id, err)
	} else if n == 0 {
		return Job{}, fmt.Errorf("claim job %s: %w (not queued)", id, ErrNotFound)
	}
	return c.Job(ctx, id)
}

// RequestCancel asks a job to stop: a New job is Cancelled at once; a
// Running one is flagged, and its runner (which polls the flag through
// Job) cancels it. A finished job gives ErrInvalid.
func (c *SQLite) RequestCancel(ctx context.Context, id string) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		var state phase.Job
		if err := tx.QueryRowContext(ctx, `SELECT state FROM jobs WHERE id = ?`, id).Scan(&state); err == sql.ErrNoRows {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		switch state {
		case phase.New:
			_, err := tx.ExecContext(ctx, `UPDATE jobs SET state = ?, finished = ?, cancel = 1, error = ? WHERE id = ?`,
				phase.Cancelled, timeToDB(c.now()), "cancelled before it started", id)
			return err
		case phase.Running:
			_, err := tx.ExecContext(ctx, `UPDATE jobs SET cancel = 1 WHERE id = ?`, id)
			return err
		}
		return fmt.Errorf("%w: job is %s already", ErrInvalid, state)
	})
	if err != nil {
		return fmt.Errorf("cancel job %s: %w", id, classify(err))
	}
	return nil
}

// FindJobs lists jobs matching f, newest first (by start, else queue time).
func (c *SQLite) FindJobs(ctx context.Context, f JobFilter) ([]Job, error) {
	var where []string
	var args []any
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, f.State)
	}
	if f.Group != "" {
		where, args = append(where, "grp = ?"), append(args, f.Group)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "coalesce(started, queued) >= ?"), append(args, f.Since.UnixNano())
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	order := ` ORDER BY coalesce(started, queued) DESC, id DESC LIMIT ?`
	var out []Job
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryJobs(ctx, tx, `SELECT `+jobColumns+` FROM jobs`+cond+order, append(args, limit)...)
		if err != nil {
			return err
		}
		return attachJobVMs(ctx, tx, out, `SELECT v.job_id, v.vm_name, v.vm_uuid, v.state, v.attempts, v.error, v.point_id
FROM job_vms v JOIN (SELECT id FROM jobs`+cond+order+`) j ON j.id = v.job_id
ORDER BY v.job_id, v.vm_name, v.vm_uuid`, append(args, limit)...)
	})
	if err != nil {
		return nil, fmt.Errorf("find jobs: %w", classify(err))
	}
	return out, nil
}

// AppendJobLog adds lines to a job's log; their Seq is assigned in order
// after the lines already there.
func (c *SQLite) AppendJobLog(ctx context.Context, id string, lines []LogLine) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM job_log WHERE job_id = ?`, id).Scan(&last); err != nil {
			return err
		}
		seq := last.Int64
		for _, l := range lines {
			seq++
			attrs := l.Attrs
			if len(attrs) == 0 || !json.Valid(attrs) {
				attrs = json.RawMessage("null")
			}
			t := l.Time
			if t.IsZero() {
				t = c.now()
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO job_log(job_id, seq, time, level, message, attrs) VALUES (?, ?, ?, ?, ?, ?)`,
				id, seq, timeToDB(t), l.Level, l.Message, string(attrs)); err != nil {
				if isForeignKey(err) {
					return fmt.Errorf("%w: no such job", ErrNotFound)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append log of job %s: %w", id, classify(err))
	}
	return nil
}

// JobLog returns up to limit lines (all when limit <= 0) of a job's log
// after sequence number afterSeq, in order.
func (c *SQLite) JobLog(ctx context.Context, id string, afterSeq int64, limit int) ([]LogLine, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := c.r.QueryContext(ctx, `SELECT seq, time, level, message, attrs FROM job_log
WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`, id, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("log of job %s: %w", id, classify(err))
	}
	defer rows.Close()
	var out []LogLine
	for rows.Next() {
		var l LogLine
		var t sql.NullInt64
		var attrs string
		if err := rows.Scan(&l.Seq, &t, &l.Level, &l.Message, &attrs); err != nil {
			return nil, fmt.Errorf("log of job %s: %w", id, err)
		}
		l.Time = timeFromDB(t)
		if attrs != "null" {
			l.Attrs = json.RawMessage(attrs)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// ScheduleRuns returns when each schedule last fired, by schedule id.
func (c *SQLite) ScheduleRuns(ctx context.Context) (map[string]ScheduleRun, error) {
	rows, err := c.r.QueryContext(ctx, `SELECT id, last, job_id FROM schedule_runs`)
	if err != nil {
		return nil, fmt.Errorf("schedule runs: %w", classify(err))
	}
	defer rows.Close()
	out := map[string]ScheduleRun{}
	for rows.Next() {
		var r ScheduleRun
		var last sql.NullInt64
		if err := rows.Scan(&r.ID, &last, &r.Job); err != nil {
			return nil, fmt.Errorf("schedule runs: %w", err)
		}
		r.Last = timeFromDB(last)
		out[r.ID] = r
	}
	return out, rows.Err()
}

// RecordScheduleRun records that a schedule fired.
func (c *SQLite) RecordScheduleRun(ctx context.Context, r ScheduleRun) error {
	if r.ID == "" || r.Last.IsZero() {
		return fmt.Errorf("record schedule run: %w: needs an id and a time", ErrInvalid)
	}
	if _, err := c.w.ExecContext(ctx, `INSERT INTO schedule_runs(id, last, job_id) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET last = excluded.last, job_id = excluded.job_id`, r.ID, timeToDB(r.Last), r.Job); err != nil {
		return fmt.Errorf("record schedule run %s: %w", r.ID, classify(err))
	}
	return nil
}

// AppendAudit records an audit entry (its Seq is assigned).
func (c *SQLite) AppendAudit(ctx context.Context, e AuditEntry) error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("audit: %w: needs an actor and an action", ErrInvalid)
	}
	detail := e.Detail
	if len(detail) == 0 || !json.Valid(detail) {
		detail = json.RawMessage("null")
	}
	t := e.Time
	if t.IsZero() {
		t = c.now()
	}
	if _, err := c.w.ExecContext(ctx, `INSERT INTO audit(time, actor, action, target, outcome, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		timeToDB(t), e.Actor, e.Action, e.Target, e.Outcome, e.Remote, string(detail)); err != nil {
		return fmt.Errorf("audit: %w", classify(err))
	}
	return nil
}

// Audit lists audit entries matching f, newest first.
func (c *SQLite) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, f.Since.UnixNano())
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if f.Action != "" {
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	rows, err := c.r.QueryContext(ctx, `SELECT seq, time, actor, action, target, outcome, remote, detail FROM audit`+cond+
		` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", classify(err))
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var t sql.NullInt64
		var detail string
		if err := rows.Scan(&e.Seq, &t, &e.Actor, &e.Action, &e.Target, &e.Outcome, &e.Remote, &detail); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		e.Time = timeFromDB(t)
		if detail != "null" {
			e.Detail = json.RawMessage(detail)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
