package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/instant"
	"github.com/kurabackup/kura/internal/testenv"
)

// kuraProcess starts this test binary as kura in the background (it must
// run with KURA_E2E_AS_KURA set) and kills it at cleanup.
func (c *cliRepo) start(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], c.args(args...)...)
	cmd.Env = append(os.Environ(), asKura+"=1")
	log, err := os.Create(filepath.Join(t.TempDir(), "kura.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		log.Close()
	})
	return cmd
}

func connState(ctx context.Context, c *libvirt.Connector, vm string) hypervisor.PowerState {
	v, err := c.LookupVM(ctx, vm)
	if err != nil {
		return "missing"
	}
	return v.State
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// TestCLIInstantServerKilledAndVerifyKilled runs kura instant through the
// command line, whose serving process is a real one: killed with SIGKILL,
// the VM pauses on its next read; kura instant serve brings it back and
// the read completes; kura instant migrate ends serving. Then a kura
// verify --boot is killed midway and kura cleanup removes what it left.
func TestCLIInstantServerKilledAndVerifyKilled(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Setenv(asKura, "1") // the server kura instant starts is this binary
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i * 31 / 7)
	}
	sum := sha256.Sum256(big)
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, MemoryMiB: 160, Disks: []testenv.DiskSpec{{SizeMiB: 48,
		Files: map[string][]byte{"big.bin": big}}}})
	c := newCLIRepo(t)
	point := c.backup(t, 0, g.Name()).VMs[0].Point.ID
	conn, err := libvirt.Connect(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	name := "kura-t-cli-inst-" + randHex(3)
	storage := imageDir(t, env)
	t.Cleanup(func() {
		c.run("instant", "stop", name, "--force", "--discard")
		_ = conn.UndefineVM(context.Background(), name)
	})
	var rep instant.StartReport
	if err := json.Unmarshal([]byte(c.ok(t, "instant", point, "--name", name, "--storage", storage, "--start", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("kura instant: running in %.2f s", rep.Seconds)
	ga := agentOf(t, env, name)
	ga.wait(t, ctx)
	if got := ga.sh(t, ctx, "sha256sum /mnt/data/big.bin"); !strings.HasPrefix(got, hex.EncodeToString(sum[:])) {
		t.Fatalf("big.bin in the instant vm: %s", got)
	}
	var list []instant.Entry
	if err := json.Unmarshal([]byte(c.ok(t, "instant", "list", "--json")), &list); err != nil || len(list) != 1 || list[0].ServerPID == 0 {
		t.Fatalf("instant list: %+v %v", list, err)
	}

	// The serving process dies: the guest's next read pauses the VM.
	if err := syscall.Kill(list[0].ServerPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "the server to die", func() bool { return syscall.Kill(list[0].ServerPID, 0) != nil })
	ga.call(ctx, "guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c",
		"dd if=/mnt/data/big.bin iflag=direct bs=64k 2>/dev/null | sha256sum > /tmp/after.txt"}}, nil)
	waitUntil(t, ctx, "the vm to pause", func() bool { return connState(ctx, conn, name) == hypervisor.PowerPaused })
	server := c.start(t, "instant", "serve", name)
	waitUntil(t, ctx, "the vm to resume", func() bool { return connState(ctx, conn, name) == hypervisor.PowerOn })
	waitUntil(t, ctx, "the read to finish", func() bool {
		b, err := conn.GuestReadFile(ctx, name, "/tmp/after.txt", 1024)
		return err == nil && strings.HasPrefix(string(b), hex.EncodeToString(sum[:]))
	})

	// Migration stops the restarted server.
	c.ok(t, "instant", "migrate", name, "--format", "raw")
	waitUntil(t, ctx, "the server to end", func() bool { return syscall.Kill(server.Process.Pid, 0) != nil })
	if vm, err := conn.LookupVM(ctx, name); err != nil || vm.Disks[0].Source != filepath.Join(storage, name+"-vda.raw") {
		t.Fatalf("after migrate: %+v %v", vm, err)
	}
	if out := c.ok(t, "instant", "list"); !strings.Contains(out, "no instant vms") {
		t.Fatalf("instant list after migrate: %s", out)
	}

	// A boot verification killed midway leaves a VM, a network and a
	// directory; kura cleanup finds and removes them.
	verify := c.start(t, "verify", "--boot", point)
	var left hypervisor.InstantVM
	waitUntil(t, ctx, "the verification vm", func() bool {
		vms, _ := conn.InstantVMs(ctx)
		i := slices.IndexFunc(vms, func(v hypervisor.InstantVM) bool {
			return v.Tag.Source == g.UUID() && v.State == hypervisor.PowerOn
		})
		if i >= 0 {
			left = vms[i]
		}
		return i >= 0
	})
	time.Sleep(time.Second) // booting, the agent not answering yet
	_ = verify.Process.Kill()
	waitUntil(t, ctx, "verify to die", func() bool { return syscall.Kill(verify.Process.Pid, 0) != nil })
	var cl struct {
		Leftovers []hypervisor.Leftover `json:"leftovers"`
	}
	if err := json.Unmarshal([]byte(c.ok(t, "cleanup", "--yes", "--json")), &cl); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, l := range cl.Leftovers {
		kinds[l.Kind] = true
	}
	if !kinds[libvirt.KindInstantVM] || !kinds[libvirt.KindNetwork] || !kinds[libvirt.KindInstantDir] {
		t.Fatalf("cleanup after a killed verification found %+v", cl.Leftovers)
	}
	if _, err := conn.LookupVM(ctx, left.Name); err == nil {
		t.Fatalf("verification vm %s still there", left.Name)
	}
	if _, err := os.Stat(left.Tag.Dir); !os.IsNotExist(err) {
		t.Fatalf("verification directory %s still there: %v", left.Tag.Dir, err)
	}
	if err := json.Unmarshal([]byte(c.ok(t, "cleanup", "--yes", "--json")), &cl); err != nil {
		t.Fatal(err)
	}
	for _, l := range cl.Leftovers {
		if l.Kind == libvirt.KindInstantVM || l.Kind == libvirt.KindNetwork || l.Kind == libvirt.KindInstantDir {
			t.Fatalf("left after cleanup: %+v", l)
		}
	}
}
