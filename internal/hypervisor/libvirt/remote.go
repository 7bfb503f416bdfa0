package libvirt

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// errRemoteBackup explains why a remote connection cannot back up.
var errRemoteBackup = fmt.Errorf("backups read disks through NBD exports on the VM's host: run kura on that host with qemu:///system: %w", hypervisor.ErrUnsupported)

// connectRemote connects to a libvirt daemon on another host.
func connectRemote(uri string, logger *slog.Logger) (*Connector, error) {
	u, err := url.Parse(uri)
	if err != nil || !strings.HasPrefix(u.Scheme, "qemu") || u.Path != "/system" {
		return nil, fmt.Errorf("%w: %s: use qemu:///system, or qemu+tcp://HOST/system, qemu+ssh://USER@HOST/system, qemu+tls://HOST/system", ErrBadURI, uri)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s: a remote uri needs a host", ErrBadURI, uri)
	}
	lv, err := golibvirt.ConnectToURI(u)
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	return &Connector{uri: uri, lv: lv, log: logger, remote: true, QemuScratchDir: DefaultQemuScratchDir,
		QemuNBD: "qemu-nbd", QemuImg: "qemu-img"}, nil
}

// Remote reports whether the connection is to another host, whose files
// kura reaches only through libvirt storage pools.
func (c *Connector) Remote() bool { return c.remote }

// DiskExists reports whether a volume exists at path on the connection's
// host (for a remote host, in one of its storage pools).
func (c *Connector) DiskExists(ctx context.Context, p string) (bool, error) {
	if !c.remote {
		_, err := os.Lstat(p)
		if err == nil {
			return true, nil
		}
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	pool, err := c.poolFor(p)
	if err != nil {
		return false, err
	}
	_ = c.lv.StoragePoolRefresh(pool, 0)
	if _, err := c.lv.StorageVolLookupByPath(p); err != nil {
		if lvCode(err) == golibvirt.ErrNoStorageVol {
			return false, nil
		}
		return false, mapErr("look up volume "+p, err)
	}
	return true, nil
}

// UploadDisk copies a local image file into a new volume at remotePath on
// the connection's host: the volume is created in the directory pool whose
// target holds remotePath, then the file's bytes are streamed into it.
func (c *Connector) UploadDisk(ctx context.Context, local, remotePath, format string, size int64, overwrite bool) error {
	pool, err := c.poolFor(remotePath)
	if err != nil {
		return err
	}
	_ = c.lv.StoragePoolRefresh(pool, 0)
	if vol, err := c.lv.StorageVolLookupByPath(remotePath); err == nil {
		if !overwrite {
			return fmt.Errorf("volume %s: %w", remotePath, hypervisor.ErrExists)
		}
		if err := c.lv.StorageVolDelete(vol, 0); err != nil {
			return mapErr("delete volume "+remotePath, err)
		}
	}
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	v := libvirtxml.StorageVolume{Name: path.Base(remotePath),
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(size)},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}}}
	xml, err := v.Marshal()
	if err != nil {
		return err
	}
	vol, err := c.lv.StorageVolCreateXML(pool, xml, 0)
	if err != nil {
		return mapErr("create volume "+remotePath, err)
	}
	if err := c.lv.StorageVolUpload(vol, &ctxReader{ctx: ctx, r: f}, 0, uint64(st.Size()), 0); err != nil {
		_ = c.lv.StorageVolDelete(vol, 0)
		return mapErr("upload volume "+remotePath, err)
	}
	return nil
}

// RemoveDisk deletes the volume at path (undoing an upload).
func (c *Connector) RemoveDisk(ctx context.Context, p string) error {
	vol, err := c.lv.StorageVolLookupByPath(p)
	if err != nil {
		return mapErr("look up volume "+p, err)
	}
	return mapErr("delete volume "+p, c.lv.StorageVolDelete(vol, 0))
}

// poolFor finds the directory pool whose target directory holds p.
func (c *Connector) poolFor(p string) (golibvirt.StoragePool, error) {
	pools, _, err := c.lv.ConnectListAllStoragePools(1, golibvirt.ConnectListStoragePoolsActive)
	if err != nil {
		return golibvirt.StoragePool{}, mapErr("list storage pools", err)
	}
	dir := filepath.Dir(p)
	for _, pool := range pools {
		raw, err := c.lv.StoragePoolGetXMLDesc(pool, 0)
		if err != nil {
			continue
		}
		var x libvirtxml.StoragePool
		if x.Unmarshal(raw) == nil && x.Target != nil && filepath.Clean(x.Target.Path) == dir {
			return pool, nil
		}
	}
	return golibvirt.StoragePool{}, fmt.Errorf("no active storage pool on %s has directory %s: give --storage POOL: %w", c.uri, dir, hypervisor.ErrUnsupported)
}

// ctxReader stops an upload when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   *os.File
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
