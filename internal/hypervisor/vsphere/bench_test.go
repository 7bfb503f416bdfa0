package vsphere

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/hypervisor/vsphere/vcsim"
)

// BenchmarkReadDiskHTTP reads a 128 MiB vmfs disk of the simulator's
// datastore the way a backup does: 4 MiB range requests on /folder,
// through the VMDK reader, 4 in flight.
func BenchmarkReadDiskHTTP(b *testing.B) {
	const size = 128 << 20
	sim := vcsim.Start(b)
	raw := filepath.Join(b.TempDir(), "disk.raw")
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		b.Fatal(err)
	}
	sim.NewVM(b, vcsim.VMSpec{Name: "bench", Disks: []vcsim.DiskSpec{{From: raw}}})
	c, err := Connect(context.Background(), sim.URI(""), hypervisorOpts())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p, _ := parseDSPath(sim.Disk(b, "bench", 0))
	b.SetBytes(size)
	for b.Loop() {
		d, err := c.openDisk(context.Background(), p)
		if err != nil {
			b.Fatal(err)
		}
		sem := make(chan struct{}, 4)
		errs := make(chan error, size/(4<<20))
		for off := int64(0); off < size; off += 4 << 20 {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				buf := make([]byte, 4<<20)
				_, err := d.ReadAt(buf, off)
				errs <- err
			}()
		}
		for range size / (4 << 20) {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		d.Close()
	}
}
