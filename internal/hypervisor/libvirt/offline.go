package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// configXML is the domain definition saved with a recovery point.
func (c *Connector) configXML(d golibvirt.Domain) ([]byte, error) {
	x, err := c.lv.DomainGetXMLDesc(d, golibvirt.DomainXMLSecure|golibvirt.DomainXMLInactive)
	if err != nil {
		return nil, mapErr("domain xml of "+d.Name, err)
	}
	return []byte(x), nil
}

// beginOffline exposes the images of a shut-off VM with qemu-nbd. Change
// tracking uses persistent qcow2 bitmaps named like the checkpoints.
func (c *Connector) beginOffline(ctx context.Context, d golibvirt.Domain, vm hypervisor.VM, disks []hypervisor.Disk, opts hypervisor.BackupOptions) (_ *session, err error) {
	s := &session{c: c, dom: d, consistency: hypervisor.ConsistencyOff, owner: opts.Owner}
	if s.config, err = c.configXML(d); err != nil {
		return nil, err
	}
	// Check every base bitmap before changing anything.
	for _, dk := range disks {
		if dk.Format != "qcow2" {
			continue
		}
		info, err := c.imageInfo(ctx, dk.Source, dk.Format)
		if err != nil {
			return nil, err
		}
		for _, b := range info.FormatSpec.Data.Bitmaps {
			if b.Name == opts.NewCheckpoint {
				return nil, fmt.Errorf("offline backup of %s disk %s: bitmap %s: %w", vm.Name, dk.Target, b.Name, hypervisor.ErrExists)
			}
		}
		if opts.BaseCheckpoint == "" {
			continue
		}
		i := slices.IndexFunc(info.FormatSpec.Data.Bitmaps, func(b struct {
			Name  string   `json:"name"`
			Flags []string `json:"flags"`
		}) bool {
			return b.Name == opts.BaseCheckpoint
		})
		switch {
		case i < 0:
			return nil, fmt.Errorf("offline backup of %s disk %s: %w: no bitmap %s in %s", vm.Name, dk.Target,
				hypervisor.ErrCheckpointMissing, opts.BaseCheckpoint, dk.Source)
		case !slices.Contains(info.FormatSpec.Data.Bitmaps[i].Flags, "auto"):
			return nil, fmt.Errorf("offline backup of %s disk %s: %w: bitmap %s is disabled or inconsistent (flags %v)", vm.Name,
				dk.Target, hypervisor.ErrCheckpointMissing, opts.BaseCheckpoint, info.FormatSpec.Data.Bitmaps[i].Flags)
		}
	}
	if s.dir, err = c.sessionDir(vm.UUID, opts.NewCheckpoint); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Close(ctx, false)
		}
	}()
	for _, dk := range disks {
		if dk.Format == "qcow2" {
			if err := c.qemuImg(ctx, "bitmap", "--add", "--enable", dk.Source, opts.NewCheckpoint); err != nil {
				return nil, fmt.Errorf("offline backup of %s disk %s: %w", vm.Name, dk.Target, err)
			}
			s.bitmapDisks = append(s.bitmapDisks, dk)
			s.checkpoint = opts.NewCheckpoint
		}
		incr := opts.BaseCheckpoint != "" && dk.Format == "qcow2"
		srv, err := c.startNBD(ctx, s.dir, dk, opts.BaseCheckpoint, incr)
		if srv != nil {
			s.nbdProcs = append(s.nbdProcs, srv)
		}
		if err != nil {
			return nil, fmt.Errorf("offline backup of %s disk %s: %w", vm.Name, dk.Target, err)
		}
		sd, cl, err := c.openExport(ctx, dk, srv.sock, dk.Target, "qemu:dirty-bitmap:"+opts.BaseCheckpoint, incr)
		if cl != nil {
			s.clients = append(s.clients, cl)
		}
		if err != nil {
			return nil, fmt.Errorf("offline backup of %s disk %s: %w", vm.Name, dk.Target, err)
		}
		if opts.BaseCheckpoint != "" && !incr {
			s.notes = append(s.notes, fmt.Sprintf("disk %s (%s) has no change tracking: read in full", dk.Target, dk.Format))
		}
		s.disks = append(s.disks, sd)
	}
	return s, nil
}

func (c *Connector) qemuImg(ctx context.Context, args ...string) error {
	if out, err := exec.CommandContext(ctx, c.QemuImg, args...).CombinedOutput(); err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "lock") {
			return fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), hypervisor.ErrBusy, msg)
		}
		return fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// nbdServer is a qemu-nbd child process serving one image read-only.
type nbdServer struct {
	cmd     *exec.Cmd
	sock    string
	pidFile string
	done    chan error
}

// startNBD starts qemu-nbd for one disk and waits for its socket.
func (c *Connector) startNBD(ctx context.Context, dir string, dk hypervisor.Disk, base string, withBitmap bool) (*nbdServer, error) {
	srv := &nbdServer{sock: filepath.Join(dir, dk.Target+".sock"), pidFile: filepath.Join(dir, dk.Target+".pid"),
		done: make(chan error, 1)}
	args := []string{"--read-only", "--persistent", "--shared=8",
		"--socket", srv.sock, "--pid-file", srv.pidFile, "--format", dk.Format, "--export-name", dk.Target}
	if withBitmap {
		args = append(args, "--bitmap", base)
	}
	srv.cmd = exec.Command(c.QemuNBD, append(args, dk.Source)...)
	var stderr strings.Builder
	srv.cmd.Stderr = &stderr
	// Its own process group (a Ctrl-C to kura does not reach it before
	// kura has closed its clients), and it dies with kura (parent-death
	// signal) so that a killed kura leaves no server holding the image.
	srv.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := srv.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu-nbd: %w", err)
	}
	go func() { srv.done <- srv.cmd.Wait() }()
	for {
		if _, err := os.Stat(srv.sock); err == nil {
			return srv, nil
		}
		select {
		case err := <-srv.done:
			srv.done <- err
			return srv, fmt.Errorf("qemu-nbd exited: %v: %s", err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			return srv, fmt.Errorf("wait for qemu-nbd: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop terminates qemu-nbd and waits for it.
func (p *nbdServer) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = os.Remove(p.pidFile)
	return nil
}

// settleBitmaps keeps the new bitmap and removes the bitmaps it supersedes
// (and the matching libvirt checkpoint metadata) on success, or removes
// the new bitmap on failure. Another repository's bitmaps stay.
func (c *Connector) settleBitmaps(ctx context.Context, d golibvirt.Domain, disks []hypervisor.Disk, newCP, owner string, success bool) error {
	var errs []error
	for _, dk := range disks {
		info, err := c.imageInfo(ctx, dk.Source, dk.Format)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, b := range info.FormatSpec.Data.Bitmaps {
			drop := b.Name == newCP && !success || success && hypervisor.Superseded(b.Name, owner, newCP)
			if drop {
				errs = append(errs, c.qemuImg(ctx, "bitmap", "--remove", dk.Source, b.Name))
			}
		}
	}
	if success {
		cps, _, err := c.lv.DomainListAllCheckpoints(d, 1, 0)
		if err != nil {
			return errors.Join(append(errs, mapErr("list checkpoints of "+d.Name, err))...)
		}
		for _, cp := range cps {
			if hypervisor.Superseded(cp.Name, owner, newCP) {
				if err := c.lv.DomainCheckpointDelete(cp, golibvirt.DomainCheckpointDeleteMetadataOnly); err != nil {
					errs = append(errs, mapErr("delete checkpoint metadata "+cp.Name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// readPid returns the pid in a qemu-nbd pid file when that process is a
// live qemu-nbd.
func readPid(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmd), "qemu-nbd") {
		return 0, false
	}
	return pid, true
}
