package instant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/repo"
)

// ConfigFormatLibvirt is the configuration format instant VMs are made
// from (engine.ConfigFormatLibvirt).
const ConfigFormatLibvirt = "libvirt-domain-xml"

// ServeCacheBytes is the decoded chunk cache a serving process gives each
// disk (repo.OpenOptions.CacheBytes): room for the read-ahead of several
// streams.
const ServeCacheBytes = 256 << 20

// Manager runs instant VMs and boot verifications on one repository and
// hypervisor connection.
type Manager struct {
	Repo *repo.Repository
	// RepoLocation is recorded with each instant VM (for kura instant
	// list and the serving process).
	RepoLocation string
	// Conn must implement hypervisor.InstantHost (and GuestAgent and
	// Console for boot verification).
	Conn hypervisor.Connector
	// Catalog records boot verification results; may be nil.
	Catalog catalog.Catalog
	// StateDir holds one directory per instant VM.
	StateDir string
	// Launch starts the process serving an instant VM (kura instant serve
	// NAME) and returns once it is started. Nil serves in this process,
	// until the VM is migrated or stopped or the process ends.
	Launch func(ctx context.Context, name string) error
	Logger *slog.Logger

	mu    sync.Mutex
	local map[string]*localServer
}

type localServer struct {
	cancel context.CancelFunc
	done   chan error
}

func (m *Manager) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

type verifyCaps interface {
	hypervisor.InstantHost
	hypervisor.GuestAgent
	hypervisor.Console
}

func (m *Manager) host() (hypervisor.InstantHost, error) {
	h, ok := m.Conn.(hypervisor.InstantHost)
	if !ok || m.Conn == nil {
		return nil, fmt.Errorf("%w (%T)", ErrUnsupported, m.Conn)
	}
	return h, nil
}

func (m *Manager) verifier() (verifyCaps, error) {
	h, ok := m.Conn.(verifyCaps)
	if !ok || m.Conn == nil {
		return nil, fmt.Errorf("%w: no guest agent or console access (%T)", ErrUnsupported, m.Conn)
	}
	return h, nil
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// storageDir resolves --storage: an absolute directory, a storage pool
// name, or by default the directory of the original's first disk.
func (m *Manager) storageDir(ctx context.Context, pm *repo.Manifest, storage string) (string, error) {
	switch {
	case storage == "":
		for _, d := range pm.Disks {
			if filepath.IsAbs(d.Source) {
				return filepath.Dir(d.Source), nil
			}
		}
		return "", errors.New("storage: the original disks have no local path: give a directory or pool")
	case filepath.IsAbs(storage):
		return filepath.Clean(storage), nil
	case strings.ContainsAny(storage, `/\`):
		return "", fmt.Errorf("storage: %q is neither an absolute directory nor a pool name", storage)
	}
	host, err := m.host()
	if err != nil {
		return "", err
	}
	dir, err := host.StoragePoolPath(ctx, storage)
	if err != nil {
		return "", fmt.Errorf("storage pool %s: %w", storage, err)
	}
	return dir, nil
}

// launch starts serving name: through Launch, or in this process.
func (m *Manager) launch(ctx context.Context, name string) error {
	if m.Launch != nil {
		return m.Launch(ctx, name)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ls := &localServer{cancel: cancel, done: make(chan error, 1)}
	m.mu.Lock()
	if m.local == nil {
		m.local = map[string]*localServer{}
	}
	m.local[name] = ls
	m.mu.Unlock()
	go func() { ls.done <- m.Serve(sctx, name) }()
	return nil
}

// StopServing ends the process (or goroutine) serving name and waits for
// it; the instant VM's state stays, so serving can start again (the
// guest's I/O waits meanwhile). It is what a restart of kura does.
func (m *Manager) StopServing(ctx context.Context, name string) error {
	m.mu.Lock()
	ls := m.local[name]
	delete(m.local, name)
	m.mu.Unlock()
	if ls != nil {
		ls.cancel()
		select {
		case err := <-ls.done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	pid := m.serverPID(name)
	if pid == 0 || pid == os.Getpid() {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop the server of %s (pid %d): %w", name, pid, err)
	}
	for pidAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server of %s (pid %d) does not stop: %w", name, pid, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// ResumeServing starts serving name again (after StopServing, or when its
// serving process died).
func (m *Manager) ResumeServing(ctx context.Context, name string) error {
	st, err := m.load(name)
	if err != nil {
		return err
	}
	if pid := m.serverPID(name); pid != 0 {
		return fmt.Errorf("%s: %w (pid %d)", name, ErrServing, pid)
	}
	if err := m.launch(ctx, name); err != nil {
		return err
	}
	return m.waitReady(ctx, st)
}
