package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// remoteDisks is implemented by connectors to a hypervisor on another host
// (a remote libvirt), whose files kura reaches only through the hypervisor:
// restored images are written locally, then uploaded into its storage.
type remoteDisks interface {
	Remote() bool
	DiskExists(ctx context.Context, path string) (bool, error)
	UploadDisk(ctx context.Context, local, remotePath, format string, size int64, overwrite bool) error
	RemoveDisk(ctx context.Context, path string) error
}

// remote returns the connector's remote-disk side, or nil for a local host.
func (e *Engine) remote() remoteDisks {
	if rd, ok := e.Conn.(remoteDisks); ok && rd.Remote() {
		return rd
	}
	return nil
}

// diskExists reports whether an image exists at path on the target host.
func (e *Engine) diskExists(ctx context.Context, path string) (bool, error) {
	if rd := e.remote(); rd != nil {
		return rd.DiskExists(ctx, path)
	}
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// pendingUpload is a locally written image waiting to be uploaded.
type pendingUpload struct {
	local, remote, format string
	size                  int64
	overwrite             bool
}

// stagingPath is where an image for a remote host is written first.
func stagingPath(scratch, target, format string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if scratch == "" {
		scratch = os.TempDir()
	}
	return filepath.Join(scratch, "upload-"+hex.EncodeToString(b[:]), target+"."+format)
}

// upload sends every staged image to the remote host; on failure the
// volumes already uploaded are removed again. Staged files are removed.
func (p *pendingDisks) upload(ctx context.Context, rd remoteDisks) error {
	defer p.removeStaged()
	for i, u := range p.uploads {
		if err := rd.UploadDisk(ctx, u.local, u.remote, u.format, u.size, u.overwrite); err != nil {
			for _, done := range p.uploads[:i] {
				_ = rd.RemoveDisk(context.WithoutCancel(ctx), done.remote)
			}
			return err
		}
	}
	return nil
}

func (p *pendingDisks) removeStaged() {
	for _, u := range p.uploads {
		_ = os.RemoveAll(filepath.Dir(u.local))
	}
}
