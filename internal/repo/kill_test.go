package repo

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
	_ "github.com/kurabackup/kura/internal/storage/backends"
	"github.com/kurabackup/kura/internal/storage/local"
)

// The child side of TestKilledWriterLeavesRepositoryConsistent: it writes
// points into the repository in KURA_KILL_REPO forever, each an
// incremental of the previous one, until it is killed.
func TestHelperKilledWriter(t *testing.T) {
	loc := os.Getenv("KURA_KILL_REPO")
	if loc == "" {
		t.Skip("helper process for TestKilledWriterLeavesRepositoryConsistent")
	}
	ctx := context.Background()
	be, err := storage.Open(ctx, loc, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, be, "p", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := strconv.ParseUint(os.Getenv("KURA_KILL_SEED"), 10, 64)
	var parent *Index
	for i := uint64(0); ; i++ {
		s := seed*1000 + i
		img := killImage(s)
		w, err := r.NewWriter(ctx, "kill test")
		if err != nil {
			t.Fatal(err)
		}
		src := DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img)), Parent: parent}
		id, _, err := w.WriteDisk(ctx, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := &Manifest{Tags: []string{fmt.Sprintf("seed=%d", s)},
			Disks: []DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: testCS, Index: id}}}
		if err := w.Commit(ctx, m); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if parent, err = r.LoadIndex(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// killImage is the disk content of the point tagged seed=s: shared blocks
// (deduplicated across points), blocks of its own, and zeros.
func killImage(s uint64) []byte {
	img := make([]byte, 24*testCS+777)
	copy(img, randomBytes(1, 8*testCS))
	rng := rand.New(rand.NewPCG(s, 3))
	for i := 0; i < 4; i++ {
		off := rng.IntN(len(img) - testCS)
		copy(img[off:], randomBytes(s*7+uint64(i), testCS))
	}
	return img
}

// A writer process killed at random moments, many times, never leaves a
// partial point: every visible point reads back exactly, verify with
// --read-data passes, and the next writer continues.
func TestKilledWriterLeavesRepositoryConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	be, err := local.OpenOptions(dir, local.Options{Batch: true})
	if err != nil {
		t.Fatal(err)
	}
	killWriterRounds(t, be, dir)
}

// killWriterRounds kills writer processes writing into the repository at
// location loc (whose backend is be) at random moments, checking after
// each kill.
func killWriterRounds(t *testing.T, be storage.Backend, loc string) {
	ctx := context.Background()
	r, err := Init(ctx, be, InitOptions{Password: "p", ChunkSize: testCS, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const rounds = 12
	for round := 1; round <= rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), "KURA_KILL_REPO="+loc, "KURA_KILL_SEED="+strconv.Itoa(round))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(30+rng.IntN(400)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		checkKilledRepo(t, r)
	}
	points, err := r.ListPoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds killed at random moments; %d points committed", rounds, len(points))
	if _, err := r.GC(ctx, GCOptions{}); err != nil {
		t.Fatalf("gc after kills (the killed writers' locks are stale): %v", err)
	}
	rep, err := r.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify --read-data after kills and gc: %v %+v", err, rep)
	}
	checkKilledRepo(t, r)
}

func checkKilledRepo(t *testing.T, r *Repository) {
	t.Helper()
	ctx := context.Background()
	points, err := r.ListPoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range points {
		seed, err := strconv.ParseUint(strings.TrimPrefix(m.Tags[0], "seed="), 10, 64)
		if err != nil {
			t.Fatalf("point %s: bad tag %v", m.ID, m.Tags)
		}
		dr, err := r.OpenDisk(ctx, m.Disks[0].Index)
		if err != nil {
			t.Fatalf("point %s visible but its index is not readable: %v", m.ID, err)
		}
		got := make([]byte, dr.Size())
		_, err = dr.ReadAt(got, 0)
		dr.Close()
		if err != nil || !bytes.Equal(got, killImage(seed)) {
			t.Fatalf("point %s (seed %d) does not read back exactly: %v", m.ID, seed, err)
		}
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after a kill: %v %+v", err, rep)
	}
}
