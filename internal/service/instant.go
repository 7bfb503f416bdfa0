package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/instant"
	"github.com/kurabackup/kura/internal/repo"
)

// Instant returns the manager of instant VMs and boot verifications of
// this service's repository, keeping their state in stateDir. launch
// starts the process serving an instant VM (nil: this process serves).
func (s *Service) Instant(stateDir string, launch func(ctx context.Context, name string) error) *instant.Manager {
	return &instant.Manager{Repo: s.Repo, RepoLocation: s.Repo.Backend().Location(), Conn: s.Conn, Catalog: s.Catalog,
		StateDir: stateDir, Launch: launch, Logger: s.log()}
}

// BootPoints resolves the arguments of kura verify --boot: each is a
// point id (or unique prefix), or a selector (name:GLOB, uuid:UUID, any:,
// a VM name) matched against the VMs the repository holds points of; a
// selector stands for every point of each VM it matches, or only the
// newest with latest. Points come back in order, without duplicates.
func (s *Service) BootPoints(ctx context.Context, args []string, latest bool) ([]string, error) {
	points, err := s.Repo.PointSummaries(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(id string) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, a := range args {
		if !strings.Contains(a, ":") {
			if m, err := s.Repo.LoadPoint(ctx, a); err == nil {
				add(m.ID)
				continue
			} else if !errors.Is(err, repo.ErrPointNotFound) {
				return nil, err
			}
		}
		ids, err := selectPoints(ctx, points, a, latest)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%q is neither a point nor a selector of a vm with points: %w", a, ErrNothingSelected)
		}
		for _, id := range ids {
			add(id)
		}
	}
	return out, nil
}

// selectPoints returns the points (oldest first) of the VMs spec selects,
// or each VM's newest with latest.
func selectPoints(ctx context.Context, points []*repo.Manifest, spec string, latest bool) ([]string, error) {
	sels, err := hypervisor.ParseSelectors([]string{spec})
	if err != nil {
		return nil, err
	}
	var vms []hypervisor.VM
	for _, p := range points {
		if !slices.ContainsFunc(vms, func(v hypervisor.VM) bool { return v.UUID == p.VM.UUID }) {
			vms = append(vms, hypervisor.VM{Name: p.VM.Name, UUID: p.VM.UUID})
		}
	}
	picked, _ := hypervisor.SelectEach(ctx, vms, sels, nil)
	var out []string
	for _, v := range picked {
		var ids []string
		for _, p := range points {
			if p.VM.UUID == v.UUID {
				ids = append(ids, p.ID)
			}
		}
		if latest && len(ids) > 0 {
			ids = ids[len(ids)-1:]
		}
		out = append(out, ids...)
	}
	return out, nil
}
