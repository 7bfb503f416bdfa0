package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// UpsertRepository records a repository or updates its location.
func (c *SQLite) UpsertRepository(ctx context.Context, r Repository) error {
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
func (c *SQLite) Repositories(ctx context.Context) ([]Repository, error) {
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
func (c *SQLite) UpsertVM(ctx context.Context, v VM) error {
	if err := c.inTx(ctx, func(tx *sql.Tx) error { return c.upsertVM(ctx, tx, v) }); err != nil {
		return fmt.Errorf("upsert vm %s: %w", v.UUID, err)
	}
	return nil
}

func (c *SQLite) upsertVM(ctx context.Context, tx *sql.Tx, v VM) error {
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
	first_seen = CASE WHEN vms.first_seen IS NULL OR excluded.first_seen < vms.first_seen THEN excluded.first_seen ELSE vms.first_seen END,
	last_seen = CASE WHEN vms.last_seen IS NULL OR excluded.last_seen > vms.last_seen THEN excluded.last_seen ELSE vms.last_seen END,
	missing = excluded.missing`,
		v.UUID, v.Name, v.Hypervisor, v.URI, v.Host, timeToDB(v.FirstSeen), timeToDB(v.LastSeen), v.Missing)
	return classify(err)
}

// VMs lists every known VM, missing ones included, ordered by name then UUID.
func (c *SQLite) VMs(ctx context.Context) ([]VM, error) {
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
func (c *SQLite) MarkMissing(ctx context.Context, scope Scope, liveUUIDs []string) ([]string, error) {
	cond, args := scope.where()
	live := make(map[string]bool, len(liveUUIDs))
	for _, u := range liveUUIDs {
		live[u] = true
	}
	var newly []string
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT uuid, missing FROM vms WHERE `+cond, args...)
		if err != nil {
			return err
		}
		var flip []string
		for rows.Next() {
			var u string
			var missing bool
			if err := rows.Scan(&u, &missing); err != nil {
				rows.Close()
				return err
			}
			if missing == live[u] {
				flip = append(flip, u)
				if !missing {
					newly = append(newly, u)
				}
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, u := range flip {
			if _, err := tx.ExecContext(ctx, `UPDATE vms SET missing = ? WHERE uuid = ?`, !live[u], u); err != nil {
				return err
			}
		}
		slices.Sort(newly)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark missing vms: %w", classify(err))
	}
	return newly, nil
}
