package fsread_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fidelity"
)

// kitSource is the host tree the fidelity kit copies: at least 10,000
// real files (KURA_FIDELITY_FILES overrides, for quick local runs).
func kitSource() fidelity.Source {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("KURA_FIDELITY_FILES")); err == nil && v > 0 {
		n = v
	}
	return fidelity.Source{Roots: []string{"/usr/share"}, MinFiles: n, MaxFile: 4 << 20, MaxBytes: 400 << 20}
}

// kitImageSize is the size of each kit image.
const kitImageSize = 768 << 20

func needKit(t *testing.T) *fidelity.Kit {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatal("the fidelity kit needs root for loop mounts (KURA_TEST_STRICT=1)")
		}
		t.Skip("the fidelity kit needs root for loop mounts")
	}
	needTools(t, fidelity.Tools()...)
	kit, err := fidelity.Build(context.Background(), kitSource(), fidelity.Kinds, kitImageSize, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return kit
}

// TestFidelity compares, for every kind of the kit, every entry kura's
// reader shows with what the kernel shows of the same image, and then
// the same filesystems found on MBR, GPT, whole and LVM disks.
func TestFidelity(t *testing.T) {
	kit := needKit(t)
	ctx := context.Background()
	want := map[string]fidelity.Snapshot{}
	for _, k := range fidelity.Kinds {
		t.Run(k.Name, func(t *testing.T) {
			mnt, unmount, err := fidelity.Mount(ctx, k, kit.Images[k.Name])
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			ref, err := fidelity.SnapshotDir(ctx, mnt)
			tMount := time.Since(start)
			if uerr := unmount(); err == nil {
				err = uerr
			}
			if err != nil {
				t.Fatal(err)
			}
			want[k.Name] = ref
			start = time.Now()
			got, err := fidelity.SnapshotFS(ctx, openImage(t, kit.Images[k.Name], k.FS))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("snapshots: kernel %v, kura %v", tMount.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			report(t, k.Name, ref, fidelity.Compare(ref, got, fidelity.ListingRules(k)))
		})
	}
	t.Run("disks", func(t *testing.T) {
		disks, err := kit.Disks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, pl := range fidelity.Placements {
			k, _ := fidelity.KindByName(pl.Kind)
			ref := want[pl.Kind]
			if ref == nil {
				t.Fatalf("no reference snapshot of %s", pl.Kind)
			}
			fsys := openVolume(t, disks[pl.Disk], pl)
			got, err := fidelity.SnapshotFS(ctx, fsys)
			if err != nil {
				t.Fatalf("%s volume %s: %v", pl.Disk, pl.Volume, err)
			}
			report(t, pl.Disk+" "+pl.Volume, ref, fidelity.Compare(ref, got, fidelity.ListingRules(k)))
		}
	})
}

// report fails the test with (at most 40 of) the mismatches.
func report(t *testing.T, what string, ref fidelity.Snapshot, mism []string) {
	t.Helper()
	if ref.Files() < kitSource().MinFiles {
		t.Errorf("%s: only %d files in the image", what, ref.Files())
	}
	if len(mism) == 0 {
		t.Logf("%s: %d entries (%d files), zero mismatches", what, len(ref), ref.Files())
		return
	}
	for i, m := range mism {
		if i == 40 {
			t.Errorf("... and %d more", len(mism)-40)
			break
		}
		t.Error(m)
	}
	t.Errorf("%s: %d mismatches in %d entries", what, len(mism), len(ref))
}

// openVolume opens the volume a placement names on a disk image.
func openVolume(t *testing.T, disk string, pl fidelity.Placement) fsread.FS {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	ctx := context.Background()
	vols, err := fsread.Volumes(ctx, f, st.Size())
	if err != nil {
		t.Fatalf("%s: Volumes: %v", disk, err)
	}
	for _, v := range vols {
		if v.Name() != pl.Volume {
			continue
		}
		if v.Scheme != pl.Scheme {
			t.Errorf("%s volume %s: scheme %q, want %q", pl.Disk, pl.Volume, v.Scheme, pl.Scheme)
		}
		fsys, err := fsread.OpenFS(ctx, f, v)
		if err != nil {
			t.Fatalf("%s volume %s: %v", pl.Disk, pl.Volume, err)
		}
		return fsys
	}
	t.Fatalf("%s: no volume %s in %+v", pl.Disk, pl.Volume, vols)
	return nil
}
