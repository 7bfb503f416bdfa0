package instant

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/nbd"
	"github.com/kurabackup/kura/internal/repo"
)

// Serve serves the disks of instant VM name until ctx ends or the VM is
// migrated or stopped (then Migrate or Stop ends it). It holds a reader
// lease on the point meanwhile, listens on the VM's socket (a stale socket
// of a dead server is replaced; a live one is ErrServing), and resumes the
// VM if it paused while no server answered.
func (m *Manager) Serve(ctx context.Context, name string) error {
	host, err := m.host()
	if err != nil {
		return err
	}
	st, err := m.load(name)
	if err != nil {
		return err
	}
	switch {
	case st.Phase == PhaseMigrated || st.Phase == PhaseStopped:
		return fmt.Errorf("instant vm %s is %s: nothing to serve", name, st.Phase)
	case st.RepoID != m.Repo.Config().ID:
		return fmt.Errorf("instant vm %s is served from repository %s (%s), not the one opened", name, st.RepoID, st.Repo)
	}
	lease, pm, err := m.Repo.LeasePoint(ctx, "instant "+name, st.Point)
	if err != nil {
		return fmt.Errorf("instant vm %s: %w", name, err)
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	srv := nbd.NewServer(nbd.ServerOptions{Logger: m.log()})
	for _, d := range st.Disks {
		r, err := m.Repo.OpenDisk(ctx, d.Index)
		if err != nil {
			return fmt.Errorf("instant vm %s disk %s: %w", name, d.Target, err)
		}
		defer r.Close()
		if err := srv.AddExport(d.Target, fmt.Sprintf("%s %s at %s", pm.VM.Name, d.Target, pm.ID), newDiskExport(r)); err != nil {
			return err
		}
	}
	tag := hypervisor.InstantTag{Role: hypervisor.RoleInstant, Point: st.Point, Source: st.SourceUUID}
	if _, err := host.InstantDir(ctx, filepath.Base(st.Dir), tag); err != nil {
		return err
	}
	ln, err := listenSocket(st.Socket)
	if err != nil {
		return fmt.Errorf("instant vm %s: %w", name, err)
	}
	if err := writeFileAtomic(m.pidPath(name), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		ln.Close()
		return err
	}
	defer m.clearPID(name)
	m.log().Info("serving instant vm", "vm", name, "point", st.Point, "socket", st.Socket)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan struct{})
	go func() {
		select {
		case <-lease.Lost():
			m.log().Error("reader lease lost: the point may be pruned; stopping", "vm", name, "point", st.Point)
			close(lost)
			cancel()
		case <-sctx.Done():
		}
	}()
	go m.resumeLoop(sctx, host, st)
	go m.statsLoop(sctx, name, srv)
	err = srv.Serve(sctx, ln)
	m.writeStats(name, srv)
	select {
	case <-lost:
		return fmt.Errorf("instant vm %s: reader lease on point %s lost", name, st.Point)
	default:
	}
	if errors.Is(err, nbd.ErrServerClosed) {
		return nil
	}
	return err
}

// listenSocket listens on a unix socket the hypervisor can connect to,
// replacing the socket file of a server that is gone.
func listenSocket(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrServing)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	// The directory (mode 0700, QEMU's) is the access control.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (m *Manager) clearPID(name string) {
	b, err := os.ReadFile(m.pidPath(name))
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(m.pidPath(name))
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// resumeWindow is how long after it starts a server resumes its VM when a
// read error (no server) paused it.
const resumeWindow = 2 * time.Minute

// resumeLoop resumes the VM while it is paused by a disk error early in
// the server's life (the restart of a server). QEMU reconnects on the
// resumed request, which may fail once more while it does: keep trying.
func (m *Manager) resumeLoop(ctx context.Context, host hypervisor.InstantHost, st *State) {
	deadline := time.Now().Add(resumeWindow)
	for time.Now().Before(deadline) {
		if st.UUID != "" {
			if ok, err := host.ResumeIOPaused(ctx, st.UUID); err != nil && ctx.Err() == nil && !errors.Is(err, hypervisor.ErrVMNotFound) {
				m.log().Warn("resume instant vm", "vm", st.Name, "err", err)
			} else if ok {
				m.log().Info("instant vm resumed after its disks' server came back", "vm", st.Name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (m *Manager) statsLoop(ctx context.Context, name string, srv *nbd.Server) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
			m.writeStats(name, srv)
		}
	}
}

func (m *Manager) writeStats(name string, srv *nbd.Server) {
	if _, err := os.Stat(m.vmDir(name)); err != nil {
		return // removed (stopped or migrated)
	}
	if err := writeJSON(m.statsPath(name), Stats{Updated: time.Now().UTC(), Exports: srv.Stats()}); err != nil {
		m.log().Warn("write server stats", "vm", name, "err", err)
	}
}

// waitReady waits until the VM's server answers on its socket.
func (m *Manager) waitReady(ctx context.Context, st *State) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := nbd.Dial(dctx, "unix", st.Socket, nbd.Options{Export: st.Disks[0].Target})
		dcancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server of instant vm %s does not answer on %s (see %s): %w", st.Name, st.Socket, m.LogPath(st.Name), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// openPoint leases a point and checks it can become a VM.
func (m *Manager) openPoint(ctx context.Context, purpose, point string) (*repo.Lease, *repo.Manifest, error) {
	lease, pm, err := m.Repo.LeasePoint(ctx, purpose, point)
	if err != nil {
		return nil, nil, err
	}
	if len(pm.Config) == 0 || (pm.ConfigFormat != "" && pm.ConfigFormat != ConfigFormatLibvirt) {
		_ = lease.Release(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("point %s has no libvirt configuration (format %q): it cannot run as a vm", pm.ID, pm.ConfigFormat)
	}
	if len(pm.Disks) == 0 {
		_ = lease.Release(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("point %s has no disks", pm.ID)
	}
	return lease, pm, nil
}
