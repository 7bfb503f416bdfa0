package s3_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/s3"
	"github.com/kurabackup/kura/internal/storage/storagetest"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

func open(t *testing.T, loc string) storage.Backend {
	t.Helper()
	be, err := storage.Open(context.Background(), loc, storage.OpenOptions{})
	if err != nil {
		t.Fatalf("open %s: %v", loc, err)
	}
	return be
}

// TestConformance runs the storage suite against versitygw, each subtest
// in a fresh prefix of one bucket, in a plain and in a versioned bucket.
func TestConformance(t *testing.T) {
	srv := s3server.Start(t)
	plain := srv.Bucket(t, "plain", false)
	locked := srv.Bucket(t, "locked", true)
	var n atomic.Int64
	for _, bucket := range []string{plain, locked} {
		t.Run(bucket, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Backend {
				return open(t, srv.Location(bucket, fmt.Sprintf("t%d/repo", n.Add(1))))
			})
		})
	}
}

// Object Lock through storage.Retainer, in a versioned lock bucket and in
// versitygw's unversioned one; a bucket without Object Lock says so.
func TestRetainer(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		t.Run(map[bool]string{true: "versioned", false: "unversioned"}[versioned], func(t *testing.T) {
			srv := s3server.Start(t, s3server.Options{NoVersioning: !versioned})
			bucket := srv.Bucket(t, "locked", true)
			storagetest.RunRetainer(t, func(t *testing.T) storage.Backend { return open(t, srv.Location(bucket, "r")) })
			be := open(t, srv.Location(srv.Bucket(t, "plain", false), ""))
			if ok, err := be.(storage.Retainer).RetentionSupported(context.Background()); ok || err != nil {
				t.Errorf("bucket without Object Lock: supported %v, %v", ok, err)
			}
			if be.Location() != "s3:http://"+srv.Addr+"/plain" {
				t.Errorf("location %s", be.Location())
			}
		})
	}
}

func TestParseLocation(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CA_BUNDLE", "")
	c, err := s3.ParseLocation("https://s3.example.net:9000/bkt/a/b?region=eu-1&lookup=path&rate=50&parallel=4&retries=3&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != "s3.example.net:9000" || !c.Secure || c.Bucket != "bkt" || c.Prefix != "a/b/" || c.Region != "eu-1" ||
		c.Rate != 50 || c.Parallel != 4 || c.Retries != 3 || c.Timeout.Seconds() != 2 {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range []string{"ftp://h/b", "https:///b", "https://h", "https://h/", "https://key:secret@h/b",
		"https://h/b?secret_key=x", "https://h/b?bogus=1", "https://h/b?parallel=0", "https://h/b/x//y", "https://h/b?lookup=x"} {
		if _, err := s3.ParseLocation(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Mistakes in a location or the credentials get errors that say what to fix.
func TestOpenErrors(t *testing.T) {
	srv := s3server.Start(t)
	ctx := context.Background()
	_, err := storage.Open(ctx, srv.Location("missing", ""), storage.OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bucket: %v", err)
	}
	bucket := srv.Bucket(t, "present", false)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	_, err = storage.Open(ctx, srv.Location(bucket, ""), storage.OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("wrong secret: %v", err)
	}
	// Nothing listens on the port a listener just gave back.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := storage.Open(ctx, "s3:http://"+addr+"/b?retries=2", storage.OpenOptions{}); err == nil {
		t.Error("open of a closed port succeeded")
	}
}

// A listing of more keys than one page holds, through a proxy that breaks
// requests, delivers every name exactly once (it resumes after the last
// key delivered).
func TestListPagesThroughFaults(t *testing.T) {
	srv := s3server.Start(t)
	bucket := srv.Bucket(t, "many", false)
	ctx := context.Background()
	be := open(t, srv.Location(bucket, "r"))
	const n = 2500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := be.Put(ctx, fmt.Sprintf("chunks/%02x/c%05d", i%256, i), []byte{byte(i)}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Faults on listing pages only (deterministic for a seed: one lister).
	px := srv.FaultProxy(t, s3server.Faults{Rate: 0.5, Seed: 1,
		Only: func(r *http.Request) bool { return r.URL.Query().Get("list-type") == "2" }})
	faulty := open(t, px.Location(bucket, "r", "retries=30&timeout=2s"))
	seen := map[string]int{}
	err := faulty.List(ctx, "chunks/", func(oi storage.ObjectInfo) error { seen[oi.Name]++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("listed %d names, want %d", len(seen), n)
	}
	for name, c := range seen {
		if c != 1 {
			t.Fatalf("%s listed %d times", name, c)
		}
	}
	st := faulty.(storage.Counter).Requests()
	t.Logf("%d list requests, %d retried; faults %v", st.List, st.Retries, px.Counts())
	if st.Retries == 0 {
		t.Error("no listing request was retried")
	}
}
