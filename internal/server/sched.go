package server

import (
	"context"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
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

// due is one schedule firing.
type due struct {
	id    string
	group config.Group
	sched config.Sched
	at    time.Time
}

// scheduleLoop fires the groups' schedules and does the server's
// housekeeping (inventory, RPO, repository sizes, self-protection).
func (s *Server) scheduleLoop(ctx context.Context) {
	s.refreshInventory(ctx)
	s.loadRuns(ctx)
	s.refreshRepoInfo(ctx)
	s.catchUp(ctx)
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	lastInv, lastInfo := s.opts.Now(), s.opts.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		now := s.opts.Now()
		s.fire(ctx, now)
		if now.Sub(lastInv) >= time.Minute {
			s.refreshInventory(ctx)
			s.checkRPO(ctx)
			lastInv = now
		}
		if now.Sub(lastInfo) >= 10*time.Minute {
			s.refreshRepoInfo(ctx)
			lastInfo = now
		}
		s.housekeeping(ctx, now)
	}
}

// catchUp handles the runs missed while the server was down: once (one
// catch-up run, whatever the number missed) or skip (reported), per
// schedule.
func (s *Server) catchUp(ctx context.Context) {
	cfg, _ := s.config()
	runs, err := s.cat.ScheduleRuns(ctx)
	if err != nil {
		s.log.Error("schedule runs", "err", err)
		return
	}
	now := s.opts.Now()
	for _, g := range cfg.Groups {
		for _, sc := range g.Schedules {
			id := scheduleID(g, sc)
			last, ok := runs[id]
			if !ok {
				// A new schedule starts counting now.
				s.recordRun(ctx, id, now, "")
				continue
			}
			next, err := nextRun(sc, last.Last)
			if err != nil || next.After(now) {
				continue
			}
			missed := 0
			for t := next; !t.After(now) && missed < 1000; missed++ {
				if t, err = nextRun(sc, t); err != nil {
					break
				}
			}
			if sc.CatchUp == "skip" {
				s.log.Warn("runs missed while the server was down: skipped", "schedule", id, "missed", missed, "last", last.Last)
				s.notifyMissed(ctx, g, sc, missed, last.Last)
				s.recordRun(ctx, id, now, "")
				continue
			}
			s.log.Warn("runs missed while the server was down: catching up once", "schedule", id, "missed", missed, "last", last.Last)
			s.launch(ctx, due{id: id, group: g, sched: sc, at: now}, "catch-up:"+id)
		}
	}
}

// fire enqueues every schedule due now. A run that could not start within
// its window after its due time (the server was busy or stopped) is
// skipped and reported.
func (s *Server) fire(ctx context.Context, now time.Time) {
	cfg, _ := s.config()
	runs, err := s.cat.ScheduleRuns(ctx)
	if err != nil {
		s.log.Error("schedule runs", "err", err)
		return
	}
	for _, g := range cfg.Groups {
		for _, sc := range g.Schedules {
			id := scheduleID(g, sc)
			last, ok := runs[id]
			if !ok {
				s.recordRun(ctx, id, now, "")
				continue
			}
			next, err := nextRun(sc, last.Last)
			if err != nil {
				s.log.Error("schedule", "schedule", id, "err", err)
				continue
			}
			if next.After(now) {
				continue
			}
			if sc.Window > 0 && now.Sub(next) > sc.Window.D() {
				s.log.Warn("run skipped: it could not start within its window", "schedule", id, "due", next, "window", sc.Window.String())
				s.notifyMissed(ctx, g, sc, 1, next)
				s.recordRun(ctx, id, now, "")
				continue
			}
			s.launch(ctx, due{id: id, group: g, sched: sc, at: next}, "schedule:"+id)
		}
	}
}

// launch enqueues the job of a firing and records the firing.
func (s *Server) launch(ctx context.Context, d due, trigger string) {
	spec := catalog.JobSpec{Group: d.group.Name, Trigger: trigger}
	var params any
	switch d.sched.Kind {
	case config.KindBackup:
		spec.Kind, params = catalog.JobBackup, backupParams{Full: d.sched.Full, Slot: d.at}
	case config.KindVerify:
		spec.Kind, params = catalog.JobVerify, verifyParams{ReadData: d.sched.ReadData, OutdatedAfter: d.sched.OutdatedAfter}
	case config.KindPrune:
		spec.Kind = catalog.JobPrune
	default:
		return
	}
	j, err := s.enqueue(ctx, spec, params)
	if err != nil {
		s.log.Error("enqueue scheduled job", "schedule", d.id, "err", err)
		return
	}
	s.log.Info("scheduled job queued", "schedule", d.id, "job", j.ID, "due", d.at)
	s.recordRun(ctx, d.id, d.at, j.ID)
}

func (s *Server) recordRun(ctx context.Context, id string, at time.Time, job string) {
	if err := s.cat.RecordScheduleRun(ctx, catalog.ScheduleRun{ID: id, Last: at, Job: job}); err != nil {
		s.log.Error("record schedule run", "schedule", id, "err", err)
	}
}

// nextRun is the first firing of sc after t.
func nextRun(sc config.Sched, t time.Time) (time.Time, error) {
	if sc.Every > 0 {
		return t.Add(sc.Every.D()), nil
	}
	return time.Time{}, fmt.Errorf("cron schedule %q: not supported yet", sc.Cron)
}
