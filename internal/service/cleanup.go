package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kurabackup/kura/internal/diskwrite"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/repo"
)

// Leftover kinds the service itself finds (the connector reports the
// others).
const (
	KindRepositoryLock = "repository-lock"
	KindPartialImage   = "partial-image"
)

// CleanupOptions controls Cleanup.
type CleanupOptions struct {
	// VMs are names or UUIDs. Empty: the VMs this repository holds points
	// of, and what is named after this repository on any VM (a VM whose
	// first backup was killed); other VMs are not touched.
	VMs []string
	// Confirm is asked, with what was found, before anything is removed;
	// false removes nothing (ErrDeclined). Nil removes without asking.
	Confirm func(found []hypervisor.Leftover) bool
	// DryRun only lists.
	DryRun bool
}

// CleanupFailure is a leftover that could not be removed.
type CleanupFailure struct {
	Leftover hypervisor.Leftover `json:"leftover"`
	Error    string              `json:"error"`
}

// CleanupReport says what Cleanup found and did.
type CleanupReport struct {
	// Leftovers is everything found, foreign ones (another repository's
	// checkpoints, listed and kept) included.
	Leftovers []hypervisor.Leftover `json:"leftovers"`
	Removed   int                   `json:"removed"`
	Failed    []CleanupFailure      `json:"failed,omitempty"`
	DryRun    bool                  `json:"dry_run,omitempty"`
}

// Cleanup finds what killed runs left behind — on the hypervisor (backup
// jobs, checkpoints and bitmaps of this repository not referenced by any
// point, NBD servers, scratch files), partial images of interrupted
// restores, stale repository locks — and removes it.
func (s *Service) Cleanup(ctx context.Context, opts CleanupOptions) (*CleanupReport, error) {
	points, err := s.Repo.PointSummaries(ctx)
	if err != nil {
		return nil, err
	}
	scope := slices.Clone(opts.VMs)
	if len(scope) == 0 {
		for _, p := range points {
			if p.VM.UUID != "" && !slices.Contains(scope, p.VM.UUID) {
				scope = append(scope, p.VM.UUID)
			}
		}
	}
	rep := &CleanupReport{Leftovers: []hypervisor.Leftover{}, DryRun: opts.DryRun}
	if s.Conn != nil {
		lo, err := s.hypervisorLeftovers(ctx, points, scope, len(opts.VMs) == 0)
		if err != nil {
			return nil, err
		}
		rep.Leftovers = append(rep.Leftovers, lo...)
	}
	rep.Leftovers = append(rep.Leftovers, s.partialImages(points, scope)...)
	locks, err := lock.List(ctx, s.Repo.Backend())
	if err != nil {
		return nil, err
	}
	for _, l := range locks {
		if l.Stale {
			rep.Leftovers = append(rep.Leftovers, hypervisor.Leftover{Kind: KindRepositoryLock, Name: l.ID,
				Detail: fmt.Sprintf("%s lock of pid %d on %s: %s", l.Kind, l.PID, l.Host, l.StaleReason)})
		}
	}
	removable := 0
	for _, l := range rep.Leftovers {
		if !l.Foreign {
			removable++
		}
	}
	if opts.DryRun || removable == 0 {
		return rep, nil
	}
	if opts.Confirm != nil && !opts.Confirm(rep.Leftovers) {
		return rep, ErrDeclined
	}
	for _, l := range rep.Leftovers {
		if l.Foreign {
			continue
		}
		if err := s.removeLeftover(ctx, l); err != nil {
			rep.Failed = append(rep.Failed, CleanupFailure{Leftover: l, Error: err.Error()})
			s.log().Error("remove leftover", "vm", l.VM, "kind", l.Kind, "name", l.Name, "err", err)
			continue
		}
		rep.Removed++
	}
	return rep, nil
}

// hypervisorLeftovers asks the connector for the leftovers on the VMs of
// scope; with ownedToo, also for those named after this repository on any
// other VM (a VM whose first backup was killed has no point yet).
func (s *Service) hypervisorLeftovers(ctx context.Context, points []*repo.Manifest, scope []string, ownedToo bool) ([]hypervisor.Leftover, error) {
	keep := map[string]bool{}
	for _, p := range points {
		if p.Checkpoint != "" {
			keep[p.Checkpoint] = true
		}
	}
	owner := hypervisor.OwnerTag(s.Repo.Config().ID)
	var out []hypervisor.Leftover
	if len(scope) > 0 {
		lo, err := s.Conn.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: scope, Keep: keep, Owner: owner})
		if err != nil {
			return nil, err
		}
		out = lo
	}
	if !ownedToo {
		return out, nil
	}
	all, err := s.Conn.Leftovers(ctx, hypervisor.LeftoverQuery{Keep: keep, Owner: owner})
	if err != nil {
		return nil, err
	}
	for _, l := range all {
		if l.Owner == owner && !l.Foreign && !slices.ContainsFunc(out, func(o hypervisor.Leftover) bool {
			return o.VM == l.VM && o.Kind == l.Kind && o.Name == l.Name
		}) {
			out = append(out, l)
		}
	}
	return out, nil
}

func (s *Service) removeLeftover(ctx context.Context, l hypervisor.Leftover) error {
	switch l.Kind {
	case KindRepositoryLock:
		return lock.RemoveStaleID(ctx, s.Repo.Backend(), l.Name)
	case KindPartialImage:
		if !strings.HasSuffix(l.Name, diskwrite.PartialSuffix) {
			return fmt.Errorf("%s is not a partial image", l.Name)
		}
		if openBy(l.Name) != 0 {
			return fmt.Errorf("%s: in use by a running process", l.Name)
		}
		return os.Remove(l.Name)
	}
	return s.Conn.RemoveLeftover(ctx, l)
}

// partialImages finds images of interrupted restores ("*.kura-partial")
// where restores of the points' VMs write by default: beside the disks the
// points were taken from, and in the staging directory. Files a live
// process holds open (a restore running now) are not leftovers.
func (s *Service) partialImages(points []*repo.Manifest, scope []string) []hypervisor.Leftover {
	dirs := map[string]string{} // directory → VM name
	for _, p := range points {
		if !slices.Contains(scope, p.VM.UUID) && !slices.Contains(scope, p.VM.Name) {
			continue
		}
		for _, d := range p.Disks {
			if filepath.IsAbs(d.Source) {
				dirs[filepath.Dir(d.Source)] = p.VM.Name
			}
		}
	}
	if s.ScratchDir != "" {
		dirs[s.ScratchDir] = ""
	}
	var out []hypervisor.Leftover
	for dir, vm := range dirs {
		matches, _ := filepath.Glob(filepath.Join(dir, "*"+diskwrite.PartialSuffix))
		for _, m := range matches {
			if pid := openBy(m); pid != 0 {
				s.log().Debug("partial image in use", "path", m, "pid", pid)
				continue
			}
			out = append(out, hypervisor.Leftover{VM: vm, Kind: KindPartialImage, Name: m,
				Detail: "image of an interrupted restore"})
		}
	}
	slices.SortFunc(out, func(a, b hypervisor.Leftover) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// openBy returns the pid of a process holding path open, or 0.
func openBy(path string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if target, err := os.Readlink(fd); err == nil && target == path {
			var pid int
			_, _ = fmt.Sscanf(fd, "/proc/%d/", &pid)
			return pid
		}
	}
	return 0
}
