package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/retention"
	"github.com/kurabackup/kura/internal/schedule"
)

// SimulateRequest asks what a retention policy keeps.
type SimulateRequest struct {
	Retention config.Retention `json:"retention"`
	// Schedule of the hypothetical backups (cron or every), default daily.
	Schedule schedule.Spec `json:"schedule"`
	// Span is how far back the backups go ("400d"), default a year.
	Span config.Duration `json:"span"`
}

// simulate runs a retention policy over hypothetical backups.
func (s *Server) simulate(rc *reqCtx) (any, error) {
	var req SimulateRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	span := req.Span.D()
	if span <= 0 {
		span = 365 * 24 * time.Hour
	}
	tl, err := timeline(req.Schedule)
	if err != nil {
		return nil, badRequest("schedule: %v", err)
	}
	p := Policy(req.Retention)
	if p.Empty() {
		return nil, badRequest("an empty retention keeps everything")
	}
	to := s.opts.Now()
	sim, err := retention.Simulate(p, to.Add(-span), to, tl)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return sim, nil
}

// timeline is a schedule as retention.Simulate takes it (daily by default).
func timeline(sp schedule.Spec) (retention.Timeline, error) {
	if sp.Cron == "" && sp.Every == 0 {
		return retention.Interval(24 * time.Hour), nil
	}
	return sp.Compile()
}

// GroupCapacity is the storage a group needs, measured and expected.
type GroupCapacity struct {
	Group string `json:"group"`
	VMs   int    `json:"vms"`
	// StoredBytes is what the group's points hold now (new bytes of each).
	StoredBytes int64 `json:"stored_bytes"`
	// ChurnBytes is the new bytes a backup of the group stores, per run
	// (median of each VM's recent points, summed).
	ChurnBytes int64 `json:"churn_bytes_per_backup"`
	// BackupsPerDay is the rate of the group's backup schedules.
	BackupsPerDay float64 `json:"backups_per_day"`
	// KeptPoints is how many points per VM the retention keeps in steady
	// state (simulated over a year of the group's backups).
	KeptPoints int `json:"kept_points_per_vm"`
	// Expected1Year is the expected stored size in a year: the first full
	// copy of each VM plus the churn of every point the retention keeps.
	Expected1Year int64 `json:"expected_bytes_in_1y"`
}

// RepositoryCapacity is a repository's space: now, and when it fills.
type RepositoryCapacity struct {
	Repository    string          `json:"repository"`
	UsedBytes     uint64          `json:"used_bytes,omitempty"`
	SizeBytes     uint64          `json:"size_bytes,omitempty"`
	GrowthPerDay  int64           `json:"growth_bytes_per_day"`
	Expected1Year int64           `json:"expected_bytes_in_1y"`
	FullOn        *time.Time      `json:"full_on,omitempty"` // at the current rate; nil when it never fills within the horizon
	Groups        []GroupCapacity `json:"groups"`
}

// Capacity estimates, per group and repository of cfg, the storage needed
// (seed 001: disk size × churn × points kept) from measured churn — the
// new bytes each point of each VM stored, in the catalog — and the
// retention, and when each local repository fills at the current rate.
func Capacity(ctx context.Context, cat catalog.Catalog, cfg *config.Config, now time.Time) ([]RepositoryCapacity, error) {
	points, err := cat.Points(ctx, catalog.PointFilter{})
	if err != nil {
		return nil, err
	}
	byGroup := map[string][]catalog.Point{} // one pass: groups × points would not scale
	for _, p := range points {
		g := pointGroup(p.Tags)
		byGroup[g] = append(byGroup[g], p)
	}
	byRepo := map[string]*RepositoryCapacity{}
	var out []*RepositoryCapacity
	for _, rc := range cfg.Repositories {
		rcap := &RepositoryCapacity{Repository: rc.Name, Groups: []GroupCapacity{}}
		rcap.UsedBytes, rcap.SizeBytes, _ = fsUsage(rc.Location)
		byRepo[rc.Name] = rcap
		out = append(out, rcap)
	}
	for _, g := range cfg.Groups {
		rc, ok := cfg.RepositoryOf(g)
		if !ok {
			continue
		}
		gc := GroupCapacity{Group: g.Name}
		perVM := map[string][]catalog.Point{}
		for _, p := range byGroup[g.Name] {
			perVM[p.VMUUID] = append(perVM[p.VMUUID], p)
			gc.StoredBytes += p.BytesStored
		}
		gc.VMs = len(perVM)
		var firsts int64
		for _, ps := range perVM {
			firsts += ps[0].BytesStored
			var recent []int64
			for _, p := range ps[max(1, len(ps)-10):] { // the newest incrementals
				recent = append(recent, p.BytesStored)
			}
			if len(recent) > 0 {
				slices.Sort(recent)
				gc.ChurnBytes += recent[len(recent)/2]
			}
		}
		for _, sc := range g.Schedules {
			if sc.Kind != config.KindBackup {
				continue
			}
			if tl, err := timeline(Spec(sc)); err == nil {
				gc.BackupsPerDay += perDay(tl, now)
			}
		}
		if p := Policy(g.Retention); !p.Empty() && gc.BackupsPerDay > 0 {
			every := time.Duration(float64(24*time.Hour) / gc.BackupsPerDay)
			if sim, err := retention.Simulate(p, now.Add(-365*24*time.Hour), now, retention.Interval(every)); err == nil {
				gc.KeptPoints = sim.Kept
			}
		} else if gc.BackupsPerDay > 0 {
			gc.KeptPoints = int(gc.BackupsPerDay * 365) // keeps everything
		}
		gc.Expected1Year = firsts + int64(max(0, gc.KeptPoints-1))*gc.ChurnBytes
		r := byRepo[rc.Name]
		r.Groups = append(r.Groups, gc)
		r.GrowthPerDay += int64(float64(gc.ChurnBytes) * gc.BackupsPerDay)
		r.Expected1Year += gc.Expected1Year
	}
	res := make([]RepositoryCapacity, 0, len(out))
	for _, r := range out {
		if r.SizeBytes > 0 && r.GrowthPerDay > 0 {
			free := int64(r.SizeBytes - r.UsedBytes)
			// It fills only if the steady state needs more than is free.
			if need := r.Expected1Year - int64(r.UsedBytes); need > free {
				t := now.Add(time.Duration(float64(free) / float64(r.GrowthPerDay) * float64(24*time.Hour)))
				r.FullOn = &t
			}
		}
		res = append(res, *r)
	}
	return res, nil
}

// perDay counts a timeline's firings over the next week, per day.
func perDay(tl retention.Timeline, now time.Time) float64 {
	n := 0
	end := now.Add(7 * 24 * time.Hour)
	for t := tl.Next(now); !t.IsZero() && !t.After(end) && n < 100_000; t = tl.Next(t) {
		n++
	}
	return float64(n) / 7
}

func (s *Server) capacityRoute(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Read, ""); err != nil {
		return nil, err
	}
	return s.capacity(rc.ctx)
}

// capacityCache keeps the last estimate: computing it reads every point
// of the catalog (seconds at 800 VMs × 400 points), and it changes only
// when a job ends or the configuration changes.
type capacityCache struct {
	mu  sync.Mutex // held while computing: one computation at a time
	cfg *config.Config
	gen uint64 // jobs ended when it was computed
	res []RepositoryCapacity
}

// capacity returns the estimate for the running configuration, computed
// again when a job ended since (the schedule loop does so in the
// background, so that a request seldom waits).
func (s *Server) capacity(ctx context.Context) ([]RepositoryCapacity, error) {
	cfg, _ := s.config()
	gen := s.jobsEnded.Load()
	c := &s.capCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.res != nil && c.cfg == cfg && c.gen == gen {
		return c.res, nil
	}
	res, err := Capacity(ctx, s.cat, cfg, s.opts.Now())
	if err != nil {
		return nil, err
	}
	c.cfg, c.gen, c.res = cfg, gen, res
	return res, nil
}

// refreshCapacity computes the estimate in the background unless a
// computation runs already.
func (s *Server) refreshCapacity(ctx context.Context) {
	if !s.capCache.mu.TryLock() {
		return
	}
	s.capCache.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if _, err := s.capacity(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("capacity estimate", "err", err)
		}
	}()
}
