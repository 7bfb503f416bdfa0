package fidelity

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// CISource is the host tree the tests copy: the first 10,000 files of
// /usr/share (KURA_FIDELITY_FILES changes the count for quick local runs).
func CISource() Source {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("KURA_FIDELITY_FILES")); err == nil && v > 0 {
		n = v
	}
	return Source{Roots: []string{"/usr/share"}, MinFiles: n, MaxFile: 4 << 20, MaxBytes: 400 << 20}
}

// CIImageSize is the size of each test image.
const CIImageSize = 768 << 20

// Require returns the kit of CISource (built or cached), or skips the
// test when root or a tool is missing (fails it under KURA_TEST_STRICT=1,
// as in CI). With -short (CI's race-detector pass) it skips.
func Require(t testing.TB) *Kit {
	t.Helper()
	if testing.Short() {
		t.Skip("fidelity kit: not with -short")
	}
	missing := func(what string) {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatalf("fidelity kit: %s (KURA_TEST_STRICT=1)", what)
		}
		t.Skipf("fidelity kit: %s", what)
	}
	if os.Geteuid() != 0 {
		missing("needs root for loop mounts")
	}
	for _, tool := range Tools() {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " not installed")
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing("/dev/fuse missing (ntfs-3g)")
	}
	kit, err := Build(context.Background(), CISource(), Kinds, CIImageSize, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return kit
}

// Reference mounts a kind's image and snapshots what the kernel shows.
func (k *Kit) Reference(t testing.TB, kind Kind) Snapshot {
	t.Helper()
	ctx := context.Background()
	mnt, unmount, err := Mount(ctx, kind, k.Images[kind.Name])
	if err != nil {
		t.Fatal(err)
	}
	ref, err := SnapshotDir(ctx, mnt)
	if uerr := unmount(); err == nil {
		err = uerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if ref.Files() < CISource().MinFiles {
		t.Fatalf("%s: only %d files in the image", kind.Name, ref.Files())
	}
	return ref
}

// Report fails t with (at most 40 of) the mismatches of a comparison.
func Report(t testing.TB, what string, ref Snapshot, mism []string) {
	t.Helper()
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
