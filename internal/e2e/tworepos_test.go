package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/service"
	"github.com/kurabackup/kura/internal/testenv"
)

// TestTwoRepositories backs the same VMs up into two repositories in turn:
// each keeps its own chain of checkpoints, so every backup after the first
// is incremental in both; cleanup against one lists the other's
// checkpoints as foreign and removes nothing of them, and without VM
// arguments it does not look at VMs it never backed up.
func TestTwoRepositories(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	testenv.NeedTool(t, "qemu-io")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const size = 32 << 20
	dir := imageDir(t, env)
	path, model := randomQcow2(t, dir, "shared-vdb", size)
	shared := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 16}, {Target: "vdb", Path: path}}})
	onlyB := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 16}}})
	a, b := newCLIRepo(t), newCLIRepo(t)
	ra, rb := a.open(t, ctx), b.open(t, ctx)

	for round := 0; round < 3; round++ {
		if round > 0 {
			qemuIOPattern(t, path, model, byte(0x60+round), int64(round)<<20, 1<<20)
		}
		for _, c := range []*cliRepo{a, b} {
			p := vmResult(t, c.backup(t, 0, shared.Name(), "--retries", "0"), shared.Name()).Point
			if want := map[bool]string{true: "full", false: "incremental"}[round == 0]; p.Kind != want {
				t.Errorf("round %d: point %s is %s, want %s (notes %q)", round, p.ID, p.Kind, want, p.Notes)
			}
			r := ra
			if c == b {
				r = rb
			}
			sameBytes(t, fmt.Sprintf("round %d vdb", round), pointDisk(t, ctx, r, p, "vdb"), model)
			if round > 0 {
				if st := diskStats(p, "vdb"); st.BytesRead > 4<<20 {
					t.Errorf("round %d: read %d bytes of vdb for 1 MiB changed", round, st.BytesRead)
				}
			}
		}
	}
	b.backup(t, 0, onlyB.Name(), "--retries", "0")

	var rep service.CleanupReport
	if err := json.Unmarshal([]byte(a.ok(t, "cleanup", "--yes", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	foreign := 0
	for _, l := range rep.Leftovers {
		switch {
		case l.VM == onlyB.Name():
			t.Errorf("cleanup of repository a looked at %s, which only b backed up: %+v", onlyB.Name(), l)
		case l.Foreign:
			foreign++
		default:
			t.Errorf("cleanup of repository a found %+v after clean runs", l)
		}
	}
	if foreign == 0 || rep.Removed != 0 {
		t.Errorf("cleanup of a: %d foreign leftovers listed, %d removed; want b's listed, nothing removed: %+v", foreign, rep.Removed, rep)
	}
	// b's chain survived a's cleanup.
	qemuIOPattern(t, path, model, 0x7f, 20<<20, 1<<20)
	p := vmResult(t, b.backup(t, 0, shared.Name(), "--retries", "0"), shared.Name()).Point
	if p.Kind != "incremental" {
		t.Errorf("b after a's cleanup: %s (notes %q)", p.Kind, p.Notes)
	}
	sameBytes(t, "b after a's cleanup", pointDisk(t, ctx, rb, p, "vdb"), model)
}
