package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// copyPoll is how often CopyDisks looks at its block jobs.
const copyPoll = 200 * time.Millisecond

// CopyDisks implements hypervisor.InstantHost with libvirt block copy
// jobs (a mirror of the whole chain, overlay and backing, into a new
// image, which QEMU keeps in sync with every guest write), then one pivot
// per disk once all of them are in sync. Until the pivot the VM runs on
// its old disks: aborting a job (on failure or cancellation) loses
// nothing the guest wrote.
func (c *Connector) CopyDisks(ctx context.Context, nameOrUUID string, disks []hypervisor.DiskCopy, opts hypervisor.CopyOptions) error {
	if err := c.localOnly("copy disks"); err != nil {
		return err
	}
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	if on, err := c.active(d); err != nil {
		return err
	} else if !on {
		return fmt.Errorf("copy disks of %s: %w: the vm is not running", d.Name, hypervisor.ErrUnsupported)
	}
	for _, dc := range disks {
		if dc.Format != "qcow2" && dc.Format != "raw" {
			return fmt.Errorf("copy disk %s: format %q is not qcow2 or raw", dc.Target, dc.Format)
		}
		if !filepath.IsAbs(dc.Dest) || strings.ContainsAny(dc.Dest, "'\"<>&\x00") {
			return fmt.Errorf("copy disk %s: destination %q is not a plain absolute path", dc.Target, dc.Dest)
		}
		if err := c.cancelStaleCopy(d, dc.Target); err != nil {
			return err
		}
		if _, err := os.Lstat(dc.Dest); err == nil {
			return fmt.Errorf("copy disk %s: %s: %w", dc.Target, dc.Dest, hypervisor.ErrExists)
		}
	}
	var started []hypervisor.DiskCopy
	undo := func() {
		for _, dc := range started {
			c.abortCopy(d, dc)
		}
	}
	for _, dc := range disks {
		dest := fmt.Sprintf("<disk type='file'><source file='%s'/><driver type='%s'/></disk>", dc.Dest, dc.Format)
		var params []golibvirt.TypedParam
		if opts.Bandwidth > 0 {
			params = append(params, golibvirt.TypedParam{Field: golibvirt.DomainBlockCopyBandwidth,
				Value: *golibvirt.NewTypedParamValueUllong(uint64(opts.Bandwidth))})
		}
		if err := c.lv.DomainBlockCopy(d, dc.Target, dest, params, golibvirt.DomainBlockCopyTransientJob); err != nil {
			undo()
			_ = os.Remove(dc.Dest)
			return mapErr(fmt.Sprintf("start copy of %s disk %s", d.Name, dc.Target), err)
		}
		started = append(started, dc)
		c.log.Info("disk copy started", "vm", d.Name, "disk", dc.Target, "dest", dc.Dest)
	}
	if err := c.waitInSync(ctx, d, disks, opts.Progress); err != nil {
		undo()
		return err
	}
	for i, dc := range disks {
		if err := c.pivot(ctx, d, dc); err != nil {
			for _, rest := range disks[i:] {
				c.abortCopy(d, rest)
			}
			var done []string
			for _, p := range disks[:i] {
				done = append(done, p.Target)
			}
			return fmt.Errorf("%w (disks switched to their copies: %v)", err, done)
		}
	}
	return nil
}

// jobInfo returns the block job on a disk: found, type, done and total.
func (c *Connector) jobInfo(d golibvirt.Domain, target string) (bool, golibvirt.DomainBlockJobType, uint64, uint64, error) {
	found, typ, _, cur, end, err := c.lv.DomainGetBlockJobInfo(d, target, 0)
	if err != nil {
		return false, 0, 0, 0, mapErr(fmt.Sprintf("block job of %s disk %s", d.Name, target), err)
	}
	return found == 1, golibvirt.DomainBlockJobType(typ), cur, end, nil
}

// cancelStaleCopy aborts a copy job a killed run left on the disk; any
// other job makes the disk busy.
func (c *Connector) cancelStaleCopy(d golibvirt.Domain, target string) error {
	found, typ, _, _, err := c.jobInfo(d, target)
	if err != nil || !found {
		return err
	}
	if typ != golibvirt.DomainBlockJobTypeCopy {
		return fmt.Errorf("copy disk %s of %s: %w: a block job of type %d runs on it", target, d.Name, hypervisor.ErrBusy, typ)
	}
	c.log.Warn("cancelling a disk copy left by an earlier run", "vm", d.Name, "disk", target)
	if err := c.lv.DomainBlockJobAbort(d, target, 0); err != nil {
		return mapErr("cancel stale copy of disk "+target, err)
	}
	return c.waitJobGone(d, target)
}

func (c *Connector) waitJobGone(d golibvirt.Domain, target string) error {
	for i := 0; i < 150; i++ {
		found, _, _, _, err := c.jobInfo(d, target)
		if err != nil || !found {
			return err
		}
		time.Sleep(copyPoll)
	}
	return fmt.Errorf("block job on %s disk %s does not end", d.Name, target)
}

// abortCopy cancels one copy without switching to it, and removes the
// partial image.
func (c *Connector) abortCopy(d golibvirt.Domain, dc hypervisor.DiskCopy) {
	if found, _, _, _, err := c.jobInfo(d, dc.Target); err == nil && found {
		if err := c.lv.DomainBlockJobAbort(d, dc.Target, 0); err != nil {
			c.log.Warn("cancel disk copy", "vm", d.Name, "disk", dc.Target, "err", err)
		}
		_ = c.waitJobGone(d, dc.Target)
	}
	if err := os.Remove(dc.Dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("remove partial copy", "path", dc.Dest, "err", err)
	}
	c.log.Info("disk copy cancelled: the vm stays on its disks", "vm", d.Name, "disk", dc.Target)
}

// waitInSync polls the jobs until every copy mirrors its disk.
func (c *Connector) waitInSync(ctx context.Context, d golibvirt.Domain, disks []hypervisor.DiskCopy, progress func(string, int64, int64)) error {
	for {
		ready := 0
		for _, dc := range disks {
			found, _, cur, end, err := c.jobInfo(d, dc.Target)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("copy of %s disk %s ended before it was in sync (see the vm's qemu log)", d.Name, dc.Target)
			}
			if progress != nil {
				progress(dc.Target, int64(cur), int64(end))
			}
			if end > 0 && cur == end {
				ready++
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy disks of %s: %w", d.Name, err)
		}
		if ready == len(disks) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("copy disks of %s: %w", d.Name, ctx.Err())
		case <-time.After(copyPoll):
		}
	}
}

// pivot switches the VM to the copy of one disk, retrying while QEMU
// says the mirror is not ready yet.
func (c *Connector) pivot(ctx context.Context, d golibvirt.Domain, dc hypervisor.DiskCopy) error {
	for attempt := 0; ; attempt++ {
		err := c.lv.DomainBlockJobAbort(d, dc.Target, golibvirt.DomainBlockJobAbortPivot)
		if err == nil {
			c.log.Info("disk switched to its copy", "vm", d.Name, "disk", dc.Target, "path", dc.Dest)
			return c.waitJobGone(d, dc.Target)
		}
		if attempt >= 50 || !strings.Contains(err.Error(), "ready") {
			return mapErr(fmt.Sprintf("switch %s disk %s to its copy", d.Name, dc.Target), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switch %s disk %s to its copy: %w", d.Name, dc.Target, ctx.Err())
		case <-time.After(copyPoll):
		}
	}
}
