package server

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/instant"
	"github.com/kurabackup/kura/internal/phase"
)

// Version of the server's API document.
const apiVersion = "1.0.0"

// LoginRequest signs a user in.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// LoginResponse is a signed-in session: send the cookie, and the CSRF
// token in the X-Kura-CSRF header of every change.
type LoginResponse struct {
	User    string    `json:"user"`
	Role    string    `json:"role"`
	Groups  []string  `json:"groups,omitempty"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// Whoami is the principal of a request.
type Whoami struct {
	User   string   `json:"user"`
	Role   string   `json:"role"`
	Groups []string `json:"groups,omitempty"`
	Token  string   `json:"token,omitempty"`
	// CSRF is the session's token for the X-Kura-CSRF header, when the
	// request came with a console session (a reloaded page needs it).
	CSRF string `json:"csrf,omitempty"`
}

// Status is the server's own state.
type Status struct {
	Version    string    `json:"version"`
	Started    time.Time `json:"started"`
	Groups     int       `json:"groups"`
	VMs        int       `json:"vms"`
	Queued     int       `json:"queued_jobs"`
	Running    int       `json:"running_jobs"`
	Inventory  time.Time `json:"inventory_time"`
	Connection any       `json:"connection_errors,omitempty"`
}

// RunRequest runs a group's job now.
type RunRequest struct {
	Kind string `json:"kind"` // backup, verify, prune, copy, boot-verify
	// Full (backup) reads everything instead of changes only.
	Full bool `json:"full,omitempty"`
	// ReadData and OutdatedAfter (verify).
	ReadData      bool   `json:"read_data,omitempty"`
	OutdatedAfter string `json:"outdated_after,omitempty"`
	// Probes (boot-verify) run in each booted point.
	Probes []string `json:"probes,omitempty"`
}

// GroupPreview is what a group's selectors match now.
type GroupPreview struct {
	Group     string   `json:"group"`
	VMs       []string `json:"vms"`
	Unmatched []string `json:"unmatched_selectors,omitempty"`
}

// TokenRequest makes an API token.
type TokenRequest struct {
	Name    string    `json:"name"`
	Role    string    `json:"role,omitempty"` // narrower than the owner's (default the owner's)
	Expires time.Time `json:"expires,omitempty"`
}

// TokenResponse shows a new token's secret, once.
type TokenResponse struct {
	ID      string    `json:"id"`
	Secret  string    `json:"secret"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires,omitempty"`
}

// TokenInfo lists a token (never its secret).
type TokenInfo struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitempty"`
}

// UserInfo lists a user (never its password hash).
type UserInfo struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	Groups []string `json:"groups,omitempty"`
	Tokens int      `json:"tokens"`
}

// UserRequest creates or changes a user.
type UserRequest struct {
	Role     string   `json:"role"`
	Groups   []string `json:"groups,omitempty"`
	Password string   `json:"password,omitempty"` // empty keeps the current one
}

// JobList is a page of jobs.
type JobList struct {
	Jobs []catalog.Job `json:"jobs"`
}

// table lists every endpoint.
func (s *Server) table() []route {
	api := func(method, path, summary string, in, out any, h func(*reqCtx) (any, error), query ...string) route {
		return route{method: method, path: APIPrefix + path, summary: summary, in: in, out: out, h: h, query: query}
	}
	rts := []route{
		api("POST", "/login", "Sign in: a session cookie for the console", LoginRequest{}, LoginResponse{}, s.login),
		api("POST", "/logout", "Sign out", nil, nil, s.logout),
		api("GET", "/whoami", "Who the credentials are", nil, Whoami{}, s.whoami),
		api("GET", "/status", "The server's state", nil, Status{}, s.status),
		api("GET", "/vms", "Every VM with its protection status", nil, []VMStatus{}, s.listVMs),
		api("GET", "/vms/{uuid}/points", "The recovery points of one VM", nil, []catalog.Point{}, s.vmPoints),
		api("GET", "/groups", "The protection groups", nil, []config.Group{}, s.listGroups),
		api("GET", "/groups/{name}", "One protection group", nil, config.Group{}, s.getGroup),
		api("PUT", "/groups/{name}", "Create or replace a protection group", config.Group{}, config.Group{}, s.putGroup),
		api("DELETE", "/groups/{name}", "Remove a protection group (its points stay)", nil, nil, s.deleteGroup),
		api("GET", "/groups/{name}/preview", "The VMs a group's selectors match now", nil, GroupPreview{}, s.previewGroup),
		api("POST", "/groups/preview", "The VMs a group not saved yet would match now; changes nothing", config.Group{}, GroupPreview{}, s.previewDraft),
		api("POST", "/groups/{name}/run", "Run a group's backup, verify or prune now", RunRequest{}, catalog.Job{}, s.runGroup),
		api("GET", "/points", "Recovery points", nil, []catalog.Point{}, s.listPoints, "vm", "group", "limit"),
		api("GET", "/points/{id}", "One recovery point", nil, catalog.Point{}, s.getPoint),
		api("POST", "/points/{id}/restore/preview", "What a restore would do, and its conflicts; changes nothing", RestoreRequest{}, RestorePreview{}, s.restorePreview),
		api("POST", "/points/{id}/restore", "Restore a point (a queued job)", RestoreRequest{}, catalog.Job{}, s.restorePoint),
		api("POST", "/points/{id}/export", "Export a point's disks as image files on the server's host (a queued job)", ExportRequest{}, catalog.Job{}, s.exportPoint),
		api("GET", "/points/{id}/files", "List a directory inside a point's guest filesystem", nil, FileList{}, s.listFiles, "disk", "volume", "path", "name", "offset", "limit"),
		{method: "GET", path: APIPrefix + "/points/{id}/files/content", summary: "Download a file from a point's guest filesystem",
			query: []string{"disk", "volume", "path"}, raw: s.downloadFile},
		api("GET", "/jobs", "Jobs, newest first", nil, JobList{}, s.listJobs, "kind", "state", "group", "limit"),
		api("GET", "/jobs/{id}", "One job with its per-VM results", nil, catalog.Job{}, s.getJob),
		api("GET", "/jobs/{id}/log", "A job's full log", nil, []catalog.LogLine{}, s.jobLogLines, "after", "limit"),
		{method: "GET", path: APIPrefix + "/jobs/{id}/events", summary: "A job's live progress (Server-Sent Events)", raw: s.jobEvents},
		api("POST", "/jobs/{id}/cancel", "Cancel a queued or running job", nil, nil, s.cancelJob),
		api("GET", "/users", "Users", nil, []UserInfo{}, s.listUsers),
		api("PUT", "/users/{name}", "Create or change a user", UserRequest{}, UserInfo{}, s.putUser),
		api("DELETE", "/users/{name}", "Remove a user and its tokens", nil, nil, s.deleteUser),
		api("GET", "/tokens", "API tokens (yours; every user's for an admin)", nil, []TokenInfo{}, s.listTokens),
		api("POST", "/tokens", "Make an API token: its secret is shown once", TokenRequest{}, TokenResponse{}, s.makeToken),
		api("DELETE", "/tokens/{id}", "Revoke an API token", nil, nil, s.revokeToken),
		api("GET", "/audit", "The audit log, newest first", nil, []catalog.AuditEntry{}, s.auditLog, "since", "actor", "action", "limit"),
		api("POST", "/config/reload", "Re-read the configuration file", nil, nil, s.reload),
	}
	rts[0].public = true
	return append(rts, s.extraRoutes()...)
}

func (s *Server) login(rc *reqCtx) (any, error) {
	var req LoginRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	key := req.User + "@" + remote(rc.r)
	if ok, wait := s.throttle.Allow(key); !ok {
		s.audit(rc, "denied", "login", req.User, map[string]string{"reason": "throttled"})
		return nil, fmt.Errorf("%w (wait %s)", auth.ErrThrottled, wait.Round(time.Second))
	}
	_, authn := s.config()
	p, err := authn.Password(req.User, req.Password)
	if err != nil {
		s.throttle.Fail(key)
		rc.p.User = req.User
		s.audit(rc, "denied", "login", req.User, nil)
		return nil, err
	}
	s.throttle.Succeed(key)
	id, sess := s.sessions.create(p.User)
	http.SetCookie(rc.w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: rc.r.TLS != nil,
		SameSite: http.SameSiteStrictMode, Expires: sess.expires})
	rc.p = p
	s.audit(rc, "ok", "login", p.User, nil)
	return LoginResponse{User: p.User, Role: p.Role, Groups: p.Groups, CSRF: sess.csrf, Expires: sess.expires}, nil
}

func (s *Server) logout(rc *reqCtx) (any, error) {
	if c, err := rc.r.Cookie(sessionCookie); err == nil {
		s.sessions.drop(c.Value)
	}
	http.SetCookie(rc.w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true})
	return map[string]string{"signed_out": rc.p.User}, nil
}

func (s *Server) whoami(rc *reqCtx) (any, error) {
	w := Whoami{User: rc.p.User, Role: rc.p.Role, Groups: rc.p.Groups, Token: rc.p.Token}
	if c, err := rc.r.Cookie(sessionCookie); err == nil && rc.r.Header.Get("Authorization") == "" {
		if sess, ok := s.sessions.get(c.Value); ok {
			w.CSRF = sess.csrf
		}
	}
	return w, nil
}

func (s *Server) status(rc *reqCtx) (any, error) {
	s.inv.mu.RLock()
	defer s.inv.mu.RUnlock()
	s.run.mu.Lock()
	running := len(s.run.running)
	s.run.mu.Unlock()
	st := Status{Version: Version, Started: s.started, Groups: len(rc.cfg.Groups), VMs: len(s.inv.vms),
		Queued: s.run.depth(rc.ctx), Running: running, Inventory: s.inv.at}
	if len(s.inv.errs) > 0 && rc.p.SeesAll() {
		st.Connection = s.inv.errs
	}
	return st, nil
}

func (s *Server) listVMs(rc *reqCtx) (any, error) {
	sts, err := s.statuses(rc.ctx)
	if err != nil {
		return nil, err
	}
	return visible(sts, rc.p.SeesAll(), rc.p.Groups), nil
}

func (s *Server) vmPoints(rc *reqCtx) (any, error) {
	ps, err := s.cat.Points(rc.ctx, catalog.PointFilter{VM: rc.r.PathValue("uuid")})
	if err != nil {
		return nil, err
	}
	return s.visiblePoints(rc, ps), nil
}

// visiblePoints filters points to those p may read.
func (s *Server) visiblePoints(rc *reqCtx, ps []catalog.Point) []catalog.Point {
	out := ps[:0:0]
	for _, p := range ps {
		if rc.p.Allows(auth.Read, pointGroup(p.Tags)) || rc.p.SeesAll() {
			out = append(out, p)
		}
	}
	return out
}

func (s *Server) listGroups(rc *reqCtx) (any, error) {
	out := []config.Group{}
	for _, g := range rc.cfg.Groups {
		if rc.p.Allows(auth.Read, g.Name) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *Server) group(rc *reqCtx, a auth.Action) (config.Group, error) {
	name := rc.r.PathValue("name")
	if err := rc.p.Check(auth.Read, name); err != nil {
		return config.Group{}, err
	}
	g, ok := rc.cfg.Group(name)
	if !ok {
		return config.Group{}, notFound("no group %q", name)
	}
	return g, rc.p.Check(a, name)
}

func (s *Server) getGroup(rc *reqCtx) (any, error) { return s.group(rc, auth.Read) }

func (s *Server) previewGroup(rc *reqCtx) (any, error) {
	g, err := s.group(rc, auth.Read)
	if err != nil {
		return nil, err
	}
	return s.preview(rc, g)
}

// previewDraft evaluates the selectors of a group being edited.
func (s *Server) previewDraft(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Read, ""); err != nil {
		return nil, err
	}
	var g config.Group
	if err := rc.decode(&g); err != nil {
		return nil, err
	}
	return s.preview(rc, g)
}

func (s *Server) runGroup(rc *reqCtx) (any, error) {
	g, err := s.group(rc, auth.Run)
	if err != nil {
		return nil, err
	}
	var req RunRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	spec := catalog.JobSpec{Group: g.Name, Trigger: "api:" + rc.p.User}
	var params any
	switch req.Kind {
	case "", config.KindBackup:
		spec.Kind, params = catalog.JobBackup, backupParams{Full: req.Full}
	case config.KindVerify:
		d, err := config.ParseDuration(req.OutdatedAfter)
		if err != nil {
			return nil, badRequest("outdated_after: %v", err)
		}
		spec.Kind, params = catalog.JobVerify, verifyParams{ReadData: req.ReadData, OutdatedAfter: d}
	case config.KindPrune:
		if g.Retention == (config.Retention{}) {
			return nil, badRequest("group %s has no retention policy: a prune would keep everything", g.Name)
		}
		spec.Kind = catalog.JobPrune
	case config.KindCopy:
		if len(g.Copies) == 0 {
			return nil, badRequest("group %s has no copies", g.Name)
		}
		spec.Kind = catalog.JobCopy
	case config.KindBootVerify:
		for _, p := range req.Probes {
			if _, err := instant.ParseProbe(p); err != nil {
				return nil, badRequest("%v", err)
			}
		}
		spec.Kind, params = catalog.JobBootVerify, bootParams{Probes: req.Probes}
	default:
		return nil, badRequest("kind %q: use backup, verify, prune, copy or boot-verify", req.Kind)
	}
	j, err := s.enqueue(rc.ctx, spec, params)
	if err != nil {
		return nil, err
	}
	s.audit(rc, "ok", "group.run", g.Name, req)
	return created{code: http.StatusAccepted, body: j}, nil
}

func (s *Server) listPoints(rc *reqCtx) (any, error) {
	limit, err := rc.queryInt("limit", 0)
	if err != nil {
		return nil, err
	}
	q := rc.r.URL.Query()
	ps, err := s.cat.Points(rc.ctx, catalog.PointFilter{VM: q.Get("vm")})
	if err != nil {
		return nil, err
	}
	ps = s.visiblePoints(rc, ps)
	if g := q.Get("group"); g != "" {
		ps = slices.DeleteFunc(ps, func(p catalog.Point) bool { return pointGroup(p.Tags) != g })
	}
	if limit > 0 && len(ps) > limit {
		ps = ps[len(ps)-limit:]
	}
	return ps, nil
}

func (s *Server) getPoint(rc *reqCtx) (any, error) {
	p, err := s.cat.Point(rc.ctx, rc.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if !rc.p.SeesAll() {
		if err := rc.p.Check(auth.Read, pointGroup(p.Tags)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (s *Server) restorePreview(rc *reqCtx) (any, error) {
	var req RestoreRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	return s.previewRestore(rc.ctx, rc.p, rc.r.PathValue("id"), req)
}

func (s *Server) restorePoint(rc *reqCtx) (any, error) {
	var req RestoreRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	id := rc.r.PathValue("id")
	pv, err := s.previewRestore(rc.ctx, rc.p, id, req)
	if err != nil {
		if errors.Is(err, auth.ErrForbidden) {
			s.audit(rc, "denied", "restore", id, map[string]any{"request": req, "error": err.Error()})
		}
		return nil, err
	}
	m, _, g, err := s.findPoint(rc.ctx, rc.p, id, auth.Restore)
	if err != nil {
		return nil, err
	}
	j, err := s.enqueue(rc.ctx, catalog.JobSpec{Kind: catalog.JobRestore, Group: g.Name, Trigger: "api:" + rc.p.User},
		restoreParams{Point: m.ID, RestoreRequest: req})
	if err != nil {
		return nil, err
	}
	s.audit(rc, "ok", "restore", m.ID, map[string]any{"request": req, "preview": pv, "job": j.ID})
	return created{code: http.StatusAccepted, body: j}, nil
}

func (s *Server) listJobs(rc *reqCtx) (any, error) {
	limit, err := rc.queryInt("limit", 50)
	if err != nil {
		return nil, err
	}
	q := rc.r.URL.Query()
	f := catalog.JobFilter{Kind: q.Get("kind"), State: phase.Job(q.Get("state")), Group: q.Get("group"), Limit: limit}
	if f.State != "" && !f.State.Valid() {
		return nil, badRequest("state %q is not a job phase", f.State)
	}
	jobs, err := s.cat.FindJobs(rc.ctx, f)
	if err != nil {
		return nil, err
	}
	out := jobs[:0:0]
	for _, j := range jobs {
		if rc.p.Allows(auth.Read, j.Group) {
			out = append(out, j)
		}
	}
	return JobList{Jobs: out}, nil
}

func (s *Server) job(rc *reqCtx, a auth.Action) (catalog.Job, error) {
	j, err := s.cat.Job(rc.ctx, rc.r.PathValue("id"))
	if err != nil {
		return catalog.Job{}, err
	}
	if err := rc.p.Check(auth.Read, j.Group); err != nil {
		return catalog.Job{}, err
	}
	return j, rc.p.Check(a, j.Group)
}

func (s *Server) getJob(rc *reqCtx) (any, error) { return s.job(rc, auth.Read) }

func (s *Server) jobLogLines(rc *reqCtx) (any, error) {
	j, err := s.job(rc, auth.Read)
	if err != nil {
		return nil, err
	}
	after, err := rc.queryInt("after", 0)
	if err != nil {
		return nil, err
	}
	limit, err := rc.queryInt("limit", 0)
	if err != nil {
		return nil, err
	}
	lines, err := s.cat.JobLog(rc.ctx, j.ID, int64(after), limit)
	if lines == nil {
		lines = []catalog.LogLine{}
	}
	return lines, err
}

func (s *Server) cancelJob(rc *reqCtx) (any, error) {
	j, err := s.job(rc, auth.Run)
	if err != nil {
		return nil, err
	}
	if err := s.cat.RequestCancel(rc.ctx, j.ID); err != nil {
		return nil, badRequest("%v", err)
	}
	s.audit(rc, "ok", "job.cancel", j.ID, nil)
	s.poke()
	return map[string]string{"cancel_requested": j.ID}, nil
}

func (s *Server) auditLog(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Audit, ""); err != nil {
		return nil, err
	}
	since, err := rc.since("since")
	if err != nil {
		return nil, err
	}
	limit, err := rc.queryInt("limit", 200)
	if err != nil {
		return nil, err
	}
	q := rc.r.URL.Query()
	es, err := s.cat.Audit(rc.ctx, catalog.AuditFilter{Since: since, Actor: q.Get("actor"), Action: q.Get("action"), Limit: limit})
	if es == nil {
		es = []catalog.AuditEntry{}
	}
	return es, err
}

func (s *Server) reload(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Configure, ""); err != nil {
		return nil, err
	}
	if err := s.Reload(rc.ctx); err != nil {
		s.audit(rc, "failed", "config.reload", "", err)
		return nil, badRequest("%v", err)
	}
	s.audit(rc, "ok", "config.reload", "", nil)
	return map[string]string{"reloaded": s.opts.ConfigPath}, nil
}
