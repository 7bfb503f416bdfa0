package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/cli"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/mem"
	"github.com/kurabackup/kura/internal/testenv"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// imageDir returns a directory QEMU can reach, removed at cleanup.
func imageDir(t *testing.T, env *testenv.Env) string {
	t.Helper()
	dir := filepath.Join(env.ImageDir, "e2e-"+randHex(4))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// memRepo is an encrypted in-memory repository with a cheap KDF.
func memRepo(t *testing.T) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), mem.New(), repo.InitOptions{Password: "pw", Encrypt: true,
		KDF: repo.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// dropVM destroys and undefines a domain at cleanup.
func dropVM(t *testing.T, env *testenv.Env, name string) {
	t.Cleanup(func() {
		d, err := env.Conn.DomainLookupByName(name)
		if err != nil {
			return
		}
		_ = env.Conn.DomainDestroy(d)
		_ = env.Conn.DomainUndefineFlags(d, golibvirt.DomainUndefineCheckpointsMetadata|golibvirt.DomainUndefineSnapshotsMetadata)
	})
}

// kura runs the command line and returns its standard output.
func kura(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"--quiet"}, args...), strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("kura %s: exit %d: %s%s", strings.Join(args, " "), code, errb.String(), out.String())
	}
	return out.String()
}

// lastJSON decodes the last of the JSON values in out (progress events
// come first with --json, the report last).
func lastJSON(out string, v any) error {
	dec := json.NewDecoder(strings.NewReader(out))
	var last json.RawMessage
	for dec.More() {
		if err := dec.Decode(&last); err != nil {
			return err
		}
	}
	return json.Unmarshal(last, v)
}

const spaced = "dir with spaces/naïve ☃ file.txt"

func TestCLIBackupFilesRestore(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	big := make([]byte, 9<<20+12345) // spans three 4 MiB chunks
	_, _ = rand.Read(big)
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true, MemoryMiB: 192, Disks: []testenv.DiskSpec{{
		SizeMiB: 64, Files: map[string][]byte{"hello.txt": []byte("hello from kura\n"), "big.bin": big,
			spaced: []byte("non-ascii path survives\n")}}}})
	ga := agentOf(t, env, g.Name())
	ga.wait(t, ctx)
	ga.sh(t, ctx, "cd /mnt/data && ln -s hello.txt link && head -c 300000 /dev/urandom > agent.bin && sync")
	sums := ga.sh(t, ctx, "cd /mnt/data && sha256sum hello.txt big.bin agent.bin '"+spaced+"'")

	t.Setenv("KURA_PASSWORD", "e2e passphrase")
	t.Setenv("KURA_REPO", filepath.Join(t.TempDir(), "repo"))
	t.Setenv("KURA_CATALOG", filepath.Join(t.TempDir(), "catalog.db"))
	// Backed up shut off: see the scratch directory note in the engine
	// test (running VMs' NBD socket path is too long with the defaults).
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	kura(t, "repo", "init")
	// Tags kept in the domain's metadata select the VM, and come back
	// with a restore.
	kura(t, "vm", "tag", g.Name(), "backup/daily", "team-web")
	if out := kura(t, "vm", "tag", g.Name(), "--remove", "team-web", "kura-e2e"); !strings.Contains(out, "backup/daily kura-e2e") {
		t.Fatalf("vm tag: %s", out)
	}
	kura(t, "backup", "tag:backup/*", "--retries", "0")
	var points []repo.Manifest
	if err := json.Unmarshal([]byte(kura(t, "points", "list", "--json")), &points); err != nil || len(points) != 1 {
		t.Fatalf("points list: %v %d", err, len(points))
	}
	point := points[0].ID

	// files ls: name, type, size, mode, mtime; a symlink; non-ASCII names.
	var root []fsread.Entry
	if err := json.Unmarshal([]byte(kura(t, "files", "ls", point, "/", "--json")), &root); err != nil {
		t.Fatal(err)
	}
	byName := map[string]fsread.Entry{}
	for _, e := range root {
		byName[e.Name] = e
	}
	if e := byName["big.bin"]; e.Type != "file" || e.Size != int64(len(big)) || e.Mode.Perm() != 0o644 || e.ModTime.IsZero() {
		t.Fatalf("ls big.bin = %+v", e)
	}
	if e := byName["link"]; e.Type != "symlink" || e.Target != "hello.txt" {
		t.Fatalf("ls link = %+v", e)
	}
	if e := byName["dir with spaces"]; e.Type != "dir" {
		t.Fatalf("ls 'dir with spaces' = %+v (root: %v)", e, root)
	}
	text := kura(t, "files", "ls", point, "/dir with spaces")
	if !strings.Contains(text, "naïve ☃ file.txt") {
		t.Fatalf("ls of the spaced directory:\n%s", text)
	}
	var found []fsread.Entry
	if err := json.Unmarshal([]byte(kura(t, "files", "find", point, "*.txt", "--json")), &found); err != nil || len(found) != 2 {
		t.Fatalf("find *.txt: %v %+v", err, found)
	}

	// files get: a file larger than a chunk, a whole folder, a symlink.
	out := t.TempDir()
	kura(t, "files", "get", point, "/big.bin", "/dir with spaces", "/link", "--out", out)
	if b, err := os.ReadFile(filepath.Join(out, "big.bin")); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("extracted big.bin differs (%v)", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, spaced)); err != nil || string(b) != "non-ascii path survives\n" {
		t.Fatalf("extracted %s: %q %v", spaced, b, err)
	}
	if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "hello.txt" {
		t.Fatalf("extracted link -> %q, %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(out, "big.bin")); err != nil || fi.Mode().Perm() != 0o644 ||
		!fi.ModTime().Equal(byName["big.bin"].ModTime) {
		t.Fatalf("extracted big.bin mode/time: %v %v", fi, err)
	}

	// restore --name as a new VM, start it, read the files back.
	store := imageDir(t, env)
	name := g.Name() + "-r"
	dropVM(t, env, name)
	var rep engine.RestoreReport
	if err := lastJSON(kura(t, "restore", point, "--name", name, "--storage", store, "--start", "--json"), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Defined || !rep.Started || rep.InPlace || len(rep.Disks) != 1 || rep.Disks[0].Path != filepath.Join(store, name+"-vda.qcow2") {
		t.Fatalf("restore report %+v", rep)
	}
	if rep.Disks[0].DataBytes <= int64(len(big)) || rep.Disks[0].DataBytes >= rep.Disks[0].Size {
		t.Errorf("restore wrote %d bytes of a %d byte disk (want thin)", rep.Disks[0].DataBytes, rep.Disks[0].Size)
	}
	ra := agentOf(t, env, name)
	ra.wait(t, ctx)
	if got := ra.sh(t, ctx, "cd /mnt/data && sha256sum hello.txt big.bin agent.bin '"+spaced+"'"); got != sums {
		t.Fatalf("restored checksums\n%s\nwant\n%s", got, sums)
	}
	if got := strings.TrimSpace(ra.sh(t, ctx, "readlink /mnt/data/link")); got != "hello.txt" {
		t.Fatalf("restored link -> %q", got)
	}
	if err := exec.Command("virsh", "-c", "qemu:///system", "dominfo", name).Run(); err != nil {
		t.Fatalf("virsh dominfo %s: %v", name, err)
	}
	var tagged struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(kura(t, "vm", "tag", name, "--json")), &tagged); err != nil || !slices.Equal(tagged.Tags, []string{"backup/daily", "kura-e2e"}) {
		t.Fatalf("tags of the restored vm: %+v %v", tagged, err)
	}
}

// cancelOnStart cancels ctx when the first disk starts being written.
type cancelOnStart struct{ cancel context.CancelFunc }

func (c cancelOnStart) Emit(ev progress.Event) {
	if ev.Kind == progress.DiskStart {
		c.cancel()
	}
}

func TestEngineRestoreInPlaceConflictsExport(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	testenv.NeedTool(t, "virsh")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	conn, err := libvirt.Connect(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := memRepo(t)
	eng := &engine.Engine{Repo: r, Conn: conn}

	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true, MemoryMiB: 192, Disks: []testenv.DiskSpec{{
		SizeMiB: 48, Files: map[string][]byte{"data.txt": []byte("original\n")}}}})
	ga := agentOf(t, env, g.Name())
	ga.wait(t, ctx)
	vm, err := conn.LookupVM(ctx, g.Name())
	if err != nil {
		t.Fatal(err)
	}
	brep, err := eng.Backup(ctx, []hypervisor.VM{vm}, engine.BackupOptions{})
	if err != nil || brep.State != engine.StateCompleted {
		t.Fatalf("backup: %v %+v", err, brep)
	}
	m := brep.VMs[0].Point
	ga.sh(t, ctx, "echo changed > /mnt/data/data.txt && sync")
	disk := g.DiskPath("vda")

	// abort (default): names the VM and the disk, changes nothing.
	_, err = eng.Restore(ctx, m, engine.RestoreOptions{})
	if !errors.Is(err, engine.ErrConflict) || !strings.Contains(err.Error(), g.Name()) || !strings.Contains(err.Error(), disk) {
		t.Fatalf("abort: %v", err)
	}
	// keep: everything exists, so nothing is touched and the VM runs on.
	rep, err := eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictKeep})
	if err != nil || rep.Defined || len(rep.Disks) != 1 || !rep.Disks[0].Kept {
		t.Fatalf("keep: %v %+v", err, rep)
	}
	if on, _ := g.Running(ctx); !on {
		t.Fatal("keep stopped the vm")
	}
	// overwrite: the running VM is stopped, its disk and definition replaced.
	rep, err = eng.Restore(ctx, m, engine.RestoreOptions{OnConflict: engine.ConflictOverwrite, Start: true})
	if err != nil || !rep.Defined || !rep.InPlace || !rep.Started {
		t.Fatalf("overwrite: %v %+v", err, rep)
	}
	ga.wait(t, ctx)
	if got := ga.sh(t, ctx, "cat /mnt/data/data.txt"); got != "original\n" {
		t.Fatalf("after overwrite data.txt = %q", got)
	}

	// An interrupted restore defines nothing and leaves no image.
	store := imageDir(t, env)
	ictx, icancel := context.WithCancel(ctx)
	ieng := &engine.Engine{Repo: r, Conn: conn, Progress: cancelOnStart{icancel}}
	if _, err := ieng.Restore(ictx, m, engine.RestoreOptions{Name: g.Name() + "-i", Storage: store}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: %v", err)
	}
	icancel()
	if _, err := conn.LookupVM(ctx, g.Name()+"-i"); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("interrupted restore defined a vm: %v", err)
	}
	if ents, _ := os.ReadDir(store); len(ents) != 0 {
		t.Fatalf("interrupted restore left %v", ents)
	}

	// A deleted VM is recreated in place.
	if err := conn.UndefineVM(ctx, g.Name()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(disk); err != nil {
		t.Fatal(err)
	}
	rep, err = eng.Restore(ctx, m, engine.RestoreOptions{Start: true})
	if err != nil || len(rep.Conflicts) != 0 || !rep.Started {
		t.Fatalf("restore of a deleted vm: %v %+v", err, rep)
	}
	ga.wait(t, ctx)
	if got := ga.sh(t, ctx, "cat /mnt/data/data.txt"); got != "original\n" {
		t.Fatalf("recreated vm: data.txt = %q", got)
	}

	// Export, then virsh define and start gives the VM back.
	exp := imageDir(t, env)
	ex, err := eng.Export(ctx, m, engine.ExportOptions{OutDir: exp})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if err := conn.UndefineVM(ctx, g.Name()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"define", ex.ConfigFile}, {"start", g.Name()}} {
		if out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("virsh %v: %v: %s", args, err, out)
		}
	}
	ga.wait(t, ctx)
	if got := ga.sh(t, ctx, "cat /mnt/data/data.txt"); got != "original\n" {
		t.Fatalf("exported vm: data.txt = %q", got)
	}
	if got := ga.sh(t, ctx, "grep -c ' /mnt/data ' /proc/mounts"); strings.TrimSpace(got) != "1" {
		t.Fatalf("exported vm has no data mount: %q", got)
	}
}
