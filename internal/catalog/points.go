package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

const pointCols = `id, repo_id, vm_uuid, vm_name, kind, parent, consistency, checkpoint, started, finished,
bytes_read, bytes_new, bytes_stored, tags, notes`

// pointSelect selects pointCols of points aliased p, then the catalog's
// own state: when the point was last verified, whether it is damaged.
const pointSelect = `p.id, p.repo_id, p.vm_uuid, p.vm_name, p.kind, p.parent, p.consistency, p.checkpoint, p.started,
p.finished, p.bytes_read, p.bytes_new, p.bytes_stored, p.tags, p.notes,
(SELECT v.verified FROM point_verified v WHERE v.point_id = p.id),
EXISTS (SELECT 1 FROM damage_points d WHERE d.point_id = p.id)`

const diskCols = `point_id, target, source, format, size, index_id, bytes_read, bytes_new, bytes_stored, incremental`

// AddPoint records a recovery point and its disks. It is idempotent on the
// point ID: adding a point whose ID is already recorded in the same
// repository replaces the stored record (and its disks) with p; recorded
// in another repository, p.RepoID is recorded as holding a copy of it
// (copies keep point ids). An unknown repository ID is recorded with an
// empty location.
func (c *SQLite) AddPoint(ctx context.Context, p Point) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		var oldRepo, oldVM string
		_ = tx.QueryRowContext(ctx, `SELECT repo_id, vm_uuid FROM points WHERE id = ?`, p.ID).Scan(&oldRepo, &oldVM)
		if oldRepo != "" && oldRepo != p.RepoID {
			if err := validatePoint(p); err != nil {
				return err
			}
			return addCopy(ctx, tx, p.RepoID, p.ID)
		}
		pw, err := newPointWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer pw.close()
		if err := pw.write(ctx, p); err != nil {
			return err
		}
		if oldVM != "" && (oldVM != p.VMUUID || oldRepo != p.RepoID) {
			if err := summarize(ctx, tx, oldRepo, []string{oldVM}); err != nil {
				return err
			}
		}
		return summarize(ctx, tx, p.RepoID, []string{p.VMUUID})
	})
	if err != nil {
		return fmt.Errorf("add point %s: %w", p.ID, classify(err))
	}
	return nil
}

func validatePoint(p Point) error {
	switch {
	case p.ID == "" || p.RepoID == "" || p.VMUUID == "":
		return fmt.Errorf("%w: point needs an id, a repository id and a vm uuid", ErrInvalid)
	case p.Kind != KindFull && p.Kind != KindIncremental:
		return fmt.Errorf("%w: point kind %q", ErrInvalid, p.Kind)
	}
	for _, s := range append(append([]string{p.ID}, p.Tags...), p.Notes...) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return fmt.Errorf("%w: id, tags and notes must be UTF-8 text without NUL", ErrInvalid)
		}
	}
	seen := make(map[string]bool, len(p.Disks))
	for _, d := range p.Disks {
		if d.Target == "" || seen[d.Target] {
			return fmt.Errorf("%w: point disk target %q empty or repeated", ErrInvalid, d.Target)
		}
		seen[d.Target] = true
	}
	return nil
}

// pointWriter holds the statements that write points, prepared once per
// transaction (parsing SQL dominates the cost of a rebuild otherwise).
type pointWriter struct {
	repo, del, point, disk *sql.Stmt
}

func newPointWriter(ctx context.Context, tx *sql.Tx) (*pointWriter, error) {
	pw := &pointWriter{}
	for _, s := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&pw.repo, `INSERT INTO repositories(id) VALUES (?) ON CONFLICT (id) DO NOTHING`},
		{&pw.del, `DELETE FROM points WHERE id = ?`},
		{&pw.point, `INSERT INTO points(` + pointCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&pw.disk, `INSERT INTO point_disks(seq, ` + diskCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		st, err := tx.PrepareContext(ctx, s.query)
		if err != nil {
			pw.close()
			return nil, classify(err)
		}
		*s.dst = st
	}
	return pw, nil
}

func (pw *pointWriter) close() {
	for _, st := range []*sql.Stmt{pw.repo, pw.del, pw.point, pw.disk} {
		if st != nil {
			_ = st.Close()
		}
	}
}

// write stores p, replacing any point with the same ID.
func (pw *pointWriter) write(ctx context.Context, p Point) error {
	if err := validatePoint(p); err != nil {
		return err
	}
	tags, err := encodeStrings(p.Tags)
	if err != nil {
		return err
	}
	notes, err := encodeStrings(p.Notes)
	if err != nil {
		return err
	}
	if _, err := pw.repo.ExecContext(ctx, p.RepoID); err != nil {
		return classify(err)
	}
	if _, err := pw.del.ExecContext(ctx, p.ID); err != nil {
		return classify(err)
	}
	if _, err := pw.point.ExecContext(ctx, p.ID, p.RepoID, p.VMUUID, p.VMName, p.Kind, p.Parent, p.Consistency,
		p.Checkpoint, timeToDB(p.Started), timeToDB(p.Finished), p.BytesRead, p.BytesNew, p.BytesStored,
		tags, notes); err != nil {
		return classify(err)
	}
	for i, d := range p.Disks {
		if _, err := pw.disk.ExecContext(ctx, i, p.ID, d.Target, d.Source, d.Format, d.Size, d.IndexID,
			d.BytesRead, d.BytesNew, d.BytesStored, d.Incremental); err != nil {
			return classify(err)
		}
	}
	return nil
}

// DeletePoint records that repository repoID no longer holds point id: a
// copy is forgotten; when repoID is the point's home, a copy becomes its
// home, and without copies the point and its disks are removed. A point
// repoID does not hold gives an error wrapping ErrNotFound.
func (c *SQLite) DeletePoint(ctx context.Context, repoID, id string) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		_, vm, err := pointHome(ctx, tx, id)
		if err != nil {
			return err
		}
		repos, err := dropFromRepo(ctx, tx, repoID, id)
		if err != nil {
			return err
		}
		for _, r := range repos {
			if err := summarize(ctx, tx, r, []string{vm}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete point %s of %s: %w", id, repoID, classify(err))
	}
	return nil
}

// Points lists the points matching f, ordered by start time then ID.
func (c *SQLite) Points(ctx context.Context, f PointFilter) ([]Point, error) {
	var where []string
	var args []any
	if f.VM != "" {
		where = append(where, "(p.vm_name = ? OR p.vm_uuid = ?)")
		args = append(args, f.VM, f.VM)
	}
	if f.RepoID != "" {
		where = append(where, "(p.repo_id = ? OR EXISTS (SELECT 1 FROM point_copies k WHERE k.point_id = p.id AND k.repo_id = ?))")
		args = append(args, f.RepoID, f.RepoID)
	}
	if !f.Since.IsZero() {
		where = append(where, "p.started >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where = append(where, "p.started <= ?")
		args = append(args, f.Until.UnixNano())
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var out []Point
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryPoints(ctx, tx, `SELECT `+pointSelect+` FROM points p`+cond+
			` ORDER BY p.started, p.id`, args...)
		if err != nil {
			return err
		}
		if err := attachDisks(ctx, tx, out, `SELECT `+diskCols+` FROM point_disks
WHERE point_id IN (SELECT p.id FROM points p`+cond+`) ORDER BY point_id, seq`, args...); err != nil {
			return err
		}
		return attachCopies(ctx, tx, out, `SELECT point_id, repo_id FROM point_copies
WHERE point_id IN (SELECT p.id FROM points p`+cond+`) ORDER BY point_id`, args...)
	})
	if err != nil {
		return nil, fmt.Errorf("list points: %w", classify(err))
	}
	return out, nil
}

// Point returns the point whose ID is idOrPrefix or, failing that, the only
// point whose ID starts with it. No match gives ErrNotFound, several give
// ErrAmbiguous.
func (c *SQLite) Point(ctx context.Context, idOrPrefix string) (Point, error) {
	if idOrPrefix == "" {
		return Point{}, fmt.Errorf("point: %w: empty id", ErrInvalid)
	}
	var out []Point
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryPoints(ctx, tx, `SELECT `+pointSelect+` FROM points p WHERE p.id = ?`, idOrPrefix)
		if err != nil || len(out) > 0 {
			return err
		}
		// IDs are valid UTF-8, in which no byte is 0xff, so every ID
		// starting with the prefix sorts (bytewise) in [prefix,
		// prefix+"\xff"): a range the primary key index answers. The
		// substr test, on bytes rather than characters, states the intent.
		out, err = queryPoints(ctx, tx, `SELECT `+pointSelect+` FROM points p
WHERE p.id >= ? AND p.id < ? AND substr(CAST(p.id AS BLOB), 1, ?) = CAST(? AS BLOB) ORDER BY p.id LIMIT 2`,
			idOrPrefix, idOrPrefix+"\xff", len(idOrPrefix), idOrPrefix)
		return err
	})
	if err != nil {
		return Point{}, fmt.Errorf("point %s: %w", idOrPrefix, classify(err))
	}
	switch len(out) {
	case 0:
		return Point{}, fmt.Errorf("point %s: %w", idOrPrefix, ErrNotFound)
	case 1:
	default:
		return Point{}, fmt.Errorf("point %s: %w (%s, %s, ...)", idOrPrefix, ErrAmbiguous, out[0].ID, out[1].ID)
	}
	return c.withDisks(ctx, out[0])
}

// LatestPoint returns the most recently started point of the VM with the
// given UUID held by the given repository (as home or copy), or
// ErrNotFound.
func (c *SQLite) LatestPoint(ctx context.Context, repoID, vmUUID string) (Point, error) {
	out, err := queryPoints(ctx, c.r, `SELECT `+pointSelect+` FROM points p
WHERE (p.repo_id = ? OR EXISTS (SELECT 1 FROM point_copies k WHERE k.point_id = p.id AND k.repo_id = ?)) AND p.vm_uuid = ?
ORDER BY p.started DESC, p.id DESC LIMIT 1`, repoID, repoID, vmUUID)
	if err != nil {
		return Point{}, fmt.Errorf("latest point of %s in %s: %w", vmUUID, repoID, classify(err))
	}
	if len(out) == 0 {
		return Point{}, fmt.Errorf("latest point of %s in %s: %w", vmUUID, repoID, ErrNotFound)
	}
	return c.withDisks(ctx, out[0])
}

func (c *SQLite) withDisks(ctx context.Context, p Point) (Point, error) {
	ps := []Point{p}
	if err := attachDisks(ctx, c.r, ps, `SELECT `+diskCols+` FROM point_disks WHERE point_id = ? ORDER BY seq`, p.ID); err != nil {
		return Point{}, fmt.Errorf("point %s disks: %w", p.ID, classify(err))
	}
	if err := attachCopies(ctx, c.r, ps, `SELECT point_id, repo_id FROM point_copies WHERE point_id = ?`, p.ID); err != nil {
		return Point{}, fmt.Errorf("point %s copies: %w", p.ID, classify(err))
	}
	return ps[0], nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryPoints(ctx context.Context, q querier, query string, args ...any) ([]Point, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var p Point
		var started, finished, verified sql.NullInt64
		var tags, notes string
		if err := rows.Scan(&p.ID, &p.RepoID, &p.VMUUID, &p.VMName, &p.Kind, &p.Parent, &p.Consistency,
			&p.Checkpoint, &started, &finished, &p.BytesRead, &p.BytesNew, &p.BytesStored, &tags, &notes,
			&verified, &p.Damaged); err != nil {
			return nil, err
		}
		p.Started, p.Finished, p.Verified = timeFromDB(started), timeFromDB(finished), timeFromDB(verified)
		if p.Tags, err = decodeStrings(tags); err != nil {
			return nil, fmt.Errorf("point %s tags: %w", p.ID, err)
		}
		if p.Notes, err = decodeStrings(notes); err != nil {
			return nil, fmt.Errorf("point %s notes: %w", p.ID, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// attachDisks runs query (which must select diskCols ordered by point then
// seq) and appends each disk to its point in ps.
func attachDisks(ctx context.Context, q querier, ps []Point, query string, args ...any) error {
	if len(ps) == 0 {
		return nil
	}
	byID := make(map[string]*Point, len(ps))
	for i := range ps {
		byID[ps[i].ID] = &ps[i]
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var d PointDisk
		if err := rows.Scan(&id, &d.Target, &d.Source, &d.Format, &d.Size, &d.IndexID, &d.BytesRead,
			&d.BytesNew, &d.BytesStored, &d.Incremental); err != nil {
			return err
		}
		if p := byID[id]; p != nil {
			p.Disks = append(p.Disks, d)
		}
	}
	return rows.Err()
}

func encodeStrings(s []string) (string, error) {
	if len(s) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(s)
	return string(b), err
}

func decodeStrings(s string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
