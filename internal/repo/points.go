package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/storage"
)

// getObject fetches and opens an envelope.
func (r *Repository) getObject(ctx context.Context, t objType, name string) ([]byte, error) {
	env, err := r.be.Get(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", name, ErrMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	out, _, err := r.codec.open(nil, nil, t, name, env)
	return out, err
}

// putObject seals plain and stores it.
func (r *Repository) putObject(ctx context.Context, t objType, name string, plain []byte) (int, error) {
	env, err := r.codec.seal(nil, t, name, plain)
	if err != nil {
		return 0, err
	}
	if err := r.be.Put(ctx, name, env); err != nil {
		return 0, putError(name, err)
	}
	return len(env), nil
}

// listNames returns the names under prefix, sorted.
func (r *Repository) listNames(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	err := r.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Strings(names)
	return names, nil
}

// PointIDs returns the ids of all recovery points, sorted (oldest first).
func (r *Repository) PointIDs(ctx context.Context) ([]string, error) {
	names, err := r.listNames(ctx, "points/")
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(names))
	for _, n := range names {
		if id := pointIDFromName(n); id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// ListPoints loads every manifest, sorted by id (i.e. by start time). A
// manifest that cannot be decoded is skipped with a warning (verify
// reports it), so one damaged point does not hide the others.
func (r *Repository) ListPoints(ctx context.Context) ([]*Manifest, error) {
	ids, err := r.PointIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Manifest, 0, len(ids))
	for _, id := range ids {
		m, err := r.loadManifest(ctx, id)
		if errors.Is(err, ErrMissing) {
			continue // deleted since the listing
		}
		if errors.Is(err, ErrCorrupt) {
			r.log.Warn("skipping damaged recovery point", "point", id, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (r *Repository) loadManifest(ctx context.Context, id string) (*Manifest, error) {
	name := pointName(id)
	b, err := r.getObject(ctx, typeManifest, name)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(name, b)
	if err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, corrupt(name, "manifest says it is point %s", m.ID)
	}
	if m.ConfigMAC != "" && m.ConfigMAC != r.configMAC() {
		return nil, fmt.Errorf("point %s: %w", id, ErrConfigChanged)
	}
	return m, nil
}

// resolvePoint expands a unique id prefix.
func (r *Repository) resolvePoint(ctx context.Context, idOrPrefix string) (string, error) {
	if idOrPrefix == "" {
		return "", fmt.Errorf("empty point id: %w", ErrPointNotFound)
	}
	ids, err := r.PointIDs(ctx)
	if err != nil {
		return "", err
	}
	var match []string
	for _, id := range ids {
		if strings.EqualFold(id, idOrPrefix) {
			return id, nil
		}
		if strings.HasPrefix(strings.ToLower(id), strings.ToLower(idOrPrefix)) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("point %q: %w", idOrPrefix, ErrPointNotFound)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("point %q matches %d points (%s, %s, ...): %w", idOrPrefix, len(match), match[0], match[1], ErrAmbiguous)
}

// LoadPoint loads a recovery point by id or unique id prefix. A whole id
// is read at once, without listing the repository's points.
func (r *Repository) LoadPoint(ctx context.Context, idOrPrefix string) (*Manifest, error) {
	if validPointID(idOrPrefix) {
		// The canonical spelling: upper-case T and Z, lower-case hex.
		id := strings.ToUpper(idOrPrefix[:17]) + strings.ToLower(idOrPrefix[17:])
		m, err := r.loadManifest(ctx, id)
		if errors.Is(err, ErrMissing) {
			return nil, fmt.Errorf("point %q: %w", idOrPrefix, ErrPointNotFound)
		}
		return m, err
	}
	id, err := r.resolvePoint(ctx, idOrPrefix)
	if err != nil {
		return nil, err
	}
	return r.loadManifest(ctx, id)
}

// DeleteOptions controls DeletePoints.
type DeleteOptions struct {
	// Wait is how long to wait for a running gc to finish (0: fail at once
	// with an error wrapping lock.ErrLocked).
	Wait time.Duration
}

// DeleteResult says what DeletePoints did.
type DeleteResult struct {
	Deleted []string `json:"deleted"`
	// Kept are points not deleted because a reader holds a lease on them,
	// with the holder ("restore by host pid 123").
	Kept map[string]string `json:"kept,omitempty"`
	// Locked are the points of Kept that an immutable repository's lock
	// still protects, with the date it expires.
	Locked map[string]time.Time `json:"locked,omitempty"`
}

// DeletePoints removes recovery points' manifests (format spec §8.1).
// Their chunks and indexes stay until gc finds them unreferenced; no other
// point is affected. A point under a live reader lease is kept and
// reported in Kept. It holds the prune lock, so it never runs during a gc.
func (r *Repository) DeletePoints(ctx context.Context, ids []string, opts DeleteOptions) (*DeleteResult, error) {
	if err := r.checkWritable(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !validPointID(id) {
			return nil, fmt.Errorf("point %q: %w", id, ErrPointNotFound)
		}
	}
	lk, err := lock.Acquire(ctx, r.be, lock.Prune, map[string]string{"purpose": "delete points"},
		append(r.lockOptions(), lock.WithWait(opts.Wait))...)
	if err != nil {
		return nil, fmt.Errorf("take prune lock: %w", err)
	}
	defer func() { _ = lk.Release(context.WithoutCancel(ctx)) }()
	res := &DeleteResult{Kept: map[string]string{}, Locked: map[string]time.Time{}}
	leased, err := r.leasedPoints(ctx)
	if err != nil {
		return nil, err
	}
	saved := map[string][]byte{}
	for _, id := range ids {
		if who, ok := leasedBy(leased, id); ok {
			res.Kept[id] = who
			continue
		}
		// Immutable repository: kept until its lock expires.
		if until, locked := r.lockedUntil(ctx, id); locked {
			res.Kept[id] = "locked by the immutability period until " + until.UTC().Format(time.RFC3339)
			res.Locked[id] = until
			continue
		}
		name := pointName(id)
		env, err := r.be.Get(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			return res, fmt.Errorf("point %q: %w", id, ErrPointNotFound)
		}
		if err != nil {
			return res, fmt.Errorf("read %s: %w", name, err)
		}
		if err := r.be.Delete(ctx, name); errors.Is(err, storage.ErrRetained) {
			res.Kept[id] = "locked by the store's retention"
			res.Locked[id] = time.Time{}
			continue
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return res, fmt.Errorf("delete point %s: %w", id, err)
		}
		saved[id] = env
	}
	// A reader may have leased a point between the first look and the
	// deletion, and loaded its manifest before it went: put it back.
	if len(saved) > 0 {
		if leased, err = r.leasedPoints(ctx); err != nil {
			return res, err
		}
	}
	for _, id := range ids {
		env, ok := saved[id]
		if !ok {
			continue
		}
		if who, ok := leasedBy(leased, id); ok {
			if err := r.be.Put(context.WithoutCancel(ctx), pointName(id), env); err != nil {
				return res, fmt.Errorf("restore point %s leased during its deletion: %w", id, err)
			}
			res.Kept[id] = who
			continue
		}
		res.Deleted = append(res.Deleted, id)
	}
	return res, nil
}

// leasedBy says who holds a lease on point id, if anyone.
func leasedBy(leased map[string]string, id string) (string, bool) {
	if who, ok := leased[id]; ok {
		return who, true
	}
	who, ok := leased[leaseAll]
	return who, ok
}

// DeletePoint deletes one point (see DeletePoints); a point under a reader
// lease gives an error wrapping ErrLeased.
func (r *Repository) DeletePoint(ctx context.Context, id string) error {
	res, err := r.DeletePoints(ctx, []string{id}, DeleteOptions{})
	if err != nil {
		return err
	}
	if until, ok := res.Locked[id]; ok {
		return fmt.Errorf("point %s: %w until %s", id, ErrStillLocked, until.UTC().Format(time.RFC3339))
	}
	if who, ok := res.Kept[id]; ok {
		return fmt.Errorf("point %s: %w (%s)", id, ErrLeased, who)
	}
	return nil
}

// LoadIndex loads and decodes a disk index.
func (r *Repository) LoadIndex(ctx context.Context, id string) (*Index, error) {
	if !validID(id) {
		return nil, fmt.Errorf("index id %q: %w", id, ErrMissing)
	}
	name := indexName(id)
	b, err := r.getObject(ctx, typeIndex, name)
	if err != nil {
		return nil, err
	}
	if d := r.codec.digest(b); d.String() != id {
		return nil, corrupt(name, "content does not match its name")
	}
	return decodeIndex(name, b)
}
