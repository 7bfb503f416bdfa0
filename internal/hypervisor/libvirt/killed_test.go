package libvirt

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/testenv"
)

// TestHelperAbandon is not a test: run by TestKilledSession in a child
// process, it opens a backup session and exits without closing it, as a
// killed kura would.
func TestHelperAbandon(t *testing.T) {
	name := os.Getenv("KURA_HELPER_VM")
	if name == "" {
		t.Skip("helper process only")
	}
	c, err := Connect(context.Background(), "", nil)
	if err != nil {
		os.Exit(2)
	}
	vm, err := c.LookupVM(context.Background(), name)
	if err != nil {
		os.Exit(3)
	}
	if _, err := c.BeginBackup(context.Background(), vm, hypervisor.BackupOptions{
		Consistency: hypervisor.ModeCrash, BaseCheckpoint: os.Getenv("KURA_HELPER_BASE"), NewCheckpoint: "kura-k2"}); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(4)
	}
	os.Exit(0)
}

func TestKilledSession(t *testing.T) {
	env, c := connect(t)
	for _, running := range []bool{true, false} {
		t.Run(map[bool]string{true: "Running", false: "ShutOff"}[running], func(t *testing.T) {
			g := env.NewGuest(t, testenv.GuestOptions{Start: running, Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 16}}})
			vm := guestVM(t, c, g)
			s, err := begin(t, c, vm, hypervisor.ModeCrash, "", "kura-k1")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(testCtx(t, time.Minute), true); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAbandon$")
			cmd.Env = append(os.Environ(), "KURA_HELPER_VM="+vm.Name, "KURA_HELPER_BASE=kura-k1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper: %v: %s", err, out)
			}
			keep := map[string]bool{"kura-k1": true}
			ctx := testCtx(t, 2*time.Minute)
			lo, err := c.Leftovers(ctx, []string{vm.Name}, keep)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, l := range lo {
				kinds = append(kinds, l.Kind)
			}
			want := []string{KindBackupJob, KindCheckpoint, KindScratch}
			if !running {
				want = []string{KindNBDServer, KindBitmap, KindScratch}
			}
			if !slices.Equal(kinds, want) {
				t.Fatalf("leftovers of a killed session: %v, want kinds %v", lo, want)
			}
			if _, err := begin(t, c, vm, hypervisor.ModeCrash, "kura-k1", "kura-k3"); !errors.Is(err, hypervisor.ErrBusy) {
				t.Fatalf("BeginBackup while the killed session's job/server holds the VM: %v, want ErrBusy", err)
			}
			for _, l := range lo {
				if err := c.RemoveLeftover(ctx, l); err != nil {
					t.Fatalf("RemoveLeftover %+v: %v", l, err)
				}
			}
			if lo, err := c.Leftovers(ctx, []string{vm.Name}, keep); err != nil || len(lo) != 0 {
				t.Fatalf("after removal: %v, %v", lo, err)
			}
			s, err = begin(t, c, vm, hypervisor.ModeCrash, "kura-k1", "kura-k3")
			if err != nil {
				t.Fatalf("BeginBackup after cleanup: %v", err)
			}
			if d := s.Disks()[0]; !d.Incremental {
				t.Errorf("not incremental from the kept base")
			}
			if err := s.Close(ctx, true); err != nil {
				t.Fatal(err)
			}
		})
	}
}
