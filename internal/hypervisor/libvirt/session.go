package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// closeTimeout bounds the clean-up done by Close and by failed begins.
const closeTimeout = 2 * time.Minute

// session is a backup session of a running (online) or shut-off VM.
type session struct {
	c           *Connector
	dom         golibvirt.Domain
	online      bool
	dir         string
	checkpoint  string // created by this session ("" when none)
	owner       string // owner tag of the repository (hypervisor.BackupOptions.Owner)
	consistency hypervisor.Consistency
	config      []byte
	notes       []string
	disks       []hypervisor.SessionDisk
	clients     []io.Closer
	nbdProcs    []*nbdServer      // offline only
	bitmapDisks []hypervisor.Disk // offline qcow2 disks holding the new bitmap

	closeOnce sync.Once
	closeErr  error
}

func (s *session) Disks() []hypervisor.SessionDisk     { return s.disks }
func (s *session) Config() ([]byte, string)            { return s.config, "libvirt-domain-xml" }
func (s *session) Consistency() hypervisor.Consistency { return s.consistency }
func (s *session) Checkpoint() string                  { return s.checkpoint }
func (s *session) Notes() []string                     { return s.notes }

// Close ends the session (see hypervisor.BackupSession). It ignores ctx's
// cancellation: clean-up runs with its own deadline.
func (s *session) Close(ctx context.Context, success bool) error {
	s.closeOnce.Do(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		s.closeErr = s.end(cctx, success)
	})
	return s.closeErr
}

func (s *session) end(ctx context.Context, success bool) error {
	var errs []error
	for _, cl := range s.clients {
		_ = cl.Close()
	}
	if s.online {
		if err := s.c.endJob(ctx, s.dom); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range s.nbdProcs {
		if err := p.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.checkpoint != "" {
		var err error
		if s.online {
			err = s.c.settleCheckpoints(s.dom, s.checkpoint, s.owner, success)
		} else {
			err = s.c.settleBitmaps(ctx, s.dom, s.bitmapDisks, s.checkpoint, s.owner, success)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove scratch dir: %w", err))
		}
		liveDirs.Delete(s.dir)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close backup session of %s: %w", s.dom.Name, err)
	}
	return nil
}

// endJob aborts the domain's backup job and waits, up to closeTimeout,
// until libvirt has no job on it.
func (c *Connector) endJob(ctx context.Context, d golibvirt.Domain) error {
	if err := c.abortJob(d); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, closeTimeout)
	defer cancel()
	c.waitJobEnd(wctx, d)
	return nil
}

// abortJob ends the pull-mode backup job of a domain and waits until
// libvirt has torn it down (the abort returns before); no job is fine.
func (c *Connector) abortJob(d golibvirt.Domain) error {
	err := c.lv.DomainAbortJob(d)
	if err != nil && lvCode(err) != golibvirt.ErrOperationInvalid && lvCode(err) != golibvirt.ErrNoDomain {
		return mapErr("abort backup job of "+d.Name, err)
	}
	for wait := (backoff{}); wait.total < 30*time.Second; {
		_, err := c.lv.DomainBackupGetXMLDesc(d, 0)
		if err != nil {
			return nil // no backup job (or no domain) any more
		}
		time.Sleep(wait.next())
	}
	return fmt.Errorf("abort backup job of %s: %w: the job did not end within 30 s", d.Name, hypervisor.ErrBusy)
}

// waitJobEnd waits until the domain has no job: DomainAbortJob returns
// before a loaded host has finished ending the job, and a session that
// returned from Close must not leave it running (the next backup would be
// refused as busy, cleanup would report it).
func (c *Connector) waitJobEnd(ctx context.Context, d golibvirt.Domain) {
	var wait backoff
	for {
		typ, _, _, _, _, _, _, _, _, _, _, _, err := c.lv.DomainGetJobInfo(d)
		if err != nil || golibvirt.DomainJobType(typ) == golibvirt.DomainJobNone {
			return
		}
		t := time.NewTimer(wait.next())
		select {
		case <-ctx.Done():
			t.Stop()
			c.log.Warn("backup job still active after its abort", "vm", d.Name)
			return
		case <-t.C:
		}
	}
}

// settleCheckpoints keeps the new checkpoint and drops the ones it
// supersedes (success: older ones of the same owner, never another
// repository's), or drops the new one so the previous stays the base.
func (c *Connector) settleCheckpoints(d golibvirt.Domain, newCP, owner string, success bool) error {
	if !success {
		return c.deleteCheckpoint(d, newCP)
	}
	cps, _, err := c.lv.DomainListAllCheckpoints(d, 1, 0)
	if err != nil {
		return mapErr("list checkpoints of "+d.Name, err)
	}
	var errs []error
	for _, cp := range cps {
		if hypervisor.Superseded(cp.Name, owner, newCP) {
			errs = append(errs, c.deleteCheckpoint(d, cp.Name))
		}
	}
	return errors.Join(errs...)
}

// deleteCheckpoint deletes a checkpoint (merging its bitmap into its
// parent's). For a shut-off domain whose bitmap is already gone, only the
// metadata is removed. A missing checkpoint is fine.
func (c *Connector) deleteCheckpoint(d golibvirt.Domain, name string) error {
	cp, err := c.lv.DomainCheckpointLookupByName(d, name, 0)
	if lvCode(err) == golibvirt.ErrNoDomainCheckpoint {
		return nil
	}
	if err != nil {
		return mapErr("lookup checkpoint "+name, err)
	}
	if err := c.lv.DomainCheckpointDelete(cp, 0); err != nil {
		c.log.Debug("checkpoint delete failed, removing metadata only", "vm", d.Name, "checkpoint", name, "err", err)
		if err2 := c.lv.DomainCheckpointDelete(cp, golibvirt.DomainCheckpointDeleteMetadataOnly); err2 != nil {
			return mapErr("delete checkpoint "+name, err)
		}
	}
	return nil
}

// sessionDir creates the scratch directory of a session, owned by the
// QEMU user so QEMU can create its socket and scratch files there.
func (c *Connector) sessionDir(uuid, checkpoint string) (string, error) {
	uid, gid, err := qemuOwner()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.QemuScratchDir, 0o750); err != nil {
		return "", fmt.Errorf("create scratch dir: %w", err)
	}
	if err := os.Chown(c.QemuScratchDir, uid, gid); err != nil {
		return "", fmt.Errorf("chown scratch dir: %w", err)
	}
	if checkpoint == "" || strings.ContainsAny(checkpoint, "/\x00 '\"<>&") {
		return "", fmt.Errorf("bad checkpoint name %q", checkpoint)
	}
	dir := filepath.Join(c.QemuScratchDir, sessionDirName(uuid, checkpoint))
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("scratch dir %s: %w (a leftover of a killed run?)", dir, hypervisor.ErrExists)
		}
		return "", fmt.Errorf("create scratch dir: %w", err)
	}
	if err := writeOwner(dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		_ = os.RemoveAll(dir)
		liveDirs.Delete(dir)
		return "", fmt.Errorf("chown scratch dir: %w", err)
	}
	return dir, nil
}

// BeginBackup implements hypervisor.Connector.
func (c *Connector) BeginBackup(ctx context.Context, vm hypervisor.VM, opts hypervisor.BackupOptions) (hypervisor.BackupSession, error) {
	if c.remote {
		return nil, fmt.Errorf("back up %s on %s: %w", vm.Name, c.uri, errRemoteBackup)
	}
	key := vm.UUID
	if key == "" {
		key = vm.Name
	}
	d, err := c.lookup(key)
	if err != nil {
		return nil, err
	}
	cur, err := c.describe(ctx, d)
	if err != nil {
		return nil, err
	}
	var disks []hypervisor.Disk
	for _, dk := range cur.Disks {
		if dk.Protectable && (len(opts.Disks) == 0 || slices.Contains(opts.Disks, dk.Target)) {
			disks = append(disks, dk)
		}
	}
	if len(disks) == 0 {
		return nil, fmt.Errorf("backup %s: %w: no protectable disk selected", vm.Name, hypervisor.ErrUnsupported)
	}
	start := time.Now()
	note, err := c.reclaim(ctx, d, cur)
	if err != nil {
		return nil, err
	}
	if note != "" { // a killed run may have left the vm paused: look again
		if cur, err = c.describe(ctx, d); err != nil {
			return nil, err
		}
	}
	var s *session
	if cur.State == hypervisor.PowerOff {
		s, err = c.beginOffline(ctx, d, cur, disks, opts)
	} else {
		s, err = c.beginOnline(ctx, d, cur, disks, opts)
	}
	if err != nil {
		return nil, err
	}
	if note != "" {
		s.notes = append([]string{note}, s.notes...)
	}
	c.log.Info("backup session open", "vm", vm.Name, "online", s.online, "checkpoint", s.checkpoint,
		"base", opts.BaseCheckpoint, "consistency", s.consistency, "took", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// backoff paces a poll for libvirt tearing a job down, which takes a few
// milliseconds on an idle host and much longer on a loaded one: 2 ms
// doubling up to 50 ms (a fixed 50 ms cost every backup 50 ms at its
// close, for a teardown of 5).
type backoff struct{ d, total time.Duration }

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, 2*time.Millisecond), 50*time.Millisecond)
	b.total += b.d
	return b.d
}
