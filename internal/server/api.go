package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/console"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/repo"
)

// APIPrefix is where the REST API lives.
const APIPrefix = "/api/v1"

// route is one endpoint: the mux pattern, its documentation (for the
// OpenAPI document, which is generated from this table) and its handler.
type route struct {
	method, path string
	summary      string
	// public routes need no credentials.
	public bool
	// in and out are values of the request and response body types (nil
	// for none), from which the OpenAPI schemas are made.
	in, out any
	// query lists the query parameters.
	query []string
	h     func(rc *reqCtx) (any, error)
	// raw handlers write the response themselves (downloads, events).
	raw func(rc *reqCtx) error
}

// reqCtx is what a handler gets.
type reqCtx struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	p   auth.Principal
	cfg *config.Config
	ctx context.Context
}

// created is a response with status 201 or 202.
type created struct {
	code int
	body any
}

// httpError is an error with its status.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{code: http.StatusNotFound, err: fmt.Errorf(format, args...)}
}

// status maps an error to an HTTP status.
func status(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.code
	case errors.Is(err, auth.ErrBadCredentials):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, auth.ErrThrottled):
		return http.StatusTooManyRequests
	case errors.Is(err, catalog.ErrNotFound), errors.Is(err, repo.ErrPointNotFound), errors.Is(err, hypervisor.ErrVMNotFound):
		return http.StatusNotFound
	case errors.Is(err, catalog.ErrAmbiguous), errors.Is(err, repo.ErrAmbiguous), errors.Is(err, catalog.ErrInvalid),
		errors.Is(err, config.ErrInvalid), errors.Is(err, hypervisor.ErrBadSelector), errors.Is(err, hypervisor.ErrBadTag):
		return http.StatusBadRequest
	case errors.Is(err, hypervisor.ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a JSON request body (at most 1 MiB, no unknown fields).
func (rc *reqCtx) decode(v any) error {
	dec := json.NewDecoder(io.LimitReader(rc.r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return badRequest("request body: %v", err)
	}
	return nil
}

// queryInt reads an integer query parameter.
func (rc *reqCtx) queryInt(name string, def int) (int, error) {
	v := rc.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest("query parameter %s: %q is not a count", name, v)
	}
	return n, nil
}

// remote is the client's address, for the audit log and throttling.
func remote(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// principal authenticates a request: an API token (Authorization: Bearer)
// or a console session cookie (whose changes also need the CSRF header).
func (s *Server) principal(r *http.Request) (auth.Principal, error) {
	_, authn := s.config()
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return auth.Principal{}, fmt.Errorf("%w: use Authorization: Bearer <token>", auth.ErrBadCredentials)
		}
		return authn.Token(strings.TrimSpace(tok))
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		sess, ok := s.sessions.get(c.Value)
		if !ok {
			return auth.Principal{}, fmt.Errorf("%w: session expired: sign in again", auth.ErrBadCredentials)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(csrfHeader) != sess.csrf {
			return auth.Principal{}, fmt.Errorf("%w: missing or wrong %s header", auth.ErrForbidden, csrfHeader)
		}
		cfg, _ := s.config()
		u, ok := cfg.User(sess.user)
		if !ok {
			return auth.Principal{}, auth.ErrBadCredentials
		}
		return auth.Principal{User: u.Name, Role: u.Role, Groups: u.Groups}, nil
	}
	return auth.Principal{}, fmt.Errorf("%w: no credentials (Authorization: Bearer <token>)", auth.ErrBadCredentials)
}

// serve wraps a route: authentication, the handler, errors as JSON.
func (s *Server) serve(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cfg, _ := s.config()
		rc := &reqCtx{s: s, w: w, r: r, cfg: cfg, ctx: r.Context()}
		if !rt.public {
			p, err := s.principal(r)
			if err != nil {
				writeJSON(w, status(err), apiError{Error: err.Error()})
				return
			}
			rc.p = p
		}
		if rt.raw != nil {
			if err := rt.raw(rc); err != nil {
				writeJSON(w, status(err), apiError{Error: err.Error()})
			}
			return
		}
		out, err := rt.h(rc)
		if err != nil {
			if code := status(err); code == http.StatusForbidden {
				s.audit(rc, "denied", r.Method+" "+r.URL.Path, "", err)
				writeJSON(w, code, apiError{Error: err.Error()})
			} else {
				writeJSON(w, code, apiError{Error: err.Error()})
			}
			return
		}
		if c, ok := out.(created); ok {
			writeJSON(w, c.code, c.body)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// audit records an action in the audit log.
func (s *Server) audit(rc *reqCtx, outcome, action, target string, detail any) {
	var raw json.RawMessage
	switch d := detail.(type) {
	case nil:
	case error:
		raw, _ = json.Marshal(map[string]string{"error": d.Error()})
	default:
		raw, _ = json.Marshal(d)
	}
	actor := rc.p.User
	if actor == "" {
		actor = "anonymous"
	}
	if rc.p.Token != "" {
		actor += " (token " + rc.p.Token + ")"
	}
	e := catalog.AuditEntry{Time: s.opts.Now(), Actor: actor, Action: action, Target: target, Outcome: outcome,
		Remote: remote(rc.r), Detail: raw}
	if err := s.cat.AppendAudit(context.WithoutCancel(rc.ctx), e); err != nil {
		s.log.Error("audit log", "err", err, "action", action)
	}
}

// routes builds the HTTP handler from the route table.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.table() {
		mux.HandleFunc(rt.method+" "+rt.path, s.serve(rt))
	}
	ui := console.Handler()
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET "+console.Prefix, ui)
	mux.HandleFunc("GET /metrics", s.metricsHandler)
	mux.HandleFunc("GET "+APIPrefix+"/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.openAPI())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, APIPrefix+"/") {
			writeJSON(w, http.StatusNotFound, apiError{Error: "no such endpoint: " + r.Method + " " + r.URL.Path + " (see " + APIPrefix + "/openapi.json)"})
			return
		}
		http.NotFound(w, r)
	})
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// since parses an optional RFC 3339 query parameter.
func (rc *reqCtx) since(name string) (time.Time, error) {
	v := rc.r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badRequest("query parameter %s: %q is not an RFC 3339 time", name, v)
	}
	return t, nil
}
