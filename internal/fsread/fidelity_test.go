package fsread_test

import (
	"context"
	"os"
	"testing"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fidelity"
)

// TestFidelity compares, for every kind of the kit, every entry kura's
// reader shows with what the kernel shows of the same image, and then
// the same filesystems found on MBR, GPT, whole and LVM disks.
func TestFidelity(t *testing.T) {
	kit := fidelity.Require(t)
	ctx := context.Background()
	want := map[string]fidelity.Snapshot{}
	for _, k := range fidelity.Kinds {
		t.Run(k.Name, func(t *testing.T) {
			ref := kit.Reference(t, k)
			want[k.Name] = ref
			got, err := fidelity.SnapshotFS(ctx, openImage(t, kit.Images[k.Name], k.FS))
			if err != nil {
				t.Fatal(err)
			}
			fidelity.Report(t, k.Name, ref, fidelity.Compare(ref, got, fidelity.ListingRules(k)))
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
			got, err := fidelity.SnapshotFS(ctx, openVolume(t, disks[pl.Disk], pl))
			if err != nil {
				t.Fatalf("%s volume %s: %v", pl.Disk, pl.Volume, err)
			}
			fidelity.Report(t, pl.Disk+" "+pl.Volume, ref, fidelity.Compare(ref, got, fidelity.ListingRules(k)))
		}
	})
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
