package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kurabackup/kura/internal/lock"
)

// leasePointsKey is the lock data key listing the leased point ids;
// leaseAll as its value leases every point.
const (
	leasePointsKey = "points"
	leaseAll       = "*"
)

// Lease is a shared reader lease on recovery points (format spec §8.1).
// While it is held, and refreshed, DeletePoints never removes those
// points, so gc never sweeps what they reference. Restores, exports, file
// reads, verifies and instant recovery hold one for as long as they read.
type Lease struct {
	lk     *lock.Lock
	points []string
}

// Points returns the ids of the leased points.
func (l *Lease) Points() []string { return slices.Clone(l.points) }

// Lost is closed when the lease was lost (not refreshed in time, or
// removed as stale); a reader that sees it must stop.
func (l *Lease) Lost() <-chan struct{} { return l.lk.Lost() }

// Release ends the lease. Releasing twice is not an error.
func (l *Lease) Release(ctx context.Context) error {
	return l.lk.Release(ctx)
}

// LeasePoints resolves ids (full ids or unique prefixes), takes a reader
// lease on the points and then loads their manifests, in that order: a
// manifest loaded after the lease is visible cannot be deleted while the
// lease lives. A point deleted before the lease was taken gives an error
// wrapping ErrPointNotFound. purpose is recorded in the lease ("restore",
// "files", ...).
func (r *Repository) LeasePoints(ctx context.Context, purpose string, ids ...string) (*Lease, []*Manifest, error) {
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("lease: %w: no point given", ErrPointNotFound)
	}
	resolved := make([]string, 0, len(ids))
	for _, id := range ids {
		full, err := r.resolvePoint(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		if !slices.Contains(resolved, full) {
			resolved = append(resolved, full)
		}
	}
	lk, err := lock.Acquire(ctx, r.be, lock.Read, map[string]string{
		"purpose": purpose, leasePointsKey: strings.Join(resolved, ","),
	}, r.lockOptions()...)
	if err != nil {
		return nil, nil, fmt.Errorf("take reader lease: %w", err)
	}
	l := &Lease{lk: lk, points: resolved}
	ms := make([]*Manifest, 0, len(resolved))
	for _, id := range resolved {
		m, err := r.loadManifest(ctx, id)
		if errors.Is(err, ErrMissing) {
			err = fmt.Errorf("point %s was deleted meanwhile: %w", id, ErrPointNotFound)
		}
		if err != nil {
			_ = l.Release(context.WithoutCancel(ctx))
			return nil, nil, err
		}
		ms = append(ms, m)
	}
	return l, ms, nil
}

// LeaseAll takes a reader lease on every point of the repository (those
// that exist now and any committed while it is held): verify holds one.
func (r *Repository) LeaseAll(ctx context.Context, purpose string) (*Lease, error) {
	lk, err := lock.Acquire(ctx, r.be, lock.Read, map[string]string{"purpose": purpose, leasePointsKey: leaseAll},
		r.lockOptions()...)
	if err != nil {
		return nil, fmt.Errorf("take reader lease: %w", err)
	}
	return &Lease{lk: lk, points: []string{leaseAll}}, nil
}

// LeasePoint is LeasePoints for one point.
func (r *Repository) LeasePoint(ctx context.Context, purpose, id string) (*Lease, *Manifest, error) {
	l, ms, err := r.LeasePoints(ctx, purpose, id)
	if err != nil {
		return nil, nil, err
	}
	return l, ms[0], nil
}

// leasedPoints returns the point ids named by live reader leases, with a
// description of each holder; the key leaseAll means every point.
func (r *Repository) leasedPoints(ctx context.Context) (map[string]string, error) {
	infos, err := lock.List(ctx, r.be, r.lockOptions()...)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, in := range infos {
		if in.Kind != lock.Read || in.Stale {
			continue
		}
		for _, id := range strings.Split(in.Data[leasePointsKey], ",") {
			if id != "" {
				out[id] = fmt.Sprintf("%s by %s pid %d", in.Data["purpose"], in.Host, in.PID)
			}
		}
	}
	return out, nil
}

// MaintenanceObject reports whether name is an object that maintenance
// must be able to write even on a full store — locks and gc markers —
// because without them a full repository could never be pruned and swept.
// A backend with a space reserve (local.Options.ReserveFor) lets these
// use it.
func MaintenanceObject(name string) bool {
	return strings.HasPrefix(name, lock.Prefix) || strings.HasPrefix(name, "gc/")
}
