package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/repo"
)

// metrics are the server's Prometheus metrics: counters updated as jobs
// end, and gauges read from the catalog at each scrape.
type metrics struct {
	reg       *prometheus.Registry
	jobs      *prometheus.CounterVec
	vmJob     *prometheus.GaugeVec // last backup duration per VM
	vmRead    *prometheus.GaugeVec
	vmStored  *prometheus.GaugeVec
	infoMu    sync.Mutex
	info      map[string]*repo.Info // by repository name, refreshed in the background
	infoAt    time.Time
	problems  map[string]int
	collector *stateCollector
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		jobs:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kura_jobs_total", Help: "Jobs ended, by kind and result."}, []string{"kind", "state"}),
		vmJob:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kura_vm_last_backup_duration_seconds", Help: "Duration of the VM's last backup."}, []string{"vm", "uuid"}),
		vmRead:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kura_vm_last_backup_bytes_read", Help: "Bytes read by the VM's last backup."}, []string{"vm", "uuid"}),
		vmStored: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kura_vm_last_backup_bytes_stored", Help: "Bytes stored by the VM's last backup."}, []string{"vm", "uuid"}),
		info:     map[string]*repo.Info{},
		problems: map[string]int{},
	}
	m.collector = &stateCollector{s: s}
	m.reg.MustRegister(m.jobs, m.vmJob, m.vmRead, m.vmStored, m.collector,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// stateCollector reads the protection state at each scrape.
type stateCollector struct{ s *Server }

var (
	descNewest = prometheus.NewDesc("kura_vm_newest_good_point_timestamp_seconds",
		"Start time of the VM's newest recovery point that is not damaged.", []string{"vm", "uuid"}, nil)
	descPoints  = prometheus.NewDesc("kura_vm_points", "Recovery points of the VM.", []string{"vm", "uuid"}, nil)
	descRPO     = prometheus.NewDesc("kura_group_rpo_violations", "VMs of the group whose newest good point is older than its RPO.", []string{"group"}, nil)
	descQueue   = prometheus.NewDesc("kura_queue_depth", "Jobs queued, not started.", nil, nil)
	descRunning = prometheus.NewDesc("kura_jobs_running", "Jobs running.", nil, nil)
	descRepo    = prometheus.NewDesc("kura_repository_stored_bytes", "Bytes stored in the repository.", []string{"repository"}, nil)
	descDedup   = prometheus.NewDesc("kura_repository_dedup_ratio", "Logical non-zero bytes over unique bytes.", []string{"repository"}, nil)
	descComp    = prometheus.NewDesc("kura_repository_compression_ratio", "Unique bytes over stored bytes.", []string{"repository"}, nil)
	descProbs   = prometheus.NewDesc("kura_verify_problems", "Damaged objects the newest verify found.", []string{"repository"}, nil)
	descDamaged = prometheus.NewDesc("kura_vm_damaged_points", "Damaged recovery points of the VM.", []string{"vm", "uuid"}, nil)
	descBooted  = prometheus.NewDesc("kura_vm_verified_boot_timestamp_seconds",
		"When the VM's newest point that passed boot verification was checked.", []string{"vm", "uuid"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNewest, descPoints, descRPO, descQueue, descRunning, descRepo, descDedup, descComp, descProbs, descDamaged, descBooted} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sts, err := s.statuses(ctx)
	if err == nil {
		rpo := map[string]int{}
		for _, st := range sts {
			if !st.NewestGoodAt.IsZero() {
				ch <- prometheus.MustNewConstMetric(descNewest, prometheus.GaugeValue, float64(st.NewestGoodAt.UnixNano())/1e9, st.Name, st.UUID)
			}
			ch <- prometheus.MustNewConstMetric(descPoints, prometheus.GaugeValue, float64(st.Points), st.Name, st.UUID)
			ch <- prometheus.MustNewConstMetric(descDamaged, prometheus.GaugeValue, float64(st.Damaged), st.Name, st.UUID)
			if !st.VerifiedBootAt.IsZero() {
				ch <- prometheus.MustNewConstMetric(descBooted, prometheus.GaugeValue, float64(st.VerifiedBootAt.UnixNano())/1e9, st.Name, st.UUID)
			}
			for _, g := range st.Groups {
				if _, ok := rpo[g]; !ok {
					rpo[g] = 0
				}
				if st.Status == StatusLate || st.Status == StatusNever && st.RPOSeconds > 0 {
					rpo[g]++
				}
			}
		}
		cfg, _ := s.config()
		for _, g := range cfg.Groups {
			ch <- prometheus.MustNewConstMetric(descRPO, prometheus.GaugeValue, float64(rpo[g.Name]), g.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.run.depth(ctx)))
	s.run.mu.Lock()
	running := len(s.run.running)
	s.run.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(running))
	m := s.metrics
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	for name, in := range m.info {
		ch <- prometheus.MustNewConstMetric(descRepo, prometheus.GaugeValue, float64(in.StoredBytes), name)
		ch <- prometheus.MustNewConstMetric(descDedup, prometheus.GaugeValue, in.DedupRatio, name)
		ch <- prometheus.MustNewConstMetric(descComp, prometheus.GaugeValue, in.CompressionRatio, name)
	}
	for name, n := range m.problems {
		ch <- prometheus.MustNewConstMetric(descProbs, prometheus.GaugeValue, float64(n), name)
	}
}

// refreshRepoInfo recomputes the repositories' sizes (a listing of every
// chunk: done in the background every 10 minutes, not at each scrape).
func (s *Server) refreshRepoInfo(ctx context.Context) {
	for name, r := range s.repositories() {
		in, err := r.Info(ctx)
		if err != nil {
			s.log.Warn("repository info", "repository", name, "err", err)
			continue
		}
		s.metrics.infoMu.Lock()
		s.metrics.info[name] = in
		s.metrics.infoAt = s.opts.Now()
		s.metrics.infoMu.Unlock()
	}
}

// jobMetrics counts an ended job and its VMs' last backups.
func (s *Server) jobMetrics(j catalog.Job, res jobResult) {
	s.metrics.jobs.WithLabelValues(j.Kind, string(res.state)).Inc()
	if sum, ok := res.summary.(*backupSummary); ok {
		for _, c := range sum.Connections {
			if c.Report == nil {
				continue
			}
			for _, v := range c.Report.VMs {
				if v.Point == nil {
					continue
				}
				p := v.Point
				s.metrics.vmJob.WithLabelValues(v.VM, v.UUID).Set(p.Finished.Sub(p.Started).Seconds())
				s.metrics.vmRead.WithLabelValues(v.VM, v.UUID).Set(float64(p.Stats.BytesRead))
				s.metrics.vmStored.WithLabelValues(v.VM, v.UUID).Set(float64(p.Stats.BytesStored))
			}
		}
	}
}

// metricsHandler serves /metrics to a principal allowed to read (an
// auditor's token is the usual scraper credential).
func (s *Server) metricsHandler(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if err == nil {
		err = p.Check(auth.Read, "")
		if !p.SeesAll() {
			err = auth.ErrForbidden
		}
	}
	if err != nil {
		writeJSON(w, status(err), apiError{Error: err.Error()})
		return
	}
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
