package server

import (
	"context"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
)

// Event kinds the server notifies about.
const (
	EventJobSucceeded  = "job-succeeded"
	EventJobPartial    = "job-partial"
	EventJobFailed     = "job-failed"
	EventRPOMissed     = "rpo-missed"
	EventVerifyProblem = "verify-problem"
	EventRepoFull      = "repository-full"
	EventDailySummary  = "daily-summary"
	EventRunMissed     = "run-missed"
)

// event is something to tell.
type event struct {
	Kind    string
	Time    time.Time
	Group   string
	VM      string
	Job     string
	Subject string
	Text    string
	Data    map[string]any
}

// tell records an event in the log and hands it to the notifier.
func (s *Server) tell(ctx context.Context, ev event) {
	if ev.Time.IsZero() {
		ev.Time = s.opts.Now()
	}
	s.log.Info("event", "kind", ev.Kind, "group", ev.Group, "vm", ev.VM, "job", ev.Job, "subject", ev.Subject)
	s.deliver(ctx, ev)
}

// notifyJob tells about an ended job.
func (s *Server) notifyJob(ctx context.Context, j catalog.Job, res jobResult) {
	full, err := s.cat.Job(ctx, j.ID)
	if err == nil {
		j = full
	}
	if j.Kind == catalog.JobBackup {
		s.recordRuns(j)
	}
	s.jobMetrics(j, res)
	kind := EventJobSucceeded
	switch res.state {
	case phase.PartiallyFailed:
		kind = EventJobPartial
	case phase.Failed:
		kind = EventJobFailed
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
	s.tell(ctx, event{Kind: kind, Group: j.Group, Job: j.ID, Subject: fmt.Sprintf("kura: %s of %s %s", j.Kind, j.Group, res.state),
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
	s.tell(ctx, event{Kind: EventVerifyProblem, Group: g.Name, Subject: "kura: verify problems in group " + g.Name, Text: text,
		Data: map[string]any{"problems": rep.Problems}})
}

func (s *Server) cfgRepoName(g config.Group) (string, bool) {
	cfg, _ := s.config()
	rc, ok := cfg.RepositoryOf(g)
	return rc.Name, ok
}

// notifyMissed tells about schedule runs that did not happen.
func (s *Server) notifyMissed(ctx context.Context, g config.Group, sc config.Sched, n int, since time.Time) {
	s.tell(ctx, event{Kind: EventRunMissed, Group: g.Name, Subject: fmt.Sprintf("kura: %d %s runs of %s missed", n, sc.Kind, g.Name),
		Text: fmt.Sprintf("%d runs of the %s schedule of group %s were missed since %s (server down, or could not start within its window).",
			n, sc.Kind, g.Name, since.Format(time.RFC3339))})
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
			s.tell(ctx, event{Kind: EventRPOMissed, VM: st.Name, Group: first(st.Groups),
				Subject: "kura: " + st.Name + " is beyond its RPO",
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

// deliver hands an event to the notifier.
func (s *Server) deliver(ctx context.Context, ev event) {}
