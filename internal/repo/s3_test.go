package repo

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

func openLocation(t *testing.T, loc string) storage.Backend {
	t.Helper()
	be, err := storage.Open(context.Background(), loc, storage.OpenOptions{})
	if err != nil {
		t.Fatalf("open %s: %v", loc, err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return be
}

// The kill-at-random-moments test, on a real S3 server.
func TestKilledWriterS3(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	srv := s3server.Start(t)
	loc := srv.Location(srv.Bucket(t, "kill", false), "repo")
	killWriterRounds(t, openLocation(t, loc), loc)
}

// Points written and read through a proxy that answers 503, drops
// connections before and after the server acted, cuts responses and holds
// them back are all there and read back exactly: retries neither corrupt
// nor drop anything; an upload damaged on the way is refused by the store
// (checksum) and sent again.
func TestFaultyS3KeepsEveryPoint(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	bucket := srv.Bucket(t, "faulty", false)
	px := srv.FaultProxy(t, s3server.Faults{Rate: 0.2, Slow: 1500 * time.Millisecond, Seed: uint64(time.Now().UnixNano())})
	be := openLocation(t, px.Location(bucket, "repo", "timeout=1s&retries=40"))
	r, err := Init(ctx, be, InitOptions{Password: "p", ChunkSize: testCS, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	var parent *Index
	images := map[string][]byte{}
	for i := range 6 {
		img := killImage(uint64(100 + i))
		m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img)), Parent: parent})
		images[m.ID] = img
		if parent, err = r.LoadIndex(ctx, m.Disks[0].Index); err != nil {
			t.Fatal(err)
		}
	}
	for id, img := range images {
		readBack(t, r, id, img)
	}
	if rep, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("verify through the faulty proxy: %v %+v", err, rep)
	}
	counts := px.Counts()
	stats := be.(storage.Counter).Requests()
	t.Logf("faults injected: %v; requests %+v", counts, stats)
	for _, k := range []string{s3server.Fault503, s3server.FaultDropEarly, s3server.FaultDropLate, s3server.FaultTruncate,
		s3server.FaultSlow, s3server.FaultCorrupt} {
		if counts[k] == 0 {
			t.Errorf("no %q fault was injected: the test proves less than it says", k)
		}
	}
	if stats.Retries == 0 {
		t.Error("no request was retried")
	}
	// Seen directly, without the proxy, the repository is whole.
	direct, err := Open(ctx, openLocation(t, srv.Location(bucket, "repo")), "p", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	points, err := direct.ListPoints(ctx)
	if err != nil || len(points) != len(images) {
		t.Fatalf("direct listing: %d points, %v; want %d", len(points), err, len(images))
	}
	for id, img := range images {
		readBack(t, direct, id, img)
	}
	if rep, err := direct.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("verify direct: %v %+v", err, rep)
	}
}
