package server

import (
	"context"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/phase"
)

// inventory is the server's picture of its hypervisors, refreshed in the
// background (every minute, and before each backup job) so that API
// requests never wait on a hypervisor.
type inventory struct {
	mu   sync.RWMutex
	at   time.Time
	vms  []invVM
	errs map[string]string // by connection name
	// lastRun is each VM's outcome in its newest backup job.
	lastRun map[string]catalog.JobVM // by VM UUID (or name:NAME)
	// groups is the membership of the VMs (by UUID) as of the inventory
	// and configuration groupsCfg: evaluated once per change, not per
	// request.
	groups    map[string][]string
	groupsCfg *config.Config
}

// membership returns the groups of each VM for the running configuration.
func (s *Server) membership(cfg *config.Config) ([]invVM, map[string][]string) {
	s.inv.mu.RLock()
	vms, groups, gc := s.inv.vms, s.inv.groups, s.inv.groupsCfg
	s.inv.mu.RUnlock()
	if gc == cfg && groups != nil {
		return vms, groups
	}
	groups = groupsOf(cfg, vms)
	s.inv.mu.Lock()
	if len(s.inv.vms) == len(vms) { // not replaced meanwhile
		s.inv.groups, s.inv.groupsCfg = groups, cfg
	}
	s.inv.mu.Unlock()
	return vms, groups
}

type invVM struct {
	hypervisor.VM
	Connection string
}

// refreshInventory lists the VMs of every connection.
func (s *Server) refreshInventory(ctx context.Context) {
	cfg, _ := s.config()
	var vms []invVM
	errs := map[string]string{}
	for _, cn := range cfg.Connections {
		conn, err := s.opts.Connect(ctx, cn, s.log)
		if err != nil {
			errs[cn.Name] = err.Error()
			continue
		}
		list, err := conn.ListVMs(ctx)
		_ = conn.Close()
		if err != nil {
			errs[cn.Name] = err.Error()
			continue
		}
		for _, vm := range list {
			vms = append(vms, invVM{VM: vm, Connection: cn.Name})
		}
	}
	s.inv.mu.Lock()
	s.inv.vms, s.inv.errs, s.inv.at = vms, errs, s.opts.Now()
	s.inv.groups, s.inv.groupsCfg = nil, nil
	s.inv.mu.Unlock()
}

// recordRuns remembers the VM outcomes of a finished backup job.
func (s *Server) recordRuns(j catalog.Job) {
	s.inv.mu.Lock()
	defer s.inv.mu.Unlock()
	if s.inv.lastRun == nil {
		s.inv.lastRun = map[string]catalog.JobVM{}
	}
	for _, v := range j.VMs {
		key := v.VMUUID
		if key == "" {
			key = "name:" + v.VMName
		}
		s.inv.lastRun[key] = v
	}
}

// loadRuns fills lastRun from the newest backup jobs at start.
func (s *Server) loadRuns(ctx context.Context) {
	jobs, err := s.cat.FindJobs(ctx, catalog.JobFilter{Kind: catalog.JobBackup, Limit: 500})
	if err != nil {
		return
	}
	slices.Reverse(jobs)
	for _, j := range jobs {
		s.recordRuns(j)
	}
}

// groupsOf evaluates every group's selectors on the inventory: the groups
// of each VM (by UUID).
func groupsOf(cfg *config.Config, vms []invVM) map[string][]string {
	out := map[string][]string{}
	for _, g := range cfg.Groups {
		sels, err := hypervisor.ParseSelectors(g.Selectors)
		if err != nil {
			continue
		}
		conns := map[string]bool{}
		for _, cn := range cfg.ConnectionsOf(g) {
			conns[cn.Name] = true
		}
		var pool []hypervisor.VM
		for _, v := range vms {
			if conns[v.Connection] {
				pool = append(pool, v.VM)
			}
		}
		matched, _ := hypervisor.SelectEach(context.Background(), pool, sels, nil)
		for _, vm := range matched {
			out[vm.UUID] = append(out[vm.UUID], g.Name)
		}
	}
	return out
}

// Protection states of a VM.
const (
	StatusOK          = "ok"          // newest good point within the RPO
	StatusLate        = "late"        // newest good point older than the RPO
	StatusFailed      = "failed"      // its newest backup failed
	StatusNever       = "never"       // no point yet
	StatusUnprotected = "unprotected" // matched by no group
	StatusMissing     = "missing"     // has points, no longer on its hypervisor
)

// VMStatus is one VM's protection status.
type VMStatus struct {
	Name          string    `json:"name"`
	UUID          string    `json:"uuid"`
	Connection    string    `json:"connection,omitempty"`
	State         string    `json:"state,omitempty"`
	Tags          []string  `json:"tags,omitempty"`
	Groups        []string  `json:"groups"`
	Status        string    `json:"status"`
	Points        int       `json:"points"`
	Damaged       int       `json:"damaged"`
	NewestPoint   string    `json:"newest_point,omitempty"`
	NewestGood    string    `json:"newest_good_point,omitempty"`
	NewestGoodAt  time.Time `json:"newest_good_time"`
	AgeSeconds    float64   `json:"age_seconds,omitempty"`
	RPOSeconds    float64   `json:"rpo_seconds,omitempty"`
	LastJob       string    `json:"last_job,omitempty"`
	LastResult    string    `json:"last_result,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	BytesStored   int64     `json:"bytes_stored"`
	Unprotectable []string  `json:"unprotectable_disks,omitempty"`
	// VerifiedBoot is the newest point that booted and passed its probes
	// (boot-verify), and when it was checked.
	VerifiedBoot   string    `json:"verified_boot_point,omitempty"`
	VerifiedBootAt time.Time `json:"verified_boot_time"`
}

// statuses computes every VM's protection status: the live inventory, the
// catalog's points (one query) and the newest job results.
func (s *Server) statuses(ctx context.Context) ([]VMStatus, error) {
	cfg, _ := s.config()
	vms, groups := s.membership(cfg)
	s.inv.mu.RLock()
	last := s.inv.lastRun
	s.inv.mu.RUnlock()
	rpoOf := make(map[string]time.Duration, len(cfg.Groups))
	for _, g := range cfg.Groups {
		rpoOf[g.Name] = g.RPO.D()
	}
	cat, err := s.cat.VMStatuses(ctx, "")
	if err != nil {
		return nil, err
	}
	boots, err := s.cat.LatestVerifiedBoots(ctx)
	if err != nil {
		return nil, err
	}
	byUUID := make(map[string]catalog.VMStatus, len(cat))
	for _, c := range cat {
		byUUID[c.UUID] = c
	}
	now := s.opts.Now()
	seen := map[string]bool{}
	out := make([]VMStatus, 0, len(vms)+len(cat))
	add := func(st VMStatus, c catalog.VMStatus, present bool) {
		st.Points, st.Damaged, st.BytesStored = c.Points, c.Damaged, c.BytesStored
		st.NewestPoint, st.NewestGood, st.NewestGoodAt = c.NewestID, c.NewestGoodID, c.NewestGood
		if b, ok := boots[st.UUID]; ok {
			st.VerifiedBoot, st.VerifiedBootAt = b.PointID, b.Finished
		}
		var rpo time.Duration
		for _, gn := range st.Groups {
			if r := rpoOf[gn]; r > 0 && (rpo == 0 || r < rpo) {
				rpo = r
			}
		}
		st.RPOSeconds = rpo.Seconds()
		if !c.NewestGood.IsZero() {
			st.AgeSeconds = now.Sub(c.NewestGood).Seconds()
		}
		if r, ok := last[st.UUID]; ok {
			st.LastJob, st.LastResult, st.LastError = r.JobID, string(r.State), r.Error
		}
		switch {
		case !present:
			st.Status = StatusMissing
		case len(st.Groups) == 0:
			st.Status = StatusUnprotected
		case st.LastResult == string(phase.VMFailed):
			st.Status = StatusFailed
		case c.NewestGood.IsZero():
			st.Status = StatusNever
		case rpo > 0 && now.Sub(c.NewestGood) > rpo:
			st.Status = StatusLate
		default:
			st.Status = StatusOK
		}
		out = append(out, st)
	}
	for _, v := range vms {
		seen[v.UUID] = true
		st := VMStatus{Name: v.Name, UUID: v.UUID, Connection: v.Connection, State: string(v.State), Groups: groups[v.UUID],
			Tags: v.Attributes[hypervisor.TagAttr]}
		if st.Groups == nil {
			st.Groups = []string{}
		}
		for _, d := range v.Disks {
			if !d.Protectable && d.Device != "cdrom" && d.Device != "floppy" {
				st.Unprotectable = append(st.Unprotectable, d.Target+": "+d.Reason)
			}
		}
		add(st, byUUID[v.UUID], true)
	}
	host, _ := os.Hostname()
	self := serverUUID(host)
	for _, c := range cat {
		// The server's own points (self-protection) are no VM to protect.
		if !seen[c.UUID] && c.UUID != self {
			add(VMStatus{Name: c.Name, UUID: c.UUID, Groups: []string{}}, c, false)
		}
	}
	return out, nil
}

// visible filters statuses to what p may see.
func visible(sts []VMStatus, seesAll bool, groups []string) []VMStatus {
	if seesAll {
		return sts
	}
	out := sts[:0:0]
	for _, st := range sts {
		for _, g := range st.Groups {
			if slices.Contains(groups, g) {
				out = append(out, st)
				break
			}
		}
	}
	return out
}
