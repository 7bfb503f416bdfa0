// Package service is the one layer through which every kura operation
// runs: backup, restore, export, files, prune with its catalog updates,
// gc, verify, cleanup, catalog rebuild and reconcile. The command line,
// the server's scheduler and its API are thin callers of it: they parse
// their input, call a Service method and render its report.
//
// A Service joins an opened repository, the catalog (a cache of the
// repository; optional) and a hypervisor connection (needed only by the
// operations that touch VMs). It holds no business logic of its own that
// belongs lower: the data path is the engine's, the repository's rules the
// repository's. What it adds is what an operation means as a whole: which
// VMs a selector names, which points a policy removes and what the catalog
// must then forget, what a cleanup may remove.
package service

import (
	"log/slog"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

// Service runs kura's operations on one repository.
type Service struct {
	Repo *repo.Repository
	// Catalog may be nil: jobs still run, the repository being the truth.
	Catalog catalog.Catalog
	// Conn may be nil for operations that touch no VM (prune, gc, verify).
	Conn     hypervisor.Connector
	Logger   *slog.Logger
	Progress progress.Sink
	// ScratchDir holds staging files of restores to other hosts.
	ScratchDir string
	// Job, when set, is a catalog job the caller started and will finish
	// (a server's queued job): the engine records its VMs in it.
	Job string
	// Now returns the current time; tests inject a clock.
	Now func() time.Time
}

// Engine returns an engine running jobs for this service.
func (s *Service) Engine() *engine.Engine {
	return &engine.Engine{Repo: s.Repo, Catalog: s.Catalog, Conn: s.Conn, Logger: s.log(), Progress: s.Progress, Now: s.Now, Job: s.Job}
}

func (s *Service) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}
