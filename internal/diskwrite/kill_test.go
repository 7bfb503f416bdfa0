package diskwrite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKilledRestoreLeavesPartial runs a restore in a child process and
// kills it with SIGKILL before Commit: only the ".kura-partial" file may
// remain, and qemu-nbd must not outlive it.
func TestKilledRestoreLeavesPartial(t *testing.T) {
	if path := os.Getenv("KURA_DISKWRITE_CHILD"); path != "" {
		ctx := context.Background()
		w, err := Create(ctx, Target{Path: path, Format: "qcow2", Size: 64 << 20}, Options{})
		if err != nil {
			os.Exit(3)
		}
		if err := w.WriteAt(ctx, make([]byte, 1<<20), 0); err != nil {
			os.Exit(4)
		}
		os.WriteFile(path+".ready", nil, 0o600)
		time.Sleep(time.Minute)
		os.Exit(5)
	}
	needTools(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "vm-vda.qcow2")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRestoreLeavesPartial$")
	cmd.Env = append(os.Environ(), "KURA_DISKWRITE_CHILD="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(path + ".ready"); err == nil {
			break
		}
		if i > 1000 {
			cmd.Process.Kill()
			t.Fatal("child did not start writing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	os.Remove(path + ".ready")
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "vm-vda.qcow2"+PartialSuffix {
		t.Fatalf("after a killed restore the directory holds %v", ents)
	}
	// qemu-nbd dies with its parent (it would keep the image locked).
	for i := 0; i < 200; i++ {
		out, _ := exec.Command("pgrep", "-f", "qemu-nbd.*"+dir).Output()
		if strings.TrimSpace(string(out)) == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("qemu-nbd still running after its parent was killed")
}
