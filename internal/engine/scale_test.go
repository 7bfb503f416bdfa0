package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/local"
)

// TestScalePoints (opt-in: KURA_SCALE_VMS=800 KURA_SCALE_POINTS=100,
// optional KURA_SCALE_DIR to keep the repository between runs) measures
// what listing points costs in a repository of VMS × POINTS points on the
// local backend: every manifest read one at a time (ListPoints, what
// every command did before point summaries), the summaries rebuilt from
// nothing and used, a catalog rebuild and a backup job's parent lookup.
// Not a timed test: it logs the figures (docs/benchmarks.md).
func TestScalePoints(t *testing.T) {
	vms, _ := strconv.Atoi(os.Getenv("KURA_SCALE_VMS"))
	per, _ := strconv.Atoi(os.Getenv("KURA_SCALE_POINTS"))
	if vms <= 0 || per <= 0 {
		t.Skip("opt-in: set KURA_SCALE_VMS and KURA_SCALE_POINTS (e.g. 800 and 100)")
	}
	ctx := context.Background()
	dir := os.Getenv("KURA_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, fmt.Sprintf("points-%dx%d", vms, per))
	fresh := false
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		fresh = true
	}
	// Built without fsync (a scratch repository); measured in batch mode.
	be, err := local.OpenOptions(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var r *repo.Repository
	if fresh {
		r, err = repo.Init(ctx, be, repo.InitOptions{Password: "scale", Encrypt: true, KDF: repo.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	} else {
		r, err = repo.Open(ctx, be, "scale", repo.OpenOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if fresh {
		start := time.Now()
		buildPoints(t, r, vms, per)
		t.Logf("built %d points: %s", vms*per, time.Since(start).Round(time.Second))
	}
	measure := func(what string, fn func() string) {
		t.Helper()
		start := time.Now()
		detail := fn()
		t.Logf("%s: %s %s", what, time.Since(start).Round(time.Millisecond), detail)
	}
	measure("every manifest, one at a time (ListPoints)", func() string {
		ms, err := r.ListPoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("(%d points)", len(ms))
	})
	clearCache := func() {
		err := be.List(ctx, "cache/", func(oi storage.ObjectInfo) error { return be.Delete(ctx, oi.Name) })
		if err != nil {
			t.Fatal(err)
		}
	}
	clearCache()
	measure("point summaries, none cached (reads every manifest, writes the summaries)", func() string {
		ms, err := r.PointSummaries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("(%d points)", len(ms))
	})
	var stored int64
	_ = be.List(ctx, "cache/", func(oi storage.ObjectInfo) error { stored += oi.Size; return nil })
	t.Logf("summaries stored: %d bytes (%.0f bytes per point)", stored, float64(stored)/float64(vms*per))
	for range 2 {
		measure("point summaries, cached (kura points list)", func() string {
			ms, err := r.PointSummaries(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("(%d points)", len(ms))
		})
	}
	cat, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "catalog.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	measure("catalog rebuild", func() string {
		n, err := RebuildCatalog(ctx, r, cat)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("(%d points)", n)
	})
	e := &Engine{Repo: r}
	measure("parent lookup of a backup job of one VM", func() string {
		latest, err := e.latestPoints(ctx, []hypervisor.VM{{Name: "vm-7", UUID: vmUUID(7)}})
		if err != nil || latest[vmUUID(7)] == nil || len(latest[vmUUID(7)].Config) == 0 {
			t.Fatalf("parent lookup: %v %v", latest, err)
		}
		return "(newest point of vm-7, its manifest read)"
	})
	measure("parent lookup of a backup job of every VM", func() string {
		all := make([]hypervisor.VM, vms)
		for i := range all {
			all[i] = hypervisor.VM{Name: fmt.Sprint("vm-", i), UUID: vmUUID(i)}
		}
		latest, err := e.latestPoints(ctx, all)
		if err != nil || len(latest) != vms {
			t.Fatalf("parent lookup: %d %v", len(latest), err)
		}
		return fmt.Sprintf("(%d manifests read)", len(latest))
	})
}

func vmUUID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// buildPoints commits per points of each of vms VMs, a day apart, each
// with a 100 GB disk (one index shared by all: the listing is measured,
// not the data) and a domain XML of about 3 KB.
func buildPoints(t *testing.T, r *repo.Repository, vms, per int) {
	ctx := context.Background()
	w, err := r.NewWriter(ctx, "scale")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id, st, err := w.WriteDisk(ctx, repo.DiskSource{Reader: strings.NewReader(""), Size: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.BytesRead, st.BytesNew, st.BytesStored = 3<<30, 1<<30, 600<<20
	xml := "<domain type='kvm'>" + strings.Repeat("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/></disk>", 40) + "</domain>"
	base := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	for p := range per {
		for v := range vms {
			started := base.Add(time.Duration(p)*24*time.Hour + time.Duration(v)*time.Second)
			m := &repo.Manifest{ID: repo.NewPointID(started), Started: started, Finished: started.Add(3 * time.Minute),
				VM:   repo.VMInfo{Name: fmt.Sprint("vm-", v), UUID: vmUUID(v), Hypervisor: "libvirt", URI: "qemu:///system", Host: "hv1"},
				Kind: "incremental", Consistency: "application", Checkpoint: "kura-0a1b2c3d-" + started.Format("20060102T150405Z"),
				Config: []byte(xml), ConfigFormat: "libvirt-domain-xml", Stats: st, KuraHost: "backup1",
				Disks: []repo.DiskEntry{{Target: "vda", Source: fmt.Sprintf("/var/lib/libvirt/images/vm-%d.qcow2", v), Format: "qcow2",
					Size: 100 << 30, ChunkSize: r.Config().ChunkSize, Index: id, Stats: st, Incremental: true}}}
			if err := w.Commit(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
}
