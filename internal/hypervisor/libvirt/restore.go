package libvirt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kurabackup/kura/internal/diskwrite"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt/domxml"
)

// Kind is the libvirt connector's kind (Capabilities.Kind).
const Kind = "libvirt"

// Driver registers the libvirt connector for its URI schemes.
func Driver() hypervisor.Driver {
	return hypervisor.Driver{Kind: Kind, Schemes: []string{"qemu", "qemu+tcp", "qemu+ssh", "qemu+tls"},
		Open: func(ctx context.Context, uri string, opts hypervisor.OpenOptions) (hypervisor.Connector, error) {
			return Connect(ctx, uri, opts.Logger)
		},
		Formats: []hypervisor.ConfigFormat{domxml.Format()}}
}

// Capabilities implements hypervisor.Connector. A remote connection
// neither backs up nor reaches files directly: restored disks are staged
// locally and uploaded into a storage pool.
func (c *Connector) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{Kind: Kind, ConfigFormat: domxml.ConfigFormat,
		RestoreFormats: []string{domxml.ConfigFormat}, Backup: !c.remote,
		ChangeTracking: hypervisor.TrackCheckpoints, OfflineChangeTracking: !c.remote, Pause: !c.remote,
		RemoteDisks: c.remote}
}

func (c *Connector) planner() domxml.Planner {
	return domxml.Planner{Kind: Kind, URI: c.uri, PoolPath: c.StoragePoolPath}
}

// PlanRestore implements hypervisor.Restorer (domxml.Planner; --storage
// may name a directory storage pool of the host).
func (c *Connector) PlanRestore(ctx context.Context, src *hypervisor.RestoreSource, req hypervisor.RestoreRequest) (*hypervisor.RestorePlan, error) {
	return c.planner().PlanRestore(ctx, src, req)
}

// PrepareRestore implements hypervisor.Restorer.
func (c *Connector) PrepareRestore(ctx context.Context, src *hypervisor.RestoreSource, p *hypervisor.RestorePlan) ([]byte, []string, error) {
	return c.planner().PrepareRestore(ctx, src, p)
}

// CreateDisk implements hypervisor.Restorer: a thin image written under a
// partial name on this host (qcow2 through qemu-nbd, raw with pwrite), or,
// for a remote host, a staged image in d.ScratchDir uploaded into the
// storage pool holding d.Path at Commit.
func (c *Connector) CreateDisk(ctx context.Context, d hypervisor.NewDisk) (hypervisor.DiskSink, error) {
	opts := diskwrite.Options{Overwrite: d.Overwrite, Logger: c.log, ScratchDir: d.ScratchDir}
	if !c.remote {
		if err := os.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
			return nil, fmt.Errorf("create directory of %s: %w", d.Path, err)
		}
		return diskwrite.Create(ctx, diskwrite.Target{Path: d.Path, Format: d.Format, Size: d.Size}, opts)
	}
	if _, err := c.poolFor(d.Path); err != nil {
		return nil, err
	}
	dir, err := diskwrite.StagingDir(d.ScratchDir, "upload-")
	if err != nil {
		return nil, err
	}
	opts.Overwrite = true
	w, err := diskwrite.Create(ctx, diskwrite.Target{Path: filepath.Join(dir, filepath.Base(d.Path)), Format: d.Format, Size: d.Size}, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &uploadSink{Writer: w, c: c, dir: dir, d: d}, nil
}

// uploadSink stages an image locally and uploads it at Commit.
type uploadSink struct {
	*diskwrite.Writer
	c        *Connector
	dir      string
	d        hypervisor.NewDisk
	uploaded bool
}

func (u *uploadSink) Commit(ctx context.Context) error {
	defer os.RemoveAll(u.dir)
	if err := u.Writer.Commit(ctx); err != nil {
		return err
	}
	local := filepath.Join(u.dir, filepath.Base(u.d.Path))
	if err := u.c.UploadDisk(ctx, local, u.d.Path, u.d.Format, u.d.Size, u.d.Overwrite); err != nil {
		return err
	}
	u.uploaded = true
	return nil
}

// Abort removes the staged image, or the uploaded volume after Commit.
func (u *uploadSink) Abort(ctx context.Context) error {
	defer os.RemoveAll(u.dir)
	if u.uploaded {
		u.uploaded = false
		return u.c.RemoveDisk(ctx, u.d.Path)
	}
	return u.Writer.Abort(ctx)
}
