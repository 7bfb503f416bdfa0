package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/local"
	"github.com/kurabackup/kura/internal/testenv"
)

// TestFullRepositoryDisk fills a repository on a real 48 MiB tmpfs until
// backups fail for lack of space, then checks that the advised way out —
// kura prune, then kura gc — works although the filesystem is 100 % full
// (their locks use the local backend's reserve), and that the next backup
// succeeds once space is freed.
func TestFullRepositoryDisk(t *testing.T) {
	testenv.Need(t, "root (to mount a tmpfs)", os.Geteuid() == 0)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=48m,mode=0700"); err != nil {
		testenv.Need(t, "tmpfs mount: "+err.Error(), false)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "repo")
	env := map[string]string{"KURA_REPO": dir, "KURA_PASSWORD": "correct horse", "KURA_CATALOG": filepath.Join(t.TempDir(), "c.db")}
	if code, _, errs := run(t, env, "repo", "init", "--chunk-size", "1MiB"); code != 0 {
		t.Fatalf("init: %d %s", code, errs)
	}
	ctx := context.Background()
	open := func() *repo.Repository {
		be, err := local.OpenOptions(dir, local.Options{Batch: true, Reserve: local.DefaultReserve, ReserveFor: repo.MaintenanceObject})
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(ctx, be, "correct horse", repo.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	backup := func(r *repo.Repository, name string) error {
		img := make([]byte, 8<<20)
		_, _ = rand.Read(img)
		w, err := r.NewWriter(ctx, "fill")
		if err != nil {
			return err
		}
		defer w.Close()
		id, st, err := w.WriteDisk(ctx, repo.DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
		if err != nil {
			return err
		}
		return w.Commit(ctx, &repo.Manifest{VM: repo.VMInfo{Name: name, UUID: "00000000-0000-4000-8000-00000000000" + name[len(name)-1:]},
			Kind: "full", Disks: []repo.DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: 1 << 20, Index: id, Stats: st}}})
	}
	r := open()
	n := 0
	for ; n < 20; n++ {
		err := backup(r, "vm1")
		if errors.Is(err, storage.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatalf("backup %d: %v", n, err)
		}
	}
	if n == 0 || n == 20 {
		t.Fatalf("%d backups before the disk was full", n)
	}
	// Fill the last bytes too: 100 % full.
	filler, _ := os.Create(filepath.Join(mnt, "filler"))
	_, _ = filler.Write(make([]byte, 64<<20))
	filler.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Bavail != 0 {
		t.Fatalf("filesystem not full: %d blocks free, %v", st.Bavail, err)
	}
	t.Logf("%d points fit before the disk filled up", n)

	code, out, errs := run(t, env, "prune", "--keep-last", "1", "--gc")
	if code != 0 || !strings.Contains(out, "freed") {
		t.Fatalf("prune --gc on a full disk: exit %d: %s%s", code, out, errs)
	}
	if err := unix.Statfs(mnt, &st); err != nil || st.Bavail == 0 {
		t.Fatalf("nothing freed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "reserve")); err != nil {
		t.Errorf("the reserve was not taken again after gc freed space: %v", err)
	}
	if err := backup(r, "vm2"); err != nil {
		t.Fatalf("backup after prune and gc: %v", err)
	}
	if code, out, errs := run(t, env, "verify", "--read-data"); code != 0 {
		t.Fatalf("verify: %s%s", out, errs)
	}
}
