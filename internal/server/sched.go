package server

import (
	"context"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/schedule"
)

// scheduleID identifies a schedule across restarts: its group, kind and
// timing (editing the timing makes it a new schedule).
func scheduleID(g config.Group, sc config.Sched) string {
	timing := sc.Cron
	if timing == "" {
		timing = "every " + sc.Every.String()
	}
	return g.Name + "/" + sc.Kind + "/" + timing
}

// Spec is a configured schedule as the planner takes it.
func Spec(sc config.Sched) schedule.Spec {
	return schedule.Spec{Cron: sc.Cron, Every: sc.Every.D(), Timezone: sc.Timezone, Window: sc.Window.D(), CatchUp: sc.CatchUp}
}

// firing is what a schedule id stands for.
type firing struct {
	group config.Group
	sched config.Sched
}

// entries lists the schedules of a configuration for the planner.
func entries(cfg *config.Config) ([]schedule.Entry, map[string]firing) {
	var es []schedule.Entry
	by := map[string]firing{}
	for _, g := range cfg.Groups {
		for _, sc := range g.Schedules {
			id := scheduleID(g, sc)
			if _, dup := by[id]; dup {
				continue // the same schedule twice in a group fires once
			}
			by[id] = firing{group: g, sched: sc}
			es = append(es, schedule.Entry{ID: id, Spec: Spec(sc)})
		}
	}
	return es, by
}

// scheduleLoop fires the groups' schedules (package schedule plans them:
// time zones, start windows, catch-up of runs missed while the server was
// down) and does the server's housekeeping (inventory, RPO, repository
// sizes, self-protection, the daily summary).
func (s *Server) scheduleLoop(ctx context.Context) {
	s.refreshInventory(ctx)
	s.loadRuns(ctx)
	s.refreshRepoInfo(ctx)
	s.refreshCapacity(ctx)
	cfg, _ := s.config()
	es, by := entries(cfg)
	planner, err := schedule.NewPlanner(ctx, es, s.cat, s.started)
	if err != nil {
		s.log.Error("schedules not planned", "err", err)
		return
	}
	s.plannerMu.Lock()
	s.planner = planner
	s.plannerMu.Unlock()
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	lastInv, lastInfo := s.opts.Now(), s.opts.Now()
	for {
		now := s.opts.Now()
		if cur, _ := s.config(); cur != cfg {
			cfg = cur
			es, by = entries(cfg)
			if err := planner.Update(ctx, es, now); err != nil {
				s.log.Error("schedules not replanned", "err", err)
			}
		}
		s.fire(ctx, planner, by, now)
		if now.Sub(lastInv) >= time.Minute {
			s.refreshInventory(ctx)
			s.checkRPO(ctx)
			s.checkCapacity(ctx)
			s.refreshCapacity(ctx)
			lastInv = now
		}
		if now.Sub(lastInfo) >= 10*time.Minute {
			s.refreshRepoInfo(ctx)
			lastInfo = now
		}
		s.housekeeping(ctx, now)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// fire queues the runs due now and reports the runs missed.
func (s *Server) fire(ctx context.Context, planner *schedule.Planner, by map[string]firing, now time.Time) {
	plan := planner.Plan(now)
	for _, r := range plan.Due {
		f := by[r.ID]
		trigger := "schedule:" + r.ID
		if r.CatchUp {
			trigger = "catch-up:" + r.ID
			s.log.Warn("catching up a run missed while the server was down", "schedule", r.ID, "slot", r.Slot)
		}
		job, err := s.launch(ctx, f, r.Slot, trigger)
		if err != nil {
			s.log.Error("queue scheduled job", "schedule", r.ID, "err", err)
			continue
		}
		if err := planner.Record(ctx, catalog.ScheduleRun{ID: r.ID, Last: r.Slot, Job: job}); err != nil {
			s.log.Error("record schedule run", "schedule", r.ID, "err", err)
		}
	}
	for _, m := range plan.Missed {
		f := by[m.ID]
		s.log.Warn("scheduled runs missed", "schedule", m.ID, "reason", m.Reason, "count", m.Count, "first", m.First, "last", m.Last)
		s.notifyMissed(ctx, f.group, f.sched, m)
		if err := planner.Record(ctx, catalog.ScheduleRun{ID: m.ID, Last: m.Last}); err != nil {
			s.log.Error("record missed runs", "schedule", m.ID, "err", err)
		}
	}
}

// launch queues the job of a schedule firing at slot.
func (s *Server) launch(ctx context.Context, f firing, slot time.Time, trigger string) (string, error) {
	spec := catalog.JobSpec{Group: f.group.Name, Trigger: trigger}
	var params any
	switch f.sched.Kind {
	case config.KindBackup:
		spec.Kind, params = catalog.JobBackup, backupParams{Full: f.sched.Full, Slot: slot}
	case config.KindVerify:
		spec.Kind, params = catalog.JobVerify, verifyParams{ReadData: f.sched.ReadData, OutdatedAfter: f.sched.OutdatedAfter}
	case config.KindPrune:
		spec.Kind = catalog.JobPrune
	case config.KindCopy:
		spec.Kind = catalog.JobCopy
	case config.KindBootVerify:
		spec.Kind, params = catalog.JobBootVerify, bootParams{Probes: f.sched.Probes, Timeout: f.sched.Timeout, Parallel: f.sched.Parallel}
	default:
		return "", fmt.Errorf("schedule kind %q", f.sched.Kind)
	}
	j, err := s.enqueue(ctx, spec, params)
	if err != nil {
		return "", err
	}
	s.log.Info("scheduled job queued", "group", f.group.Name, "kind", f.sched.Kind, "job", j.ID, "slot", slot)
	return j.ID, nil
}

// ScheduleInfo is one schedule and when it runs next.
type ScheduleInfo struct {
	ID       string        `json:"id"`
	Group    string        `json:"group"`
	Kind     string        `json:"kind"`
	Schedule schedule.Spec `json:"schedule"`
	Next     time.Time     `json:"next"`
	Last     time.Time     `json:"last,omitzero"`
	LastJob  string        `json:"last_job,omitempty"`
}

func (s *Server) listSchedules(rc *reqCtx) (any, error) {
	runs, err := s.cat.ScheduleRuns(rc.ctx)
	if err != nil {
		return nil, err
	}
	s.plannerMu.Lock()
	planner := s.planner
	s.plannerMu.Unlock()
	out := []ScheduleInfo{}
	for _, g := range rc.cfg.Groups {
		if !rc.p.Allows("read", g.Name) {
			continue
		}
		for _, sc := range g.Schedules {
			id := scheduleID(g, sc)
			si := ScheduleInfo{ID: id, Group: g.Name, Kind: sc.Kind, Schedule: Spec(sc), Last: runs[id].Last, LastJob: runs[id].Job}
			if planner != nil {
				si.Next = planner.Next(id)
			}
			out = append(out, si)
		}
	}
	return out, nil
}
