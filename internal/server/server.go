// Package server is kura server: a long-lived process that runs the
// protection groups of its configuration file on their schedules — backup,
// verify, prune with gc — keeps the jobs in the catalog's queue, serves the
// REST API (HTTPS, users and tokens with roles) and Prometheus metrics,
// notifies by e-mail and webhooks, and protects itself by storing its own
// configuration and catalog in a repository.
//
// Every operation goes through package service, as the command line's do:
// the server adds what runs when, who may ask for it, and who is told.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/schedule"
	"github.com/kurabackup/kura/internal/service"
	"github.com/kurabackup/kura/internal/throttle"
)

// Options configure a Server.
type Options struct {
	// ConfigPath is the configuration file (config.DefaultPath).
	ConfigPath string
	Logger     *slog.Logger
	// Now is the clock of the scheduler and of job records (time.Now).
	Now func() time.Time
	// Connect opens a configured hypervisor connection (the connector
	// registry, with the connection's password).
	Connect func(ctx context.Context, cn config.Connection, log *slog.Logger) (hypervisor.Connector, error)
	// OpenRepository opens a configured repository.
	OpenRepository func(ctx context.Context, r config.Repository, log *slog.Logger) (*repo.Repository, error)
	// Listener, when set, is used instead of listening on the configured
	// address (tests).
	Listener net.Listener
	// Tick is how often the scheduler and the queue are looked at (5 s).
	Tick time.Duration
}

// Server is a running kura server.
type Server struct {
	opts Options
	log  *slog.Logger

	mu    sync.RWMutex
	cfg   *config.Config
	authn *auth.Authenticator
	repos map[string]*repo.Repository // by configuration name
	// notifier delivers events (nil when the configuration has none).
	notifier *notify.Notifier

	cat       catalog.Catalog
	throttle  *auth.Throttle
	sessions  *sessions
	hub       *hub
	run       *runner
	cert      tls.Certificate
	http      *http.Server
	started   time.Time
	wake      chan struct{} // pokes the scheduler and the queue
	inv       inventory
	metrics   *metrics
	cfgMu     sync.Mutex     // serialises configuration changes
	bg        sync.WaitGroup // background tasks (self backups)
	rpoMu     sync.Mutex
	rpoLate   map[string]bool // VMs beyond their RPO (told once per crossing)
	full      map[string]bool // repositories nearly full (told once per crossing)
	slotMu    sync.Mutex
	slots     map[string]string // "vm@slot" → the group backing it up in that slot
	plannerMu sync.Mutex
	planner   *schedule.Planner // set once the schedule loop runs
	limMu     sync.Mutex
	limiters  map[string]*throttle.Limiter // by group
	lastSelf  time.Time                    // last daily self backup
	jobsEnded atomic.Uint64                // jobs ended since the start (capacity estimates follow)
	capCache  capacityCache
}

// Version is kura's version, set by the command line.
var Version = "dev"

// New loads the configuration and opens the catalog and repositories.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.ConfigPath == "" {
		opts.ConfigPath = config.DefaultPath
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Tick <= 0 {
		opts.Tick = 5 * time.Second
	}
	if opts.Connect == nil || opts.OpenRepository == nil {
		return nil, errors.New("server: Connect and OpenRepository are required")
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, throttle: auth.NewThrottle(5, opts.Now), hub: newHub(),
		sessions: newSessions(opts.Now), wake: make(chan struct{}, 1), started: opts.Now()}
	if err := os.MkdirAll(cfg.Server.Dir(), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	cat, opened, err := service.OpenCatalog(ctx, cfg.Server.CatalogPath(), s.log)
	if err != nil {
		return nil, err
	}
	s.cat = cat
	if opened.MovedAside != "" {
		s.log.Warn("catalog was damaged: moved aside; points are rebuilt from the repositories", "aside", opened.MovedAside)
	}
	if err := s.apply(ctx, cfg); err != nil {
		_ = cat.Close()
		return nil, err
	}
	if opened.MovedAside != "" {
		s.rebuildCatalogs(ctx)
	}
	s.run = newRunner(s)
	s.metrics = newMetrics(s)
	s.lastSelf = opts.Now() // the first daily self backup comes a day after start
	// Jobs a dead server was running are interrupted (OpenCatalog marked
	// them): clean what they left on their VMs now.
	if len(opened.Interrupted) > 0 {
		s.cleanupInterrupted(ctx, opened.Interrupted)
	}
	return s, nil
}

// apply makes cfg the running configuration: repositories are opened (a
// repository that cannot be opened fails the whole change).
func (s *Server) apply(ctx context.Context, cfg *config.Config) error {
	repos := map[string]*repo.Repository{}
	s.mu.RLock()
	old := s.repos
	oldCfg := s.cfg
	s.mu.RUnlock()
	for _, rc := range cfg.Repositories {
		if r, ok := old[rc.Name]; ok && sameRepo(oldCfg, rc) {
			repos[rc.Name] = r
			continue
		}
		r, err := s.opts.OpenRepository(ctx, rc, s.log)
		if err != nil {
			for name, r := range repos {
				if old[name] != r {
					_ = r.Close()
				}
			}
			return fmt.Errorf("repository %s: %w", rc.Name, err)
		}
		repos[rc.Name] = r
		if err := s.cat.UpsertRepository(ctx, catalog.Repository{ID: r.Config().ID, Location: rc.Location}); err != nil {
			s.log.Warn("catalog: record repository", "err", err)
		}
	}
	n, err := s.newNotifier(cfg)
	if err != nil {
		for name, r := range repos {
			if old[name] != r {
				_ = r.Close()
			}
		}
		return fmt.Errorf("notifications: %w", err)
	}
	s.mu.Lock()
	oldN := s.notifier
	s.cfg, s.repos, s.authn, s.notifier = cfg, repos, auth.New(cfg, s.opts.Now), n
	s.mu.Unlock()
	if oldN != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = oldN.Close(cctx) // deliveries queued before the change go out
		}()
	}
	for name, r := range old {
		if repos[name] != r {
			_ = r.Close()
		}
	}
	return nil
}

func sameRepo(old *config.Config, rc config.Repository) bool {
	if old == nil {
		return false
	}
	for _, o := range old.Repositories {
		if o == rc {
			return true
		}
	}
	return false
}

// config returns the running configuration and its authenticator.
func (s *Server) config() (*config.Config, *auth.Authenticator) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg, s.authn
}

// repository returns the opened repository of a group.
func (s *Server) repository(g config.Group) (*repo.Repository, config.Repository, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rc, ok := s.cfg.RepositoryOf(g)
	if !ok {
		return nil, rc, fmt.Errorf("group %s has no repository", g.Name)
	}
	r := s.repos[rc.Name]
	if r == nil {
		return nil, rc, fmt.Errorf("repository %s is not open", rc.Name)
	}
	return r, rc, nil
}

// repositories returns the opened repositories by name.
func (s *Server) repositories() map[string]*repo.Repository {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*repo.Repository, len(s.repos))
	for k, v := range s.repos {
		out[k] = v
	}
	return out
}

// Reload re-reads the configuration file (SIGHUP); an invalid file or a
// repository that does not open leaves the running configuration.
func (s *Server) Reload(ctx context.Context) error {
	cfg, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return err
	}
	if err := s.apply(ctx, cfg); err != nil {
		return err
	}
	s.log.Info("configuration reloaded", "path", s.opts.ConfigPath, "groups", len(cfg.Groups))
	s.poke()
	return nil
}

// poke wakes the scheduler and the queue.
func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Handler is the HTTP handler (API, metrics), for tests.
func (s *Server) Handler() http.Handler { return s.routes() }

// Run serves until ctx ends, then stops: no new job starts, running jobs
// are cancelled (they end Cancelled, leaving nothing half-written), the
// HTTP server shuts down.
func (s *Server) Run(ctx context.Context) error {
	cfg, _ := s.config()
	ln := s.opts.Listener
	var err error
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Server.ListenAddr()); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	if !cfg.Server.TLS.Disabled {
		certFile, keyFile, gen := cfg.Server.CertFiles()
		if s.cert, err = ensureCert(certFile, keyFile, gen, cfg.Server.ListenAddr()); err != nil {
			return err
		}
		s.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, s.http.TLSConfig)
		s.log.Info("certificate", "file", certFile, "sha256", Fingerprint(s.cert))
	}
	s.log.Info("kura server listening", "addr", ln.Addr().String(), "tls", !cfg.Server.TLS.Disabled,
		"config", s.opts.ConfigPath, "groups", len(cfg.Groups))
	var wg sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); s.run.loop(loopCtx) }()
	go func() { defer wg.Done(); s.scheduleLoop(loopCtx) }()
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopLoops()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.http.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close waits for background tasks and releases the catalog and
// repositories.
func (s *Server) Close() error {
	s.bg.Wait()
	s.mu.Lock()
	if s.notifier != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = s.notifier.Close(cctx)
		cancel()
		s.notifier = nil
	}
	defer s.mu.Unlock()
	for _, r := range s.repos {
		_ = r.Close()
	}
	s.repos = nil
	return s.cat.Close()
}
