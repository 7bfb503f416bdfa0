package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// A kura process killed while it waits in a libvirt call does not end the
// call: libvirtd carries it out for the dead client. A backup begin that
// finds its scratch directory removed by the next run meanwhile fails to
// bind its NBD socket, and libvirt 9.0 crashes in that error path
// (segfault in libvirt_driver_qemu.so, seen in CI). A freeze carried out
// for a dead client leaves the guest's filesystems frozen.
//
// So a session records, in pendingFile, the calls it is waiting in, and
// what a killed session left is removed only once such a call has settled:
// its backup job showed up, or settleTime passed since it was made (a call
// waits at most 30 s for the domain's job lock, QEMU_JOB_WAIT_TIME).
// Filesystems a killed quiesce may have frozen are then thawed.
const (
	pendingFile = "pending.json"
	settleTime  = 40 * time.Second
)

// pendingCall is the content of pendingFile.
type pendingCall struct {
	Call    string    `json:"call"`
	Quiesce bool      `json:"quiesce"` // a filesystem freeze is among the calls
	Pause   bool      `json:"pause"`   // kura pauses the VM around them
	Since   time.Time `json:"since"`
}

// markPending records that the session of dir is about to wait in call;
// the returned func clears the record once the call has returned.
func markPending(dir string, p pendingCall) (func(), error) {
	p.Since = time.Now().UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, pendingFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("record pending libvirt call: %w", err)
	}
	return func() { _ = os.Remove(path) }, nil
}

// readPending reads dir's pendingFile; false when there is none (or it
// cannot be read: a half-written record still means a call was pending).
func readPending(dir string) (pendingCall, bool) {
	b, err := os.ReadFile(filepath.Join(dir, pendingFile))
	if err != nil {
		return pendingCall{}, false
	}
	var p pendingCall
	if json.Unmarshal(b, &p) != nil || p.Since.IsZero() {
		p = pendingCall{Call: "unknown", Quiesce: true}
		if fi, err := os.Stat(filepath.Join(dir, pendingFile)); err == nil {
			p.Since = fi.ModTime()
		}
	}
	return p, true
}

// settleDir waits until the call a killed session of vm had pending in
// dir has settled (see above), aborts the backup job it made, if any,
// thaws the guest's filesystems if the calls may have frozen them and
// resumes the VM if they paused it. It returns what it did, for notes;
// nothing when dir has no pending call.
func (c *Connector) settleDir(ctx context.Context, d golibvirt.Domain, vm hypervisor.VM, dir string) ([]string, error) {
	p, ok := readPending(dir)
	if !ok {
		return nil, nil
	}
	var notes []string
	deadline := p.Since.Add(settleTime)
	start := time.Now()
	logged := false
	for {
		st, err := c.sessions(vm, d)
		if err != nil {
			return nil, err
		}
		if st.job != "" && !st.jobLive && filepath.Dir(st.job) == dir {
			if err := c.endJob(ctx, d); err != nil {
				return nil, err
			}
			notes = append(notes, "aborted the backup job libvirt started for it after it died")
			break
		}
		if !time.Now().Before(deadline) {
			break
		}
		if !logged {
			c.log.Warn("waiting for the libvirt calls of a killed kura process to settle",
				"vm", vm.Name, "call", p.Call, "until", deadline.Round(time.Second))
			logged = true
		}
		t := time.NewTimer(min(250*time.Millisecond, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("wait for the calls of a killed run on %s to settle: %w", vm.Name, ctx.Err())
		case <-t.C:
		}
	}
	if logged {
		notes = append(notes, fmt.Sprintf("waited %s for its last libvirt call (%s) to settle",
			time.Since(start).Round(100*time.Millisecond), p.Call))
	}
	if p.Pause {
		if state, _, err := c.lv.DomainGetState(d, 0); err == nil && golibvirt.DomainState(state) == golibvirt.DomainPaused {
			if err := c.lv.DomainResume(d); err != nil {
				return notes, mapErr("resume "+vm.Name+", paused by a killed run", err)
			}
			notes = append(notes, "resumed the vm it left paused")
		}
	}
	if p.Quiesce && vm.HasAgent && vm.State == hypervisor.PowerOn {
		n, err := c.thaw(ctx, d, vm)
		switch {
		case err != nil:
			c.log.Warn("thaw after a killed quiesce failed", "vm", vm.Name, "err", err)
			notes = append(notes, "could not thaw filesystems a killed quiesce may have frozen: "+err.Error())
		case n > 0:
			notes = append(notes, fmt.Sprintf("thawed %d guest filesystems it left frozen", n))
		}
	}
	if err := os.Remove(filepath.Join(dir, pendingFile)); err != nil && !os.IsNotExist(err) {
		return notes, fmt.Errorf("clear pending call record: %w", err)
	}
	return notes, nil
}
