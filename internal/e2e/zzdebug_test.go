package e2e

import (
	"os/exec"
	"testing"

	"github.com/kurabackup/kura/internal/testenv"
)

func TestZZDebugOffline(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 64, Files: map[string][]byte{"a.txt": []byte("x\n")}}}})
	c := newCLIRepo(t)
	for i := 0; i < 3; i++ {
		rep := c.backup(t, 0, g.Name(), "--retries", "0")
		p := rep.VMs[0].Point
		t.Logf("point %d %s cp %s: vda read %d", i, p.Kind, p.Checkpoint, diskStats(p, "vda").BytesRead)
		b, _ := exec.Command("qemu-img", "info", g.DiskPath("vda")).CombinedOutput()
		t.Logf("%s", b)
		sock := t.TempDir() + "/s"
		cmd := exec.Command("qemu-nbd", "-r", "-k", sock, "-B", p.Checkpoint, "-f", "qcow2", g.DiskPath("vda"))
		cmd.Start()
		for j := 0; j < 50; j++ {
			if b, err := exec.Command("nbdinfo", "--map=qemu:dirty-bitmap:"+p.Checkpoint, "nbd+unix:///?socket="+sock).CombinedOutput(); err == nil {
				t.Logf("map: %s", b)
				break
			}
			exec.Command("sleep", "0.1").Run()
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
}
