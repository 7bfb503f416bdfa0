package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNotADatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("this is not sqlite\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, junk, nil)
	if !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("open junk file: %v, want ErrNotDatabase", err)
	}
	if !strings.Contains(err.Error(), junk) {
		t.Errorf("error does not name the file: %v", err)
	}

	// A real catalog whose pages were overwritten.
	path := filepath.Join(dir, "c.db")
	c, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[:16], "garbage garbage!") // destroy the "SQLite format 3\x00" header
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path, nil); !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("open damaged header: %v, want ErrNotDatabase", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	c, path := openTest(t)
	if _, err := c.w.ExecContext(ctx, `INSERT INTO schema_version(version, applied) VALUES (?, 0)`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, path, nil)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open newer schema: %v, want ErrSchemaTooNew", err)
	}
	want := fmt.Sprintf("schema %d", SchemaVersion()+1)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	cats := make([]*SQLite, n)
	for i := range n {
		wg.Go(func() { cats[i], errs[i] = Open(ctx, path, nil) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer cats[i].Close()
	}
	var rows int
	if err := cats[0].r.QueryRowContext(ctx, `SELECT count(*) FROM schema_version`).Scan(&rows); err != nil || rows != SchemaVersion() {
		t.Fatalf("schema_version rows %d, %v; want %d", rows, err, SchemaVersion())
	}
}

// TestConcurrentReadersAndWriter checks WAL behaviour: readers on other
// handles never fail or see a half-written point while a writer commits.
func TestConcurrentReadersAndWriter(t *testing.T) {
	ctx := context.Background()
	w, path := openTest(t)
	readers := make([]*SQLite, 3)
	for i := range readers {
		r, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers[i] = r
	}
	const points = 150
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for _, r := range readers {
		for range 2 {
			wg.Go(func() {
				last := 0
				for {
					select {
					case <-done:
						return
					default:
					}
					ps, err := r.Points(ctx, PointFilter{VM: "web"})
					if err != nil {
						fail("read: %v", err)
						return
					}
					if len(ps) < last {
						fail("points went backwards: %d after %d", len(ps), last)
					}
					last = len(ps)
					for _, p := range ps {
						if len(p.Disks) != 2 {
							fail("point %s seen with %d disks", p.ID, len(p.Disks))
							return
						}
					}
				}
			})
		}
	}
	// Writes come from the main handle and from a reader handle too, so
	// two connections compete for the write lock.
	start := time.Now()
	var wwg sync.WaitGroup
	for wi, cat := range []*SQLite{w, readers[0]} {
		wwg.Go(func() {
			for i := range points / 2 {
				p := samplePoint(fmt.Sprintf("w%d-%04d", wi, i), "r", "u", "web", t0.Add(time.Duration(i)*time.Second))
				if err := cat.AddPoint(ctx, p); err != nil {
					fail("write: %v", err)
					return
				}
			}
		})
	}
	wwg.Wait()
	elapsed := time.Since(start)
	close(done)
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	ps, err := readers[2].Points(ctx, PointFilter{})
	if err != nil || len(ps) != points {
		t.Fatalf("final count %d, %v; want %d", len(ps), err, points)
	}
	t.Logf("%d point inserts under 6 concurrent readers: %v (%.0f/s)", points, elapsed, points/elapsed.Seconds())
}
