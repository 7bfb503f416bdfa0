package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/schedule"
)

// tell records an event in the log and hands it to the notifier, which
// delivers it to every destination whose rules match, in the background.
func (s *Server) tell(ctx context.Context, ev notify.Event) {
	if ev.Time.IsZero() {
		ev.Time = s.opts.Now()
	}
	s.log.Info("event", "kind", ev.Kind, "group", ev.Group, "vm", ev.VM, "job", ev.Job, "subject", ev.Subject)
	s.mu.RLock()
	n := s.notifier
	s.mu.RUnlock()
	if n == nil {
		return
	}
	if err := n.Notify(ctx, ev); err != nil {
		s.log.Warn("notification not queued", "kind", ev.Kind, "err", err)
	}
}

// notifyJob tells about an ended job.
func (s *Server) notifyJob(ctx context.Context, j catalog.Job, res jobResult) {
	s.jobsEnded.Add(1)
	full, err := s.cat.Job(ctx, j.ID)
	if err == nil {
		j = full
	}
	if j.Kind == catalog.JobBackup {
		s.recordRuns(j)
	}
	s.jobMetrics(j, res)
	kind := notify.JobSucceeded
	switch res.state {
	case phase.PartiallyFailed:
		kind = notify.JobPartial
	case phase.Failed:
		kind = notify.JobFailed
	case phase.Cancelled:
		return
	}
	text := fmt.Sprintf("%s job %s of group %s ended %s.", j.Kind, j.ID, j.Group, res.state)
	var failed []string
	for _, v := range j.VMs {
		text += fmt.Sprintf("\n  %s: %s", v.VMName, v.State)
		if v.Error != "" {
			text += " — " + v.Error
		}
		if v.State == phase.VMFailed {
			failed = append(failed, v.VMName)
		}
	}
	if res.err != nil {
		text += "\n" + res.err.Error()
	}
	s.tell(ctx, notify.Event{Kind: kind, Group: j.Group, Job: j.ID, Subject: fmt.Sprintf("%s of %s %s", j.Kind, j.Group, res.state),
		Text: text, Data: map[string]any{"job": j, "failed_vms": failed}})
}

// notifyVerifyProblems tells about damage a verify found.
func (s *Server) notifyVerifyProblems(ctx context.Context, g config.Group, rep *repo.VerifyReport) {
	s.metrics.infoMu.Lock()
	if rc, ok := s.cfgRepoName(g); ok {
		s.metrics.problems[rc] = len(rep.Problems)
	}
	s.metrics.infoMu.Unlock()
	text := fmt.Sprintf("verify found %d damaged objects:", len(rep.Problems))
	for _, p := range rep.Problems {
		text += fmt.Sprintf("\n  %s %s (%d points affected)", p.Kind, p.Object, len(p.Affected))
	}
	text += "\nThe next backups store the damaged data again where they meet it; a new full backup repairs the rest."
	s.tell(ctx, notify.Event{Kind: notify.VerifyProblem, Group: g.Name, Repository: s.repoNameOf(g), Subject: "verify problems in group " + g.Name, Text: text,
		Data: map[string]any{"problems": rep.Problems}})
}

func (s *Server) cfgRepoName(g config.Group) (string, bool) {
	cfg, _ := s.config()
	rc, ok := cfg.RepositoryOf(g)
	return rc.Name, ok
}

// notifyMissed tells about schedule runs that did not happen.
func (s *Server) notifyMissed(ctx context.Context, g config.Group, sc config.Sched, m schedule.Miss) {
	why := map[schedule.MissReason]string{
		schedule.MissedDown:       "the server was down",
		schedule.MissedWindow:     "it could not start within its window",
		schedule.MissedSuperseded: "the next run was due before it could start",
	}[m.Reason]
	s.tell(ctx, notify.Event{Kind: notify.RunMissed, Group: g.Name, Subject: fmt.Sprintf("%d %s runs of %s missed", m.Count, sc.Kind, g.Name),
		Text: fmt.Sprintf("%d runs of the %s schedule of group %s, due from %s to %s, were missed: %s.",
			m.Count, sc.Kind, g.Name, m.First.Format(time.RFC3339), m.Last.Format(time.RFC3339), why),
		Data: map[string]any{"reason": m.Reason, "count": m.Count, "first": m.First, "last": m.Last}})
}

// checkRPO tells, once per crossing, about VMs whose newest good point is
// older than their group's RPO.
func (s *Server) checkRPO(ctx context.Context) {
	sts, err := s.statuses(ctx)
	if err != nil {
		return
	}
	s.rpoMu.Lock()
	defer s.rpoMu.Unlock()
	if s.rpoLate == nil {
		s.rpoLate = map[string]bool{}
	}
	for _, st := range sts {
		late := st.Status == StatusLate
		if late && !s.rpoLate[st.UUID] {
			age := time.Duration(st.AgeSeconds * float64(time.Second)).Round(time.Minute)
			rpo := time.Duration(st.RPOSeconds * float64(time.Second))
			s.tell(ctx, notify.Event{Kind: notify.RPOMissed, VM: st.Name, Group: first(st.Groups),
				Subject: st.Name + " is beyond its RPO",
				Text:    fmt.Sprintf("The newest good recovery point of %s is %s old; the RPO of its group is %s.", st.Name, age, rpo)})
		}
		s.rpoLate[st.UUID] = late
	}
}

func first(s []string) string {
	if len(s) > 0 {
		return s[0]
	}
	return ""
}

func (s *Server) repoNameOf(g config.Group) string {
	n, _ := s.cfgRepoName(g)
	return n
}

// newNotifier builds the notifier of a configuration.
func (s *Server) newNotifier(cfg *config.Config) (*notify.Notifier, error) {
	return notify.New(cfg.Notifications, notify.Options{Logger: s.log, Now: s.opts.Now, OnResult: func(r notify.Result) {
		if r.Status != notify.Delivered {
			s.log.Warn("notification not delivered", "destination", r.Destination, "kind", r.Kind, "status", r.Status,
				"attempts", r.Attempts, "err", r.Err)
		}
	}})
}

// NotifyTestRequest sends a test notification.
type NotifyTestRequest struct {
	// Destination is "webhook:NAME" or "email:ADDRESS".
	Destination string `json:"destination"`
}

func (s *Server) notifyTest(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Configure, ""); err != nil {
		return nil, err
	}
	var req NotifyTestRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	s.mu.RLock()
	n := s.notifier
	s.mu.RUnlock()
	if n == nil {
		return nil, badRequest("no notifications configured")
	}
	err := n.SendTest(rc.ctx, req.Destination)
	s.audit(rc, map[bool]string{true: "ok", false: "failed"}[err == nil], "notifications.test", req.Destination, err)
	if err != nil {
		if errors.Is(err, notify.ErrUnknownDestination) {
			return nil, badRequest("%v (destinations: %v)", err, n.Destinations())
		}
		return nil, &httpError{code: http.StatusBadGateway, err: err}
	}
	return map[string]string{"sent": req.Destination}, nil
}

// dailySummary tells the protection status of everything, once a day.
func (s *Server) dailySummary(ctx context.Context) {
	sts, err := s.statuses(ctx)
	if err != nil {
		return
	}
	count := map[string]int{}
	var text strings.Builder
	for _, st := range sts {
		count[st.Status]++
	}
	fmt.Fprintf(&text, "%d VMs: %d ok, %d late, %d failed, %d never backed up, %d unprotected, %d missing.\n",
		len(sts), count[StatusOK], count[StatusLate], count[StatusFailed], count[StatusNever], count[StatusUnprotected], count[StatusMissing])
	for _, st := range sts {
		if st.Status != StatusOK {
			fmt.Fprintf(&text, "  %s: %s", st.Name, st.Status)
			if st.LastError != "" {
				fmt.Fprintf(&text, " (%s)", st.LastError)
			}
			text.WriteByte('\n')
		}
	}
	s.tell(ctx, notify.Event{Kind: notify.DailySummary, Subject: fmt.Sprintf("daily summary: %d of %d VMs ok", count[StatusOK], len(sts)),
		Text: text.String(), Data: map[string]any{"counts": count}})
}

// FullThreshold is the share of a repository's filesystem in use beyond
// which the server warns (repository-full), once per crossing.
const FullThreshold = 0.9

// checkCapacity warns about local repositories whose filesystem is nearly
// full.
func (s *Server) checkCapacity(ctx context.Context) {
	cfg, _ := s.config()
	s.rpoMu.Lock()
	defer s.rpoMu.Unlock()
	if s.full == nil {
		s.full = map[string]bool{}
	}
	for _, rc := range cfg.Repositories {
		used, total, ok := fsUsage(rc.Location)
		if !ok || total == 0 {
			continue
		}
		full := float64(used)/float64(total) >= FullThreshold
		if full && !s.full[rc.Name] {
			s.tell(ctx, notify.Event{Kind: notify.RepositoryFull, Repository: rc.Name,
				Subject: fmt.Sprintf("repository %s is %.0f%% full", rc.Name, 100*float64(used)/float64(total)),
				Text: fmt.Sprintf("The filesystem of repository %s (%s) is %.0f%% full (%d of %d bytes). Prune, then gc, or add space: a backup that finds no space stores nothing.",
					rc.Name, rc.Location, 100*float64(used)/float64(total), used, total)})
		}
		s.full[rc.Name] = full
	}
}
