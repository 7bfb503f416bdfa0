package service

import (
	"context"
	"fmt"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
)

// SelectVMs resolves selector specs against the connection's inventory.
// It returns the VMs matched by any selector (each once) and, per
// selector, what it matched; a malformed spec is an error wrapping
// hypervisor.ErrBadSelector.
func (s *Service) SelectVMs(ctx context.Context, specs []string) ([]hypervisor.VM, []hypervisor.Match, error) {
	if s.Conn == nil {
		return nil, nil, ErrNoConnection
	}
	sels, err := hypervisor.ParseSelectors(specs)
	if err != nil {
		return nil, nil, err
	}
	vms, err := s.Conn.ListVMs(ctx)
	if err != nil {
		return nil, nil, err
	}
	picked, matches := hypervisor.SelectEach(ctx, vms, sels, nil)
	return picked, matches, nil
}

// Backup backs up the VMs the selectors match. A selector that matches
// nothing is a failed item of the job (so a partly mistyped job ends
// PartiallyFailed); when none matches anything, nothing runs and the
// error wraps ErrNothingSelected.
func (s *Service) Backup(ctx context.Context, specs []string, opts engine.BackupOptions) (*engine.BackupReport, error) {
	vms, matches, err := s.SelectVMs(ctx, specs)
	if err != nil {
		return nil, err
	}
	if len(vms) == 0 {
		return nil, fmt.Errorf("%v on %s: %w", specs, s.Conn.URI(), ErrNothingSelected)
	}
	if s.Catalog != nil && opts.Distrust == nil {
		// Self-healing: what a verify found damaged is stored again.
		if dmg, err := s.Catalog.Damaged(ctx, s.Repo.Config().ID); err == nil {
			for _, d := range dmg {
				opts.Distrust = append(opts.Distrust, d.Object)
			}
		}
	}
	opts.Unmatched = nil
	for _, m := range matches {
		if m.Err != nil {
			s.log().Warn("selector matched no VM", "selector", m.Selector.String(), "err", m.Err)
			opts.Unmatched = append(opts.Unmatched, m)
		}
	}
	return s.Engine().Backup(ctx, vms, opts)
}
