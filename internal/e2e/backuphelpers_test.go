package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/cli"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/local"
	"github.com/kurabackup/kura/internal/testenv"
)

// cliRepo is a repository and catalog used through explicit flags (not
// environment variables), so tests using it may run in parallel.
type cliRepo struct {
	dir, repo, catalog, pwFile string
}

const e2ePassword = "backup e2e passphrase"

// newCLIRepo creates an encrypted repository with kura repo init.
func newCLIRepo(t *testing.T) *cliRepo {
	t.Helper()
	dir := t.TempDir()
	c := &cliRepo{dir: dir, repo: filepath.Join(dir, "repo"), catalog: filepath.Join(dir, "catalog.db"),
		pwFile: filepath.Join(dir, "password")}
	if err := os.WriteFile(c.pwFile, []byte(e2ePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok(t, "repo", "init")
	return c
}

func (c *cliRepo) args(args ...string) []string {
	return append([]string{"--quiet", "--repo", c.repo, "--catalog", c.catalog, "--password-file", c.pwFile}, args...)
}

// run runs the command line in this process and returns its outputs and
// exit code.
func (c *cliRepo) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Main(c.args(args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs the command line and fails the test unless it exits 0.
func (c *cliRepo) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		t.Fatalf("kura %s: exit %d: %s%s", strings.Join(args, " "), code, errs, out)
	}
	return out
}

// backup runs kura backup --json with args and returns the job report and
// the exit code (which must be want).
func (c *cliRepo) backup(t *testing.T, want int, args ...string) *engine.BackupReport {
	t.Helper()
	out, errs, code := c.run(append([]string{"backup", "--json"}, args...)...)
	if code != want {
		t.Fatalf("kura backup %s: exit %d, want %d: %s%s", strings.Join(args, " "), code, want, errs, tail(out, 3000))
	}
	var rep engine.BackupReport
	if err := lastJSON(out, &rep); err != nil {
		t.Fatalf("backup report: %v: %s", err, tail(out, 2000))
	}
	return &rep
}

// points lists the recovery points with kura points list --json.
func (c *cliRepo) points(t *testing.T) []repo.Manifest {
	t.Helper()
	var ps []repo.Manifest
	if err := json.Unmarshal([]byte(c.ok(t, "points", "list", "--json")), &ps); err != nil {
		t.Fatalf("points list: %v", err)
	}
	return ps
}

// open opens the repository in the test process (to read disks back).
func (c *cliRepo) open(t *testing.T, ctx context.Context) *repo.Repository {
	t.Helper()
	be, err := local.Open(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, e2ePassword, repo.OpenOptions{})
	if err != nil {
		t.Fatalf("open repository: %v", err)
	}
	t.Cleanup(func() { _ = r.Close(); _ = be.Close() })
	return r
}

// pointDisk reads the whole disk target of point m from the repository.
func pointDisk(t *testing.T, ctx context.Context, r *repo.Repository, m *repo.Manifest, target string) []byte {
	t.Helper()
	for _, d := range m.Disks {
		if d.Target != target {
			continue
		}
		dr, err := r.OpenDisk(ctx, d.Index)
		if err != nil {
			t.Fatalf("open disk %s of %s: %v", target, m.ID, err)
		}
		defer dr.Close()
		buf := make([]byte, dr.Size())
		if n, err := dr.ReadAt(buf, 0); n != len(buf) {
			t.Fatalf("read disk %s of %s: %d of %d bytes: %v", target, m.ID, n, len(buf), err)
		}
		return buf
	}
	t.Fatalf("point %s has no disk %s (disks %+v)", m.ID, target, m.Disks)
	return nil
}

// rawImage is the guest-visible content of an image (qemu-img convert -O raw).
func rawImage(t *testing.T, path, format string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "img.raw")
	if b, err := exec.Command("qemu-img", "convert", "-U", "-f", format, "-O", "raw", path, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v: %s", path, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(out)
	return data
}

// sameBytes fails the test at the first differing 4 KiB block.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if bytes.Equal(got, want) {
		return
	}
	for off := 0; off < len(got); off += 4096 {
		end := min(off+4096, len(got))
		if !bytes.Equal(got[off:end], want[off:end]) {
			t.Fatalf("%s: differs from the expected disk first at byte %d (block %#x…)", what, off, off)
		}
	}
}

// randomQcow2 creates a qcow2 image of size bytes of random data in dir,
// reachable by QEMU, and returns its path and content.
func randomQcow2(t *testing.T, dir, name string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	raw := filepath.Join(dir, name+".raw")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".qcow2")
	if b, err := exec.Command("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	_ = os.Remove(raw)
	return path, data
}

// patternWrite writes a byte pattern into a running guest's disk through
// QEMU's monitor and applies the same write to the model of that disk.
func patternWrite(t *testing.T, ctx context.Context, g *testenv.Guest, target string, model []byte, p byte, off, n int64) {
	t.Helper()
	if err := g.WriteDiskPattern(ctx, target, p, off, n); err != nil {
		t.Fatal(err)
	}
	for i := off; i < off+n; i++ {
		model[i] = p
	}
}

// vmResult returns the result of the named VM in a backup report.
func vmResult(t *testing.T, rep *engine.BackupReport, name string) engine.VMResult {
	t.Helper()
	for _, r := range rep.VMs {
		if r.VM == name {
			return r
		}
	}
	t.Fatalf("no result for %s in the report %+v", name, rep)
	return engine.VMResult{}
}

// diskStats returns the stats of a disk of a point.
func diskStats(m *repo.Manifest, target string) repo.DiskStats {
	for _, d := range m.Disks {
		if d.Target == target {
			return d.Stats
		}
	}
	return repo.DiskStats{}
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
