package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/phase"
)

// StartJob records a new job of the given kind in state Running, owned by
// this process (host and PID), and returns it. Job IDs are 16 random hex
// digits.
func (c *SQLite) StartJob(ctx context.Context, kind string) (Job, error) {
	if !jobKinds[kind] {
		return Job{}, fmt.Errorf("start job: %w: kind %q", ErrInvalid, kind)
	}
	id, err := newJobID()
	if err != nil {
		return Job{}, fmt.Errorf("start job: %w", err)
	}
	now := c.now().UTC()
	j := Job{ID: id, Kind: kind, State: phase.Running, Started: now, Heartbeat: now,
		Host: c.host, PID: c.pid, Summary: json.RawMessage("null")}
	if _, err := c.w.ExecContext(ctx, `INSERT INTO jobs(id, kind, started, state, host, pid, heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.Kind, timeToDB(j.Started), j.State, j.Host, j.PID, timeToDB(j.Heartbeat)); err != nil {
		return Job{}, fmt.Errorf("start job: %w", classify(err))
	}
	// Round-trip precision: what Jobs returns must equal what we return.
	j.Started = timeFromDB(timeToDB(j.Started))
	j.Heartbeat = j.Started
	return j, nil
}

// Heartbeat records that the process running job id is alive.
func (c *SQLite) Heartbeat(ctx context.Context, id string) error {
	if _, err := c.w.ExecContext(ctx, `UPDATE jobs SET heartbeat = ? WHERE id = ? AND state = ?`,
		timeToDB(c.now()), id, phase.Running); err != nil {
		return fmt.Errorf("heartbeat of job %s: %w", id, classify(err))
	}
	return nil
}

// FinishJob sets a job's final state (Completed, PartiallyFailed, Failed or
// Cancelled), its finish time, and its summary, stored as the JSON encoding
// of summary.
func (c *SQLite) FinishJob(ctx context.Context, id string, state phase.Job, summary any) error {
	if !state.Final() {
		return fmt.Errorf("finish job %s: %w: state %q is not final", id, ErrInvalid, state)
	}
	b, err := json.Marshal(summary)
	if err != nil {
		return fmt.Errorf("finish job %s: encode summary: %w", id, err)
	}
	res, err := c.w.ExecContext(ctx, `UPDATE jobs SET state = ?, finished = ?, summary = ? WHERE id = ?`,
		state, timeToDB(c.now()), string(b), id)
	if err != nil {
		return fmt.Errorf("finish job %s: %w", id, classify(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("finish job %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("finish job %s: %w", id, ErrNotFound)
	}
	return nil
}

// Interrupted is how long a running job of another host may go without a
// heartbeat before MarkInterrupted judges its process dead.
const Interrupted = 30 * time.Minute

// MarkInterrupted marks as Failed every Running job whose process is gone:
// on this host, a PID alive reports dead; on other hosts, no heartbeat for
// Interrupted. The job's finish time is its last heartbeat (when it was
// last seen alive), its error says it was interrupted, and its VMs still
// running are marked Failed too. It returns the jobs it marked.
func (c *SQLite) MarkInterrupted(ctx context.Context, alive func(pid int) bool) ([]Job, error) {
	var marked []Job
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		running, err := queryJobs(ctx, tx, `SELECT `+jobColumns+` FROM jobs WHERE state = ?`, phase.Running)
		if err != nil {
			return err
		}
		now := c.now()
		for _, j := range running {
			var why string
			switch {
			case j.Host == c.host && j.PID > 0 && j.PID != c.pid && !alive(j.PID):
				why = fmt.Sprintf("interrupted: process %d on %s is gone (last seen alive %s)", j.PID, j.Host,
					j.Heartbeat.Local().Format(time.RFC3339))
			case j.Host != c.host && now.Sub(j.Heartbeat) > Interrupted:
				why = fmt.Sprintf("interrupted: process %d on %s sent no heartbeat since %s", j.PID, j.Host,
					j.Heartbeat.Local().Format(time.RFC3339))
			default:
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE jobs SET state = ?, finished = heartbeat, error = ? WHERE id = ?`,
				phase.Failed, why, j.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE job_vms SET state = ?, error = ? WHERE job_id = ? AND state IN (?, ?, ?)`,
				phase.VMFailed, "interrupted", j.ID, phase.Pending, phase.VMRunning, phase.Retrying); err != nil {
				return err
			}
			j.State, j.Finished, j.Error = phase.Failed, j.Heartbeat, why
			marked = append(marked, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark interrupted jobs: %w", classify(err))
	}
	for _, j := range marked {
		c.logger.WarnContext(ctx, "job marked interrupted", "job", j.ID, "kind", j.Kind, "reason", j.Error)
	}
	return marked, nil
}

// RecordJobVM records or updates the outcome of one VM in a job.
func (c *SQLite) RecordJobVM(ctx context.Context, v JobVM) error {
	if v.JobID == "" || (v.VMUUID == "" && v.VMName == "") {
		return fmt.Errorf("record job vm: %w: needs a job id and a vm uuid or name", ErrInvalid)
	}
	_, err := c.w.ExecContext(ctx, `INSERT INTO job_vms(job_id, vm_key, vm_name, vm_uuid, state, attempts, error, point_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(job_id, vm_key) DO UPDATE SET vm_name = excluded.vm_name, state = excluded.state,
	attempts = excluded.attempts, error = excluded.error, point_id = excluded.point_id`,
		v.JobID, v.key(), v.VMName, v.VMUUID, v.State, v.Attempts, v.Error, v.PointID)
	if err != nil {
		if isForeignKey(err) {
			return fmt.Errorf("record job vm in %s: %w: no such job", v.JobID, ErrNotFound)
		}
		return fmt.Errorf("record job vm in %s: %w", v.JobID, classify(err))
	}
	return nil
}

// Jobs returns the most recent jobs, newest first, each with its VMs.
// limit <= 0 means all.
func (c *SQLite) Jobs(ctx context.Context, limit int) ([]Job, error) {
	if limit <= 0 {
		limit = -1
	}
	var out []Job
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryJobs(ctx, tx, `SELECT `+jobColumns+` FROM jobs
ORDER BY coalesce(started, queued) DESC, id DESC LIMIT ?`, limit)
		if err != nil {
			return err
		}
		return attachJobVMs(ctx, tx, out, `SELECT v.job_id, v.vm_name, v.vm_uuid, v.state, v.attempts, v.error, v.point_id
FROM job_vms v JOIN (SELECT id FROM jobs ORDER BY coalesce(started, queued) DESC, id DESC LIMIT ?) j ON j.id = v.job_id
ORDER BY v.job_id, v.vm_name, v.vm_uuid`, limit)
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", classify(err))
	}
	return out, nil
}

// Job returns one job with its VMs, or ErrNotFound.
func (c *SQLite) Job(ctx context.Context, id string) (Job, error) {
	var out []Job
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryJobs(ctx, tx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return attachJobVMs(ctx, tx, out, `SELECT job_id, vm_name, vm_uuid, state, attempts, error, point_id
FROM job_vms WHERE job_id = ? ORDER BY vm_name, vm_uuid`, id)
	})
	if err != nil {
		return Job{}, fmt.Errorf("job %s: %w", id, classify(err))
	}
	if len(out) == 0 {
		return Job{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	return out[0], nil
}

// jobColumns are the columns queryJobs scans, in its order.
const jobColumns = `id, kind, state, started, finished, summary, host, pid, heartbeat, error, queued, grp, trig, params, cancel`

func queryJobs(ctx context.Context, q querier, query string, args ...any) ([]Job, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var j Job
		var started, finished, heartbeat, queued sql.NullInt64
		var summary, params string
		if err := rows.Scan(&j.ID, &j.Kind, &j.State, &started, &finished, &summary, &j.Host, &j.PID, &heartbeat, &j.Error,
			&queued, &j.Group, &j.Trigger, &params, &j.CancelRequested); err != nil {
			return nil, err
		}
		j.Started, j.Finished, j.Heartbeat = timeFromDB(started), timeFromDB(finished), timeFromDB(heartbeat)
		j.Queued = timeFromDB(queued)
		if params != "null" {
			j.Params = json.RawMessage(params)
		}
		j.Summary = json.RawMessage(summary)
		out = append(out, j)
	}
	return out, rows.Err()
}

func attachJobVMs(ctx context.Context, q querier, js []Job, query string, args ...any) error {
	if len(js) == 0 {
		return nil
	}
	byID := make(map[string]*Job, len(js))
	for i := range js {
		byID[js[i].ID] = &js[i]
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v JobVM
		if err := rows.Scan(&v.JobID, &v.VMName, &v.VMUUID, &v.State, &v.Attempts, &v.Error, &v.PointID); err != nil {
			return err
		}
		if j := byID[v.JobID]; j != nil {
			j.VMs = append(j.VMs, v)
		}
	}
	return rows.Err()
}
