package diskwrite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kurabackup/kura/internal/vmdk"
)

// vmdkFile writes a monolithicSparse VMDK (package vmdk): one file whose
// zero grains stay unallocated, readable by VMware products, qemu-img and
// kura itself.
type vmdkFile struct {
	f *os.File
	w *vmdk.SparseWriter
}

func createVMDK(partial, final string, size int64) (*vmdkFile, error) {
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create vmdk image: %w", err)
	}
	w, err := vmdk.NewSparseWriter(f, size, filepath.Base(final), "lsilogic")
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create vmdk image: %w", err)
	}
	return &vmdkFile{f: f, w: w}, nil
}

func (v *vmdkFile) writeAt(_ context.Context, p []byte, off int64) error {
	_, err := v.w.WriteAt(p, off)
	return err
}

// zero writes zeros (Rewrite mode): grains stay allocated.
func (v *vmdkFile) zero(_ context.Context, off, length int64) error {
	buf := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(buf)))
		if _, err := v.w.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

func (v *vmdkFile) finish(context.Context) error {
	if err := v.w.Close(); err != nil {
		v.f.Close()
		return err
	}
	return v.f.Close()
}

func (v *vmdkFile) kill() { v.f.Close() }
