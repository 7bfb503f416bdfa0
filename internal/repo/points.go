package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

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
	env, _, err := r.codec.seal(nil, nil, t, name, plain)
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

// LoadPoint loads a recovery point by id or unique id prefix.
func (r *Repository) LoadPoint(ctx context.Context, idOrPrefix string) (*Manifest, error) {
	id, err := r.resolvePoint(ctx, idOrPrefix)
	if err != nil {
		return nil, err
	}
	return r.loadManifest(ctx, id)
}

// DeletePoint removes a recovery point's manifest. Its chunks and indexes
// stay until gc finds them unreferenced; no other point is affected.
func (r *Repository) DeletePoint(ctx context.Context, id string) error {
	if !validPointID(id) {
		return fmt.Errorf("point %q: %w", id, ErrPointNotFound)
	}
	if err := r.checkDeletable(ctx, id); err != nil {
		return err
	}
	err := r.be.Delete(ctx, pointName(id))
	if errors.Is(err, storage.ErrRetained) {
		return fmt.Errorf("point %s: %w: %w", id, ErrStillLocked, err)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("point %q: %w", id, ErrPointNotFound)
	}
	return err
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
