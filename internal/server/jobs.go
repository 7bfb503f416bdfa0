package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/retention"
	"github.com/kurabackup/kura/internal/service"
	"github.com/kurabackup/kura/internal/throttle"
)

// GroupTag is the tag the server gives the points of a group's backups.
func GroupTag(group string) string { return "group:" + group }

// backupParams are the parameters of a backup job.
type backupParams struct {
	Full bool `json:"full,omitempty"`
	// Slot is the schedule slot the job was queued for: a VM already
	// backed up in it (by another group) is skipped with a warning.
	Slot time.Time `json:"slot,omitempty"`
}

// verifyParams are the parameters of a verify job.
type verifyParams struct {
	ReadData      bool            `json:"read_data,omitempty"`
	OutdatedAfter config.Duration `json:"outdated_after,omitempty"`
}

// backupSummary is the summary of a group backup: one engine report per
// connection.
type backupSummary struct {
	Connections []connectionReport `json:"connections"`
}

type connectionReport struct {
	Connection string               `json:"connection"`
	URI        string               `json:"uri"`
	Error      string               `json:"error,omitempty"`
	Report     *engine.BackupReport `json:"report,omitempty"`
}

// jobSink is the progress sink of a job: the event hub, and the job's log
// for the VM-level events.
func (s *Server) jobSink(id string, log *slog.Logger) progress.Sink {
	return sink{h: s.hub, job: id, also: func(ev progress.Event) {
		switch ev.Kind {
		case progress.VMStart, progress.VMRetry, progress.VMDone, progress.VMFailed, progress.Message:
			attrs := []any{"event", ev.Kind, "vm", ev.VM}
			if ev.Err != "" {
				attrs = append(attrs, "err", ev.Err)
			}
			if ev.Msg != "" {
				attrs = append(attrs, "msg", ev.Msg)
			}
			for k, v := range ev.Data {
				attrs = append(attrs, k, v)
			}
			log.Info(ev.Kind+" "+ev.VM, attrs...)
		}
	}}
}

func jobDoneEvent(id string, state phase.Job) progress.Event {
	return progress.Event{Kind: progress.JobDone, Job: id, Time: time.Now(), Data: map[string]any{"state": string(state)}}
}

// runBackup backs up a group's VMs on each of its connections.
func (s *Server) runBackup(ctx context.Context, j catalog.Job, g config.Group, p backupParams, log *slog.Logger) jobResult {
	r, rc, err := s.repository(g)
	if err != nil {
		return jobResult{err: err}
	}
	cfg, _ := s.config()
	opts := engine.BackupOptions{
		Full:        p.Full,
		Consistency: hypervisor.ConsistencyMode(g.Consistency),
		Tags:        []string{GroupTag(g.Name)},
		Parallel:    g.Parallel,
		Retries:     g.RetriesOr(),
		RetryDelay:  g.RetryDelay.D(),
		Unprotected: g.Unprotected,
	}
	if opts.Parallel == 0 {
		opts.Parallel = config.DefaultParallel
	}
	if opts.Throttle, err = s.limiter(g); err != nil {
		return jobResult{err: err}
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = config.DefaultRetryDelay
	}
	if !p.Slot.IsZero() {
		opts.Skip = func(vm hypervisor.VM) string {
			if other := s.claimSlot(vm.UUID, p.Slot, g.Name); other != "" {
				log.Warn("vm in several groups: backed up once per schedule slot", "vm", vm.Name, "by_group", other)
				return fmt.Sprintf("backed up in this schedule slot by group %s", other)
			}
			last, err := s.cat.LatestPoint(ctx, r.Config().ID, vm.UUID)
			if err != nil || last.Started.Before(p.Slot) || pointGroup(last.Tags) == g.Name {
				return ""
			}
			log.Warn("vm in several groups: backed up once per schedule slot", "vm", vm.Name, "point", last.ID, "tags", last.Tags)
			return fmt.Sprintf("already backed up in this schedule slot (point %s of group %s)", last.ID, pointGroup(last.Tags))
		}
	}
	perHost, perRepo := orDefault(cfg.Limits.VMsPerHost, config.DefaultVMsPerHost), orDefault(cfg.Limits.VMsPerRepository, config.DefaultVMsPerRepo)
	sum := &backupSummary{}
	ok, failed, skipped := 0, 0, 0
	for _, cn := range cfg.ConnectionsOf(g) {
		cr := connectionReport{Connection: cn.Name, URI: cn.URI}
		opts.Slot = func(ctx context.Context, vm hypervisor.VM) (func(), error) {
			return s.run.slots.acquire(ctx, map[string]int{"host:" + cn.URI: perHost, "repo:" + rc.Name: perRepo})
		}
		conn, err := s.opts.Connect(ctx, cn, log)
		if err != nil {
			cr.Error = err.Error()
			failed++
			sum.Connections = append(sum.Connections, cr)
			log.Error("connect", "connection", cn.Name, "err", err)
			continue
		}
		svc := &service.Service{Repo: r, Catalog: s.cat, Conn: conn, Logger: log, Progress: s.jobSink(j.ID, log),
			ScratchDir: cfg.Server.Scratch(), Job: j.ID}
		rep, err := svc.Backup(ctx, g.Selectors, opts)
		_ = conn.Close()
		if err != nil {
			cr.Error = err.Error()
			failed++
			log.Error("backup", "connection", cn.Name, "err", err)
		}
		if rep != nil {
			cr.Report = rep
			for _, v := range rep.VMs {
				switch v.State {
				case phase.Succeeded:
					ok++
				case phase.Skipped:
					skipped++
				default:
					failed++
				}
			}
		}
		sum.Connections = append(sum.Connections, cr)
	}
	return jobResult{state: phase.Outcome(ok, failed, skipped), summary: sum}
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// runVerify verifies a group's repository.
func (s *Server) runVerify(ctx context.Context, j catalog.Job, g config.Group, p verifyParams, log *slog.Logger) jobResult {
	r, _, err := s.repository(g)
	if err != nil {
		return jobResult{err: err}
	}
	sk := s.jobSink(j.ID, log)
	cs := int64(r.Config().ChunkSize)
	svc := &service.Service{Repo: r, Catalog: s.cat, Logger: log}
	rep, err := svc.Verify(ctx, service.VerifyOptions{ReadData: p.ReadData, OutdatedAfter: p.OutdatedAfter.D(),
		Progress: func(done, total int64) {
			sk.Emit(progress.Event{Kind: progress.DiskProgress, VM: "verify", Disk: "chunks", Done: done * cs, Total: total * cs})
		}})
	if err != nil {
		return jobResult{err: err}
	}
	log.Info("verify done", "points", rep.Points, "chunks", rep.Chunks, "read", rep.ChunksRead, "fresh", rep.ChunksFresh,
		"problems", len(rep.Problems))
	state := phase.Completed
	if len(rep.Problems) > 0 {
		state = phase.PartiallyFailed
		s.notifyVerifyProblems(ctx, g, rep)
	}
	return jobResult{state: state, summary: rep}
}

// Policy is a group's retention policy.
func Policy(r config.Retention) retention.Policy {
	return retention.Policy{Last: r.Last, Within: r.Within.D(), Hourly: r.Hourly, Daily: r.Daily, Weekly: r.Weekly,
		Monthly: r.Monthly, Quarterly: r.Quarterly, Yearly: r.Yearly}
}

// runPrune applies a group's retention to its points, then runs gc.
func (s *Server) runPrune(ctx context.Context, j catalog.Job, g config.Group, log *slog.Logger) jobResult {
	r, _, err := s.repository(g)
	if err != nil {
		return jobResult{err: err}
	}
	svc := &service.Service{Repo: r, Catalog: s.cat, Logger: log}
	rep, err := svc.Prune(ctx, service.PruneOptions{Policy: Policy(g.Retention), Tag: GroupTag(g.Name), GC: true, Wait: time.Hour})
	if err != nil {
		return jobResult{err: err, summary: rep}
	}
	log.Info("prune done", "decisions", len(rep.Decisions), "removed", len(rep.Removed), "kept_in_use", len(rep.Kept))
	return jobResult{state: phase.Completed, summary: rep}
}

// jobEnded tells whom it concerns.
func (s *Server) jobEnded(ctx context.Context, j catalog.Job, res jobResult) {
	s.notifyJob(ctx, j, res)
}

// cleanupInterrupted removes what jobs of a dead server left on their VMs.
func (s *Server) cleanupInterrupted(ctx context.Context, jobs []catalog.Job) {
	cfg, _ := s.config()
	for _, j := range jobs {
		if j.Kind != catalog.JobBackup || j.Group == "" {
			continue
		}
		g, ok := cfg.Group(j.Group)
		if !ok {
			continue
		}
		r, _, err := s.repository(g)
		if err != nil {
			continue
		}
		var vms []string
		for _, v := range j.VMs {
			if v.VMUUID != "" && !slices.Contains(vms, v.VMUUID) {
				vms = append(vms, v.VMUUID)
			}
		}
		for _, cn := range cfg.ConnectionsOf(g) {
			conn, err := s.opts.Connect(ctx, cn, s.log)
			if err != nil {
				continue
			}
			svc := &service.Service{Repo: r, Catalog: s.cat, Conn: conn, Logger: s.log, ScratchDir: cfg.Server.Scratch()}
			rep, err := svc.Cleanup(ctx, service.CleanupOptions{VMs: vms})
			_ = conn.Close()
			if err != nil {
				s.log.Warn("cleanup after an interrupted job", "job", j.ID, "err", err)
				continue
			}
			s.log.Info("cleaned up after an interrupted job", "job", j.ID, "removed", rep.Removed, "failed", len(rep.Failed))
		}
	}
}

// rebuildCatalogs refills the catalog from every repository.
func (s *Server) rebuildCatalogs(ctx context.Context) {
	for name, r := range s.repositories() {
		svc := &service.Service{Repo: r, Catalog: s.cat, Logger: s.log}
		if rep, err := svc.RebuildCatalog(ctx); err != nil {
			s.log.Error("catalog rebuild", "repository", name, "err", err)
		} else {
			s.log.Info("catalog rebuilt", "repository", name, "points", rep.Points)
		}
	}
}

// limiter returns the bandwidth limiter shared by every backup of a group
// (nil when the group has no limit), following the running configuration.
func (s *Server) limiter(g config.Group) (*throttle.Limiter, error) {
	sched, err := g.Bandwidth.Compile()
	if err != nil {
		return nil, fmt.Errorf("group %s bandwidth: %w", g.Name, err)
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.limiters[g.Name]
	if g.Bandwidth.Limit == 0 && len(g.Bandwidth.Windows) == 0 {
		delete(s.limiters, g.Name)
		return nil, nil
	}
	if l == nil {
		if s.limiters == nil {
			s.limiters = map[string]*throttle.Limiter{}
		}
		l = throttle.NewLimiter(sched, nil)
		s.limiters[g.Name] = l
	} else {
		l.SetSchedule(sched)
	}
	return l, nil
}

// claimSlot records that group backs vm up in the schedule slot and
// returns "" — or, when another group claimed it first, that group.
func (s *Server) claimSlot(vm string, slot time.Time, group string) string {
	s.slotMu.Lock()
	defer s.slotMu.Unlock()
	if s.slots == nil {
		s.slots = map[string]string{}
	}
	key := vm + "@" + slot.UTC().Format(time.RFC3339)
	if other, ok := s.slots[key]; ok && other != group {
		return other
	}
	s.slots[key] = group
	if len(s.slots) > 100_000 {
		clear(s.slots) // claims matter within one slot only
		s.slots[key] = group
	}
	return ""
}
