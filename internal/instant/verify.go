package instant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/nbd"
)

// VerifyOptions control VerifyBoot.
type VerifyOptions struct {
	// Probes run once the agent answers (it always must).
	Probes []Probe
	// Timeout bounds the boot and the probes of one point (default 5 min).
	Timeout time.Duration
	// Parallel is how many points boot at once (default 1).
	Parallel int
	// ScreenshotDir keeps the console screenshots ("" keeps none).
	ScreenshotDir string
	// Progress, when set, hears what each verification does.
	Progress func(point, message string)
}

// BootResult is the outcome of booting one point.
type BootResult struct {
	Point  string `json:"point"`
	VM     string `json:"vm"`
	VMUUID string `json:"vm_uuid"`
	OK     bool   `json:"ok"`
	// Reason says why the point failed ("" when OK).
	Reason     string        `json:"reason,omitempty"`
	Probes     []ProbeResult `json:"probes,omitempty"`
	Screenshot string        `json:"screenshot,omitempty"`
	// BootSeconds is the time from the VM's start to its agent's answer.
	BootSeconds float64   `json:"boot_seconds,omitempty"`
	Seconds     float64   `json:"seconds"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
}

// VerifyBoot boots each point as a throw-away VM on an isolated network,
// waits for its guest agent, runs the probes, takes a screenshot and
// records the result in the catalog; everything is removed afterwards. A
// point that does not boot is a failed result, not an error; the error is
// for a cancelled run or an unusable connection.
func (m *Manager) VerifyBoot(ctx context.Context, points []string, opts VerifyOptions) ([]BootResult, error) {
	h, err := m.verifier()
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	opts.Parallel = max(1, opts.Parallel)
	res := make([]BootResult, len(points))
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, p := range points {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return res[:i], ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res[i] = m.verifyOne(ctx, h, p, opts)
		}()
	}
	wg.Wait()
	return res, ctx.Err()
}

// verifier runs one verification; its teardown runs even when ctx ends.
type verification struct {
	m        *Manager
	h        verifyCaps
	opts     VerifyOptions
	res      *BootResult
	teardown []func(context.Context)
}

func (v *verification) progress(msg string) {
	if v.opts.Progress != nil {
		v.opts.Progress(v.res.Point, msg)
	}
}

func (v *verification) fail(format string, args ...any) {
	if v.res.Reason == "" {
		v.res.Reason = fmt.Sprintf(format, args...)
	}
}

func (m *Manager) verifyOne(ctx context.Context, h verifyCaps, point string, opts VerifyOptions) BootResult {
	res := BootResult{Point: point, Started: time.Now().UTC()}
	v := &verification{m: m, h: h, opts: opts, res: &res}
	v.run(ctx, point)
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	for i := len(v.teardown) - 1; i >= 0; i-- {
		v.teardown[i](tctx)
	}
	res.OK = res.Reason == ""
	res.Finished = time.Now().UTC()
	res.Seconds = res.Finished.Sub(res.Started).Seconds()
	if m.Catalog != nil && res.VMUUID != "" {
		probes, _ := json.Marshal(res.Probes)
		if _, err := m.Catalog.AddBootCheck(tctx, catalog.BootCheck{PointID: res.Point, RepoID: m.Repo.Config().ID,
			VMUUID: res.VMUUID, VMName: res.VM, Started: res.Started, Finished: res.Finished, OK: res.OK,
			Reason: res.Reason, Screenshot: res.Screenshot, Probes: probes}); err != nil {
			m.log().Warn("record boot check in the catalog", "point", res.Point, "err", err)
		}
	}
	v.progress(fmt.Sprintf("done: ok=%v %s", res.OK, res.Reason))
	return res
}

func (v *verification) run(ctx context.Context, point string) {
	m, h := v.m, v.h
	lease, pm, err := m.openPoint(ctx, "boot verification", point)
	if err != nil {
		v.fail("%v", err)
		return
	}
	v.teardown = append(v.teardown, func(ctx context.Context) { _ = lease.Release(ctx) })
	v.res.Point, v.res.VM, v.res.VMUUID = pm.ID, pm.VM.Name, pm.VM.UUID
	run := "kura-verify-" + randomID()
	host, _ := os.Hostname()
	tag := hypervisor.InstantTag{Role: hypervisor.RoleVerify, Point: pm.ID, Source: pm.VM.UUID, Owner: os.Getpid(), Host: host}
	dir, err := h.InstantDir(ctx, run, tag)
	if err != nil {
		v.fail("%v", err)
		return
	}
	tag.Dir = dir
	v.teardown = append(v.teardown, func(context.Context) { _ = os.RemoveAll(dir) })

	srv := nbd.NewServer(nbd.ServerOptions{Logger: m.log()})
	for _, d := range pm.Disks {
		r, err := m.Repo.OpenDisk(ctx, d.Index)
		if err != nil {
			v.fail("disk %s: %v", d.Target, err)
			return
		}
		v.teardown = append(v.teardown, func(context.Context) { r.Close() })
		if err := srv.AddExport(d.Target, "", newDiskExport(r)); err != nil {
			v.fail("%v", err)
			return
		}
	}
	sock := filepath.Join(dir, "nbd.sock")
	ln, err := listenSocket(sock)
	if err != nil {
		v.fail("%v", err)
		return
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan struct{})
	go func() { _ = srv.Serve(sctx, ln); close(served) }()
	v.teardown = append(v.teardown, func(context.Context) { stop(); <-served })

	if err := h.CreateIsolatedNetwork(ctx, run); err != nil {
		v.fail("%v", err)
		return
	}
	v.teardown = append(v.teardown, func(ctx context.Context) {
		if err := h.RemoveNetwork(ctx, run); err != nil {
			m.log().Warn("remove isolated network", "network", run, "err", err)
		}
	})
	disks := make([]hypervisor.InstantDisk, len(pm.Disks))
	for i, d := range pm.Disks {
		disks[i] = hypervisor.InstantDisk{Target: d.Target, Overlay: filepath.Join(dir, d.Target+".qcow2"), Size: d.Size,
			Socket: sock, Export: d.Target}
		if err := h.CreateOverlay(ctx, disks[i]); err != nil {
			v.fail("%v", err)
			return
		}
	}
	v.progress("booting " + run)
	booted := time.Now()
	vm, err := h.DefineInstant(ctx, hypervisor.InstantSpec{Config: pm.Config, Name: run, Disks: disks,
		IsolatedNetwork: run, Console: true, Transient: true, Tag: tag})
	if err != nil {
		v.fail("the vm could not be started: %v", err)
		return
	}
	v.teardown = append(v.teardown, func(ctx context.Context) {
		if err := m.Conn.StopVM(ctx, vm.UUID); err != nil && !errors.Is(err, hypervisor.ErrVMNotFound) {
			m.log().Warn("stop verification vm", "vm", run, "err", err)
		}
	})
	bctx, cancel := context.WithTimeout(ctx, v.opts.Timeout)
	defer cancel()
	if v.waitAgent(bctx, vm.UUID) {
		v.res.BootSeconds = time.Since(booted).Seconds()
		v.progress(fmt.Sprintf("the agent answered after %.1f s", v.res.BootSeconds))
		for _, p := range append([]Probe{{Kind: ProbeAgent, Spec: ProbeAgent}}, v.opts.Probes...) {
			r := p.run(bctx, h, vm.UUID)
			v.res.Probes = append(v.res.Probes, r)
			if !r.OK {
				v.fail("probe %s failed: %s", p.Spec, r.Detail)
			}
		}
	}
	v.screenshot(ctx, vm.UUID)
}

// waitAgent pings the guest agent until it answers (true) or the
// verification fails: the VM stopped, or the time is up.
func (v *verification) waitAgent(ctx context.Context, vm string) bool {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := v.h.GuestPing(pctx, vm)
		cancel()
		if err == nil {
			return true
		}
		if st, lerr := v.m.Conn.LookupVM(context.WithoutCancel(ctx), vm); errors.Is(lerr, hypervisor.ErrVMNotFound) ||
			lerr == nil && st.State == hypervisor.PowerOff {
			v.fail("the vm stopped while booting (crashed or powered off) before its guest agent answered")
			return false
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				v.fail("the guest agent did not answer within %s: the guest did not boot (see the screenshot), or has no running agent", v.opts.Timeout)
			} else {
				v.fail("cancelled: %v", ctx.Err())
			}
			return false
		case <-time.After(time.Second):
		}
	}
}

// screenshot keeps a PNG of the console, if the VM still runs.
func (v *verification) screenshot(ctx context.Context, vm string) {
	if v.opts.ScreenshotDir == "" {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	png, err := v.h.Screenshot(sctx, vm)
	if err != nil {
		v.m.log().Warn("console screenshot", "point", v.res.Point, "err", err)
		return
	}
	if err := os.MkdirAll(v.opts.ScreenshotDir, 0o700); err != nil {
		v.m.log().Warn("console screenshot", "err", err)
		return
	}
	path := filepath.Join(v.opts.ScreenshotDir, v.res.Point+"-"+time.Now().UTC().Format("20060102T150405Z")+".png")
	if err := os.WriteFile(path, png, 0o600); err != nil {
		v.m.log().Warn("console screenshot", "err", err)
		return
	}
	v.res.Screenshot = path
}
