package server

import (
	"slices"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/notify"
)

// DamageInfo is a verify problem of a repository: a missing or corrupt
// object and the points it affects.
type DamageInfo struct {
	Repository string `json:"repository"`
	catalog.Damage
}

// damage lists the verify problems of every repository (for principals
// that see everything).
func (s *Server) damage(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Read, ""); err != nil {
		return nil, err
	}
	out := []DamageInfo{}
	for name, r := range s.repositories() {
		ds, err := s.cat.Damaged(rc.ctx, r.Config().ID)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			out = append(out, DamageInfo{Repository: name, Damage: d})
		}
	}
	slices.SortFunc(out, func(a, b DamageInfo) int { return b.Found.Compare(a.Found) })
	return out, nil
}

// ConnectionInfo is a configured hypervisor connection (a restore target).
type ConnectionInfo struct {
	Name string `json:"name"`
	// Error is why the last inventory could not list its VMs.
	Error string `json:"error,omitempty"`
}

// connections lists the connections a principal may restore to: all of
// them, or for a restore user those of its groups.
func (s *Server) connections(rc *reqCtx) (any, error) {
	names := map[string]bool{}
	for _, g := range rc.cfg.Groups {
		if !rc.p.SeesAll() && !rc.p.Allows(auth.Restore, g.Name) {
			continue
		}
		for _, cn := range rc.cfg.ConnectionsOf(g) {
			names[cn.Name] = true
		}
	}
	s.inv.mu.RLock()
	defer s.inv.mu.RUnlock()
	out := []ConnectionInfo{}
	for _, cn := range rc.cfg.Connections {
		if rc.p.SeesAll() || names[cn.Name] {
			ci := ConnectionInfo{Name: cn.Name}
			if rc.p.SeesAll() {
				ci.Error = s.inv.errs[cn.Name]
			}
			out = append(out, ci)
		}
	}
	return out, nil
}

// NotificationRule says which events go where (the configuration's rule).
type NotificationRule struct {
	Events   []notify.EventKind `json:"events,omitempty"`
	Groups   []string           `json:"groups,omitempty"`
	Email    []string           `json:"email,omitempty"`
	Webhooks []string           `json:"webhooks,omitempty"`
}

// NotificationsInfo lists the notification destinations and rules (no
// secrets: those are files or credentials the configuration names).
type NotificationsInfo struct {
	// Destinations are "webhook:NAME" and "email:ADDRESS", each one a
	// POST /notifications/test can send to.
	Destinations []string           `json:"destinations"`
	Rules        []NotificationRule `json:"rules"`
	Stats        []NotificationStat `json:"stats"`
}

// NotificationStat counts one destination's deliveries since the start.
type NotificationStat struct {
	Destination string `json:"destination"`
	Pending     int64  `json:"pending"`
	Delivered   int64  `json:"delivered"`
	Failed      int64  `json:"failed"`
	Dropped     int64  `json:"dropped"`
	Retries     int64  `json:"retries"`
}

func (s *Server) notifications(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Read, ""); err != nil {
		return nil, err
	}
	out := NotificationsInfo{Destinations: []string{}, Rules: []NotificationRule{}, Stats: []NotificationStat{}}
	for _, r := range rc.cfg.Notifications.Rules {
		out.Rules = append(out.Rules, NotificationRule(r))
	}
	s.mu.RLock()
	n := s.notifier
	s.mu.RUnlock()
	if n != nil {
		out.Destinations = n.Destinations()
		for _, st := range n.Stats() {
			out.Stats = append(out.Stats, NotificationStat{Destination: st.Destination, Pending: st.Pending,
				Delivered: st.Delivered, Failed: st.Failed, Dropped: st.Dropped, Retries: st.Retries})
		}
	}
	return out, nil
}
