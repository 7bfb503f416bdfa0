package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
)

// The server protects itself (seed 000) by storing, after each change of
// its configuration and daily, a recovery point of its own in a
// repository: a pseudo-VM "kura-server" whose configuration blob is the
// configuration file with the TLS certificate and key, and whose one disk
// is a snapshot of the catalog. It is an ordinary point — deduplicated,
// compressed, encrypted, listed — so nothing in the repository format is
// special to it.
const (
	// ServerHypervisor is the manifest's vm.hypervisor of server points.
	ServerHypervisor = "kura"
	// ServerConfigFormat is their config_format.
	ServerConfigFormat = "kura-server-v1"
	// ServerVM is their vm.name.
	ServerVM = "kura-server"
)

// serverBundle is the configuration blob of a server point.
type serverBundle struct {
	Config []byte `json:"config"` // the configuration file
	Cert   []byte `json:"cert,omitempty"`
	Key    []byte `json:"key,omitempty"` // left out of unencrypted repositories
	Host   string `json:"host"`
	Time   time.Time
}

// serverUUID identifies this server's points (one per host name).
func serverUUID(host string) string {
	sum := sha256.Sum256([]byte("kura-server\x00" + host))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50 // version 5 style, name-based
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// selfRepo is the repository the server protects itself in.
func (s *Server) selfRepo() (*repo.Repository, string, error) {
	cfg, _ := s.config()
	name := cfg.Server.SelfBackup.Repository
	if name == "" && len(cfg.Repositories) > 0 {
		name = cfg.Repositories[0].Name
	}
	r := s.repositories()[name]
	if r == nil {
		return nil, name, fmt.Errorf("self backup: %w %q", errNoRepository, name)
	}
	return r, name, nil
}

// SelfBackup stores a server point now.
func (s *Server) SelfBackup(ctx context.Context) (*repo.Manifest, error) {
	r, name, err := s.selfRepo()
	if err != nil {
		return nil, err
	}
	cfg, _ := s.config()
	data, err := os.ReadFile(s.opts.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("self backup: %w", err)
	}
	host, _ := os.Hostname()
	b := serverBundle{Config: data, Host: host, Time: s.opts.Now().UTC()}
	if certFile, keyFile, _ := cfg.Server.CertFiles(); !cfg.Server.TLS.Disabled {
		b.Cert, _ = os.ReadFile(certFile)
		if r.Config().Encrypted {
			b.Key, _ = os.ReadFile(keyFile)
		}
	}
	blob, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(cfg.Server.Dir(), ".self-backup-")
	if err != nil {
		return nil, fmt.Errorf("self backup: %w", err)
	}
	defer os.RemoveAll(dir)
	snap := filepath.Join(dir, "catalog.db")
	if err := s.cat.Snapshot(ctx, snap); err != nil {
		return nil, fmt.Errorf("self backup: %w", err)
	}
	img, err := os.ReadFile(snap)
	if err != nil {
		return nil, err
	}
	w, err := r.NewWriter(ctx, "server self-backup")
	if err != nil {
		return nil, err
	}
	defer w.Close()
	started := s.opts.Now()
	idx, st, err := w.WriteDisk(ctx, repo.DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
	if err != nil {
		return nil, err
	}
	m := &repo.Manifest{
		ID:           repo.NewPointID(started),
		VM:           repo.VMInfo{Name: ServerVM, UUID: serverUUID(host), Hypervisor: ServerHypervisor, Host: host},
		Config:       blob,
		ConfigFormat: ServerConfigFormat,
		Disks:        []repo.DiskEntry{{Target: "catalog", Format: "sqlite", Size: int64(len(img)), ChunkSize: r.Config().ChunkSize, Index: idx, Stats: st}},
		Consistency:  "application",
		Kind:         "full",
		Started:      started,
		Tags:         []string{ServerVM},
		KuraHost:     host,
		Stats:        st,
	}
	if err := w.Commit(ctx, m); err != nil {
		return nil, err
	}
	s.log.Info("server configuration and catalog stored", "repository", name, "point", m.ID, "catalog_bytes", len(img))
	s.pruneSelf(ctx, r, cfg)
	return m, nil
}

// pruneSelf keeps the newest self_backup.keep server points of this host.
func (s *Server) pruneSelf(ctx context.Context, r *repo.Repository, cfg *config.Config) {
	keep := cfg.Server.SelfBackup.Keep
	if keep <= 0 {
		keep = config.DefaultSelfKeep
	}
	points, err := r.ListPoints(ctx)
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	var mine []string
	for _, p := range points {
		if p.VM.Hypervisor == ServerHypervisor && p.VM.UUID == serverUUID(host) {
			mine = append(mine, p.ID)
		}
	}
	if len(mine) <= keep {
		return
	}
	svc := &service.Service{Repo: r, Catalog: s.cat, Logger: s.log}
	if _, err := svc.DeletePoints(ctx, mine[:len(mine)-keep], false); err != nil {
		s.log.Warn("prune server points", "err", err)
	}
}

// configChanged protects the new configuration at once (in the
// background: the API answers first).
func (s *Server) configChanged(ctx context.Context) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if _, err := s.SelfBackup(context.WithoutCancel(ctx)); err != nil {
			s.log.Error("self backup after a configuration change", "err", err)
		}
	}()
}

// housekeeping runs the daily self backup.
func (s *Server) housekeeping(ctx context.Context, now time.Time) {
	s.rpoMu.Lock()
	dueSelf := now.Sub(s.lastSelf) >= 24*time.Hour
	if dueSelf {
		s.lastSelf = now
	}
	s.rpoMu.Unlock()
	if dueSelf {
		if _, err := s.SelfBackup(ctx); err != nil {
			s.log.Error("daily self backup", "err", err)
		}
		s.dailySummary(ctx)
	}
}

// RecoverOptions control Recover.
type RecoverOptions struct {
	// Repository holds the server points; Password opens it.
	Repository *repo.Repository
	// ConfigPath is where the configuration is written.
	ConfigPath string
	// Force overwrites an existing configuration and catalog.
	Force   bool
	Connect func(ctx context.Context, cn config.Connection, log *slog.Logger) (hypervisor.Connector, error)
	Open    func(ctx context.Context, r config.Repository, log *slog.Logger) (*repo.Repository, error)
	Logger  *slog.Logger
}

// RecoverReport says what Recover did.
type RecoverReport struct {
	Point      string            `json:"point"`
	Host       string            `json:"host"`
	Config     string            `json:"config"`
	Catalog    string            `json:"catalog"`
	Rebuilt    map[string]int    `json:"points_rebuilt"` // by repository name
	Missing    []string          `json:"missing_vms"`
	NotOpened  map[string]string `json:"repositories_not_opened,omitempty"`
	Unreached  map[string]string `json:"connections_not_reached,omitempty"`
	TLSWritten bool              `json:"tls_written"`
}

// Recover rebuilds a lost server from a repository alone: the newest
// server point gives the configuration, the certificate and a catalog
// snapshot; the catalog's points are then rebuilt from every configured
// repository (points made since the snapshot come back too) and the VMs
// reconciled with the hypervisors: deleted ones are marked missing, their
// points kept; new ones matching a group are picked up by the next runs.
func Recover(ctx context.Context, o RecoverOptions) (*RecoverReport, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	points, err := o.Repository.ListPoints(ctx)
	if err != nil {
		return nil, err
	}
	var m *repo.Manifest
	for _, p := range points {
		if p.VM.Hypervisor == ServerHypervisor && p.ConfigFormat == ServerConfigFormat {
			m = p // sorted by time: the last is the newest
		}
	}
	if m == nil {
		return nil, errors.New("no server point in this repository: kura server stores one after each configuration change and daily")
	}
	var b serverBundle
	if err := json.Unmarshal(m.Config, &b); err != nil {
		return nil, fmt.Errorf("server point %s: %w", m.ID, err)
	}
	cfg, err := config.Parse(b.Config, "recovered configuration")
	if err != nil {
		return nil, fmt.Errorf("server point %s: %w", m.ID, err)
	}
	rep := &RecoverReport{Point: m.ID, Host: b.Host, Config: o.ConfigPath, Catalog: cfg.Server.CatalogPath(),
		Rebuilt: map[string]int{}, NotOpened: map[string]string{}, Unreached: map[string]string{}}
	for _, p := range []string{o.ConfigPath, rep.Catalog} {
		if _, err := os.Stat(p); err == nil && !o.Force {
			return nil, fmt.Errorf("%s exists: move it away, or recover with --force", p)
		}
	}
	if err := os.MkdirAll(filepath.Dir(o.ConfigPath), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(o.ConfigPath, b.Config, 0o600); err != nil {
		return nil, err
	}
	if certFile, keyFile, _ := cfg.Server.CertFiles(); len(b.Cert) > 0 && len(b.Key) > 0 {
		_ = os.MkdirAll(filepath.Dir(certFile), 0o700)
		if err := os.WriteFile(certFile, b.Cert, 0o644); err == nil {
			rep.TLSWritten = os.WriteFile(keyFile, b.Key, 0o600) == nil
		}
	}
	if err := restoreCatalog(ctx, o.Repository, m, rep.Catalog); err != nil {
		return nil, err
	}
	cat, _, err := service.OpenCatalog(ctx, rep.Catalog, log)
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	for _, rc := range cfg.Repositories {
		r, err := o.Open(ctx, rc, log)
		if err != nil {
			rep.NotOpened[rc.Name] = err.Error()
			continue
		}
		svc := &service.Service{Repo: r, Catalog: cat, Logger: log}
		if rb, err := svc.RebuildCatalog(ctx); err != nil {
			rep.NotOpened[rc.Name] = err.Error()
		} else {
			rep.Rebuilt[rc.Name] = rb.Points
		}
		if r != o.Repository {
			_ = r.Close()
		}
	}
	for _, cn := range cfg.Connections {
		conn, err := o.Connect(ctx, cn, log)
		if err != nil {
			rep.Unreached[cn.Name] = err.Error()
			continue
		}
		missing, err := (&service.Service{Catalog: cat, Conn: conn, Logger: log}).Reconcile(ctx)
		_ = conn.Close()
		if err != nil {
			rep.Unreached[cn.Name] = err.Error()
			continue
		}
		rep.Missing = append(rep.Missing, missing...)
	}
	slices.Sort(rep.Missing)
	if rep.Missing == nil {
		rep.Missing = []string{}
	}
	return rep, nil
}

// restoreCatalog writes the catalog snapshot of server point m to path.
func restoreCatalog(ctx context.Context, r *repo.Repository, m *repo.Manifest, path string) error {
	if len(m.Disks) != 1 {
		return fmt.Errorf("server point %s has %d disks, want the catalog", m.ID, len(m.Disks))
	}
	dr, err := r.OpenDisk(ctx, m.Disks[0].Index)
	if err != nil {
		return err
	}
	defer dr.Close()
	buf := make([]byte, dr.Size())
	if _, err := dr.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("read the catalog snapshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	for _, side := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + side)
	}
	return os.WriteFile(path, buf, 0o600)
}
