package repo

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/local"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

// The child side of TestKilledCopyResumes: one copy from KURA_COPY_SRC to
// KURA_COPY_DST.
func TestHelperKilledCopier(t *testing.T) {
	srcLoc, dstLoc := os.Getenv("KURA_COPY_SRC"), os.Getenv("KURA_COPY_DST")
	if srcLoc == "" {
		t.Skip("helper process for TestKilledCopyResumes")
	}
	ctx := context.Background()
	open := func(loc, pw string) *Repository {
		be, err := storage.Open(ctx, loc, storage.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := Open(ctx, be, pw, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if _, err := Copy(ctx, open(srcLoc, "p"), open(dstLoc, os.Getenv("KURA_COPY_PW")), CopyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A copy local → S3 killed at random moments, then run again, never shows
// a partial point and ends with every point, for a copy-of destination
// (raw) and one with its own keys (re-encrypted).
func TestKilledCopyResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	be, err := local.OpenOptions(dir, local.Options{Batch: true})
	if err != nil {
		t.Fatal(err)
	}
	src, err := Init(ctx, be, InitOptions{Password: "p", ChunkSize: testCS, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 8 {
		img := randomBytes(uint64(200+i), 40*testCS)
		m, _ := writePoint(t, src, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
		want[m.ID] = img
	}
	srv := s3server.Start(t)
	bucket := srv.Bucket(t, "copies", false)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for _, tc := range []struct {
		name, pw string
		init     InitOptions
	}{
		{"copy-of", "p", InitOptions{CopyOf: src}},
		{"own-keys", "q", InitOptions{Password: "q", ChunkSize: 2 * testCS, Encrypt: true, KDF: cheapKDF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := srv.Location(bucket, tc.name)
			dst, err := Init(ctx, openLocation(t, loc), tc.init)
			if err != nil {
				t.Fatal(err)
			}
			for round := range 6 {
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledCopier$", "-test.count=1")
				cmd.Env = append(os.Environ(), "KURA_COPY_SRC="+dir, "KURA_COPY_DST="+loc, "KURA_COPY_PW="+tc.pw)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond)
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
				points, err := dst.ListPoints(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range points {
					readBack(t, dst, m.ID, want[m.ID])
				}
				t.Logf("round %d: %d of %d points visible", round, len(points), len(want))
			}
			if _, err := Copy(ctx, src, dst, CopyOptions{Verify: true}); err != nil {
				t.Fatal(err)
			}
			checkPoints(t, dst, want)
		})
	}
}
