package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// BootCheck is the outcome of booting one recovery point as a throw-away
// VM (kura verify --boot). Unlike points, boot checks exist only in the
// catalog: Rebuild keeps them.
type BootCheck struct {
	ID       int64     `json:"id"`
	PointID  string    `json:"point_id"`
	RepoID   string    `json:"repo_id"`
	VMUUID   string    `json:"vm_uuid"` // the VM the point belongs to
	VMName   string    `json:"vm_name"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	OK       bool      `json:"ok"`
	// Reason says why the check failed ("" when OK).
	Reason string `json:"reason,omitempty"`
	// Screenshot is the path of the console screenshot (PNG), if any.
	Screenshot string `json:"screenshot,omitempty"`
	// Probes is the JSON the verifier recorded about each probe.
	Probes json.RawMessage `json:"probes,omitempty"`
}

const bootCols = `id, point_id, repo_id, vm_uuid, vm_name, started, finished, ok, reason, screenshot, probes`

// AddBootCheck records a boot check and returns its id.
func (c *SQLite) AddBootCheck(ctx context.Context, b BootCheck) (int64, error) {
	if b.PointID == "" {
		return 0, fmt.Errorf("add boot check: %w: no point id", ErrInvalid)
	}
	probes := string(b.Probes)
	if probes == "" {
		probes = "null"
	} else if !json.Valid(b.Probes) {
		return 0, fmt.Errorf("add boot check: %w: probes are not JSON", ErrInvalid)
	}
	var id int64
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO boot_checks(point_id, repo_id, vm_uuid, vm_name, started, finished, ok, reason, screenshot, probes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, b.PointID, b.RepoID, b.VMUUID, b.VMName, timeToDB(b.Started), timeToDB(b.Finished),
			b.OK, b.Reason, b.Screenshot, probes)
		if err != nil {
			return classify(err)
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("add boot check of point %s: %w", b.PointID, err)
	}
	return id, nil
}

// BootChecks returns the boot checks of a point, newest first.
func (c *SQLite) BootChecks(ctx context.Context, pointID string) ([]BootCheck, error) {
	var out []BootCheck
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryBootChecks(ctx, tx, `SELECT `+bootCols+` FROM boot_checks WHERE point_id = ? ORDER BY started DESC, id DESC`, pointID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boot checks of point %s: %w", pointID, err)
	}
	return out, nil
}

// LatestVerifiedBoots returns, for each VM, its newest successful boot
// check (of the newest point that booted), by VM UUID.
func (c *SQLite) LatestVerifiedBoots(ctx context.Context) (map[string]BootCheck, error) {
	var all []BootCheck
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		all, err = queryBootChecks(ctx, tx, `SELECT `+bootCols+` FROM boot_checks WHERE ok = 1 ORDER BY point_id DESC, started DESC, id DESC`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("latest verified boots: %w", err)
	}
	out := map[string]BootCheck{}
	for _, b := range all {
		if _, ok := out[b.VMUUID]; !ok {
			out[b.VMUUID] = b
		}
	}
	return out, nil
}

func queryBootChecks(ctx context.Context, q querier, query string, args ...any) ([]BootCheck, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []BootCheck
	for rows.Next() {
		var b BootCheck
		var started, finished sql.NullInt64
		var probes string
		if err := rows.Scan(&b.ID, &b.PointID, &b.RepoID, &b.VMUUID, &b.VMName, &started, &finished, &b.OK,
			&b.Reason, &b.Screenshot, &probes); err != nil {
			return nil, err
		}
		b.Started, b.Finished = timeFromDB(started), timeFromDB(finished)
		if probes != "null" {
			b.Probes = json.RawMessage(probes)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
