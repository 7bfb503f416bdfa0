package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/lock"
)

// CatalogOpened says what OpenCatalog had to do.
type CatalogOpened struct {
	// MovedAside is where a damaged catalog file was moved ("" when none):
	// the new catalog is empty and must be rebuilt from the repository.
	MovedAside string
	// Interrupted are the jobs found Running whose process is gone, now
	// marked Failed.
	Interrupted []catalog.Job
}

// OpenCatalog opens the catalog at path. A file that is not a valid
// catalog database is moved aside (to path.damaged-<time>) and a new one
// created — the catalog is a cache of the repository, RebuildCatalog
// fills it again. Jobs left Running by dead processes are marked Failed
// (interrupted).
func OpenCatalog(ctx context.Context, path string, log *slog.Logger) (catalog.Catalog, *CatalogOpened, error) {
	opened := &CatalogOpened{}
	c, err := catalog.Open(ctx, path, log)
	if errors.Is(err, catalog.ErrNotDatabase) {
		aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, nil, fmt.Errorf("%w (and moving it aside failed: %w; move it away by hand, then kura catalog rebuild)", err, rerr)
		}
		for _, side := range []string{"-wal", "-shm"} {
			_ = os.Rename(path+side, aside+side)
		}
		log.Warn("catalog damaged: moved aside, starting a new one (rebuilt from the repository)", "damaged", aside, "err", err)
		opened.MovedAside = aside
		c, err = catalog.Open(ctx, path, log)
	}
	if err != nil {
		return nil, nil, err
	}
	if opened.Interrupted, err = c.MarkInterrupted(ctx, lock.ProcessAlive); err != nil {
		log.Warn("catalog: mark interrupted jobs", "err", err)
	}
	return c, opened, nil
}

// RebuildReport says what RebuildCatalog did.
type RebuildReport struct {
	Repository string `json:"repository"`
	Points     int    `json:"points"`
	// Missing are the VMs no longer defined on the connection (marked
	// missing, their points kept), as "name (uuid)".
	Missing []string `json:"missing_vms"`
	// ReconcileError says why the VMs could not be reconciled ("" when
	// they were, or no connection was given).
	ReconcileError string `json:"reconcile_error,omitempty"`
}

// RebuildCatalog recreates the catalog's recovery points from the
// repository alone, then reconciles the VMs with the hypervisor when a
// connection is given.
func (s *Service) RebuildCatalog(ctx context.Context) (*RebuildReport, error) {
	if s.Catalog == nil {
		return nil, ErrNoCatalog
	}
	n, err := engine.RebuildCatalog(ctx, s.Repo, s.Catalog)
	if err != nil {
		return nil, err
	}
	rep := &RebuildReport{Repository: s.Repo.Config().ID, Points: n, Missing: []string{}}
	if s.Conn != nil {
		missing, err := s.Reconcile(ctx)
		if err != nil {
			rep.ReconcileError = err.Error()
		} else {
			rep.Missing = missing
		}
	}
	return rep, nil
}

// Reconcile marks the catalog's VMs of this connection that the hypervisor
// no longer has as missing (their points are kept), and those it has
// again as present. VMs of other connections are left alone. It returns
// the VMs newly marked missing as "name (uuid)".
func (s *Service) Reconcile(ctx context.Context) ([]string, error) {
	if s.Catalog == nil {
		return nil, ErrNoCatalog
	}
	if s.Conn == nil {
		return nil, ErrNoConnection
	}
	vms, err := s.Conn.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	live := make([]string, len(vms))
	for i, vm := range vms {
		live[i] = vm.UUID
	}
	scope := catalog.Scope{URI: s.Conn.URI()}
	if host, err := s.Conn.Host(ctx); err == nil {
		scope.Host = host
	}
	uuids, err := s.Catalog.MarkMissing(ctx, scope, live)
	if err != nil {
		return nil, err
	}
	known, err := s.Catalog.VMs(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, v := range known {
		names[v.UUID] = v.Name
	}
	out := make([]string, 0, len(uuids))
	for _, u := range uuids {
		out = append(out, names[u]+" ("+u+")")
	}
	return out, nil
}
