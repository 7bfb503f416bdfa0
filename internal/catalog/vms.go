package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// UpsertRepository records a repository or updates its location.
func (c *Catalog) UpsertRepository(ctx context.Context, r Repository) error {
	if r.ID == "" {
		return fmt.Errorf("upsert repository: %w: empty id", ErrInvalid)
	}
	_, err := c.w.ExecContext(ctx, `INSERT INTO repositories(id, location) VALUES (?, ?)
ON CONFLICT(id) DO UPDATE SET location = excluded.location`, r.ID, r.Location)
	if err != nil {
		return fmt.Errorf("upsert repository %s: %w", r.ID, classify(err))
	}
	return nil
}

// Repositories lists the known repositories ordered by ID.
func (c *Catalog) Repositories(ctx context.Context) ([]Repository, error) {
	rows, err := c.r.QueryContext(ctx, `SELECT id, location FROM repositories ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", classify(err))
	}
	defer rows.Close()
	var out []Repository
	for rows.Next() {
		var r Repository
		if err := rows.Scan(&r.ID, &r.Location); err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	return out, nil
}

// UpsertVM records a VM or updates it. FirstSeen keeps the earliest value
// ever recorded; LastSeen the latest. A zero FirstSeen or LastSeen means
// now. Missing is stored as given.
func (c *Catalog) UpsertVM(ctx context.Context, v VM) error {
	if err := c.inTx(ctx, func(tx *sql.Tx) error { return c.upsertVM(ctx, tx, v) }); err != nil {
		return fmt.Errorf("upsert vm %s: %w", v.UUID, err)
	}
	return nil
}

func (c *Catalog) upsertVM(ctx context.Context, tx *sql.Tx, v VM) error {
	if v.UUID == "" || v.Name == "" {
		return fmt.Errorf("%w: vm needs a uuid and a name", ErrInvalid)
	}
	now := c.now()
	if v.FirstSeen.IsZero() {
		v.FirstSeen = now
	}
	if v.LastSeen.IsZero() {
		v.LastSeen = now
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO vms(uuid, name, hypervisor, uri, host, first_seen, last_seen, missing)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(uuid) DO UPDATE SET
	name = excluded.name, hypervisor = excluded.hypervisor, uri = excluded.uri, host = excluded.host,
	first_seen = min(coalesce(first_seen, excluded.first_seen), excluded.first_seen),
	last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen),
	missing = excluded.missing`,
		v.UUID, v.Name, v.Hypervisor, v.URI, v.Host, timeToDB(v.FirstSeen), timeToDB(v.LastSeen), v.Missing)
	return classify(err)
}

// VMs lists every known VM, missing ones included, ordered by name then UUID.
func (c *Catalog) VMs(ctx context.Context) ([]VM, error) {
	rows, err := c.r.QueryContext(ctx, `SELECT uuid, name, hypervisor, uri, host, first_seen, last_seen, missing
FROM vms ORDER BY name, uuid`)
	if err != nil {
		return nil, fmt.Errorf("list vms: %w", classify(err))
	}
	defer rows.Close()
	var out []VM
	for rows.Next() {
		var v VM
		var first, last sql.NullInt64
		if err := rows.Scan(&v.UUID, &v.Name, &v.Hypervisor, &v.URI, &v.Host, &first, &last, &v.Missing); err != nil {
			return nil, fmt.Errorf("list vms: %w", err)
		}
		v.FirstSeen, v.LastSeen = timeFromDB(first), timeFromDB(last)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	return out, nil
}

// Scope names the hypervisor an inventory comes from: its host name and
// connection URI.
type Scope struct {
	Host string
	URI  string
}

// where is the SQL condition (and its arguments) selecting the VMs of the
// scope: those recorded on the scope's host or, for records without a host
// (or a scope without one), through the same connection URI.
func (s Scope) where() (string, []any) {
	if s.Host == "" {
		return `uri = ?`, []any{s.URI}
	}
	return `(host = ? OR (host = '' AND uri = ?))`, []any{s.Host, s.URI}
}

// MarkMissing reconciles the VMs of one hypervisor (scope) with its live
// inventory: every VM whose UUID is in liveUUIDs is marked present, every
// other VM of that scope missing; VMs of other hypervisors are left as
// they are. Points of missing VMs are kept. It returns the UUIDs newly
// marked missing.
func (c *Catalog) MarkMissing(ctx context.Context, scope Scope, liveUUIDs []string) ([]string, error) {
	cond, args := scope.where()
	var newly []string
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS live_vms(uuid TEXT PRIMARY KEY)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM temp.live_vms`); err != nil {
			return err
		}
		for _, u := range liveUUIDs {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO temp.live_vms(uuid) VALUES (?)`, u); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `UPDATE vms SET missing = 1
WHERE missing = 0 AND `+cond+` AND uuid NOT IN (SELECT uuid FROM temp.live_vms) RETURNING uuid`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return err
			}
			newly = append(newly, u)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE vms SET missing = 0
WHERE missing = 1 AND uuid IN (SELECT uuid FROM temp.live_vms)`); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM temp.live_vms`)
		slices.Sort(newly)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark missing vms: %w", classify(err))
	}
	return newly, nil
}
