package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/phase"
)

// runner takes queued jobs from the catalog and runs them: at most
// limits.jobs at once, one job per group at a time (a group's jobs run in
// the order they were queued), each with its own context (cancelled on
// request or when the server stops), heartbeat and log.
type runner struct {
	s *Server

	mu      sync.Mutex
	running map[string]*runningJob // by job id
	slots   *slots
	wg      sync.WaitGroup
}

type runningJob struct {
	job    catalog.Job
	cancel context.CancelFunc
}

func newRunner(s *Server) *runner {
	return &runner{s: s, running: map[string]*runningJob{}, slots: newSlots()}
}

// loop runs until ctx ends, then cancels the running jobs and waits for
// them to end.
func (r *runner) loop(ctx context.Context) {
	t := time.NewTicker(r.s.opts.Tick)
	defer t.Stop()
	for {
		r.startQueued(ctx)
		r.checkCancels(ctx)
		select {
		case <-ctx.Done():
			r.mu.Lock()
			for _, rj := range r.running {
				rj.cancel()
			}
			r.mu.Unlock()
			r.wg.Wait()
			return
		case <-t.C:
		case <-r.s.wake:
		}
	}
}

// depth is the number of queued jobs (for metrics).
func (r *runner) depth(ctx context.Context) int {
	jobs, err := r.s.cat.FindJobs(ctx, catalog.JobFilter{State: phase.New})
	if err != nil {
		return 0
	}
	return len(jobs)
}

// startQueued claims and starts queued jobs, oldest first, while there is
// room.
func (r *runner) startQueued(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	queued, err := r.s.cat.FindJobs(ctx, catalog.JobFilter{State: phase.New})
	if err != nil {
		r.s.log.Error("read the job queue", "err", err)
		return
	}
	slices.Reverse(queued) // FindJobs lists newest first
	cfg, _ := r.s.config()
	limit := cfg.Limits.Jobs
	if limit <= 0 {
		limit = config.DefaultJobs
	}
	for _, j := range queued {
		r.mu.Lock()
		busy := len(r.running) >= limit
		for _, rj := range r.running {
			busy = busy || (j.Group != "" && rj.job.Group == j.Group)
		}
		r.mu.Unlock()
		if busy {
			continue
		}
		claimed, err := r.s.cat.ClaimJob(ctx, j.ID)
		if err != nil {
			continue // another runner took it, or it was cancelled
		}
		jctx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		r.running[j.ID] = &runningJob{job: claimed, cancel: cancel}
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer cancel()
			r.execute(jctx, claimed)
			r.mu.Lock()
			delete(r.running, claimed.ID)
			r.mu.Unlock()
			r.s.poke() // the group's next job may start
		}()
	}
}

// checkCancels cancels the running jobs whose cancellation was requested
// (through the API, possibly of another server process).
func (r *runner) checkCancels(ctx context.Context) {
	r.mu.Lock()
	ids := make([]string, 0, len(r.running))
	for id := range r.running {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		j, err := r.s.cat.Job(ctx, id)
		if err != nil || !j.CancelRequested {
			continue
		}
		r.mu.Lock()
		if rj := r.running[id]; rj != nil {
			rj.cancel()
		}
		r.mu.Unlock()
	}
}

// jobResult is what a job's execution returns: its final phase, summary
// and error (the job's own, beside per-VM results).
type jobResult struct {
	state   phase.Job
	summary any
	err     error
}

// execute runs one claimed job to its end and records the end.
func (r *runner) execute(ctx context.Context, j catalog.Job) {
	jl := newJobLog(r.s.cat, j.ID, r.s.log)
	log := slog.New(jl.handler(r.s.log.Handler())).With("job", j.ID, "kind", j.Kind, "group", j.Group)
	stopBeat := r.heartbeat(ctx, j.ID)
	log.Info("job started", "trigger", j.Trigger)
	started := r.s.opts.Now()
	res := r.dispatch(ctx, j, log)
	if res.err != nil && res.state == "" {
		res.state = phase.Failed
	}
	if ctx.Err() != nil && res.state != phase.Completed {
		res.state = phase.Cancelled
	}
	stopBeat()
	fctx := context.WithoutCancel(ctx)
	if res.err != nil {
		log.Error("job failed", "err", res.err)
		res.summary = map[string]any{"error": res.err.Error(), "report": res.summary}
	}
	log.Info("job ended", "state", res.state, "took", r.s.opts.Now().Sub(started).Round(time.Millisecond).String())
	jl.flush(fctx)
	if err := r.s.cat.FinishJob(fctx, j.ID, res.state, res.summary); err != nil {
		r.s.log.Error("catalog: finish job", "job", j.ID, "err", err)
	}
	r.s.hub.publish(j.ID, jobDoneEvent(j.ID, res.state))
	r.s.hub.finish(j.ID)
	r.s.jobEnded(fctx, j, res)
}

// dispatch runs the job's kind.
func (r *runner) dispatch(ctx context.Context, j catalog.Job, log *slog.Logger) jobResult {
	cfg, _ := r.s.config()
	var g config.Group
	if j.Group != "" {
		var ok bool
		if g, ok = cfg.Group(j.Group); !ok {
			return jobResult{err: fmt.Errorf("group %s is no longer configured", j.Group)}
		}
	}
	switch j.Kind {
	case catalog.JobBackup:
		var p backupParams
		if err := unmarshalParams(j.Params, &p); err != nil {
			return jobResult{err: err}
		}
		return r.s.runBackup(ctx, j, g, p, log)
	case catalog.JobVerify:
		var p verifyParams
		if err := unmarshalParams(j.Params, &p); err != nil {
			return jobResult{err: err}
		}
		return r.s.runVerify(ctx, j, g, p, log)
	case catalog.JobPrune:
		return r.s.runPrune(ctx, j, g, log)
	case catalog.JobCopy:
		return r.s.runCopy(ctx, j, g, log)
	case catalog.JobBootVerify:
		var p bootParams
		if err := unmarshalParams(j.Params, &p); err != nil {
			return jobResult{err: err}
		}
		return r.s.runBootVerify(ctx, j, g, p, log)
	case catalog.JobRestore:
		var p restoreParams
		if err := unmarshalParams(j.Params, &p); err != nil {
			return jobResult{err: err}
		}
		return r.s.runRestore(ctx, j, p, log)
	case catalog.JobExport:
		var p exportParams
		if err := unmarshalParams(j.Params, &p); err != nil {
			return jobResult{err: err}
		}
		return r.s.runExport(ctx, j, p, log)
	}
	return jobResult{err: fmt.Errorf("job kind %q cannot run on the server", j.Kind)}
}

func unmarshalParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("job parameters: %w", err)
	}
	return nil
}

// heartbeat tells the catalog the job is alive until the returned
// function is called.
func (r *runner) heartbeat(ctx context.Context, id string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := r.s.cat.Heartbeat(context.WithoutCancel(ctx), id); err != nil {
					r.s.log.Warn("catalog: job heartbeat", "job", id, "err", err)
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// enqueue queues a job and wakes the runner.
func (s *Server) enqueue(ctx context.Context, spec catalog.JobSpec, params any) (catalog.Job, error) {
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			return catalog.Job{}, err
		}
		spec.Params = raw
	}
	j, err := s.cat.EnqueueJob(ctx, spec)
	if err != nil {
		return catalog.Job{}, err
	}
	s.poke()
	return j, nil
}

// slots bound how many VMs are backed up at once per host and per
// repository, across jobs.
type slots struct {
	mu   sync.Mutex
	cond *sync.Cond
	used map[string]int
}

func newSlots() *slots {
	s := &slots{used: map[string]int{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// acquire takes one slot of each key (waiting while any is at its limit)
// and returns the function giving them back.
func (s *slots) acquire(ctx context.Context, keys map[string]int) (func(), error) {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		free := true
		for k, limit := range keys {
			free = free && s.used[k] < limit
		}
		if free {
			break
		}
		s.cond.Wait()
	}
	for k := range keys {
		s.used[k]++
	}
	return func() {
		s.mu.Lock()
		for k := range keys {
			s.used[k]--
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}, nil
}

var errNoRepository = errors.New("no repository")
