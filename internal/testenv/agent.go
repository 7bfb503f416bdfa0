package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// monitorCommandHMP is VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP (not in go-libvirt).
const monitorCommandHMP = 1

// fileChunk is the size of each guest-file-read/-write request.
const fileChunk = 64 << 10

// Agent sends one guest agent command ({"execute": cmd, "arguments": args})
// and decodes its "return" value into ret (which may be nil).
func (g *Guest) Agent(ctx context.Context, cmd string, args, ret any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	// A generous libvirt timeout: a TCG guest on a loaded host can take tens
	// of seconds to parse a large request; ctx bounds it.
	timeout := int32(120)
	if dl, ok := ctx.Deadline(); ok {
		s := int32(time.Until(dl).Seconds())
		if s < 1 {
			s = 1
		}
		timeout = min(timeout, s)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	out, err := g.env.Conn.QEMUDomainAgentCommand(g.dom, string(b), timeout, 0)
	if err != nil {
		return fmt.Errorf("%w: %s on %s: %w", ErrAgent, cmd, g.dom.Name, err)
	}
	if len(out) == 0 {
		return fmt.Errorf("%w: %s on %s: empty reply", ErrAgent, cmd, g.dom.Name)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(out[0]), &resp); err != nil {
		return fmt.Errorf("%w: %s: bad reply %q: %w", ErrAgent, cmd, out[0], err)
	}
	if ret != nil {
		if err := json.Unmarshal(resp.Return, ret); err != nil {
			return fmt.Errorf("%w: %s: bad return %s: %w", ErrAgent, cmd, resp.Return, err)
		}
	}
	return nil
}

// WaitAgent pings the guest agent until it answers, for at most 120 s (TCG
// guests boot slowly on a loaded host: ~7 s idle, 30 s seen under load) or
// until ctx ends.
func (g *Guest) WaitAgent(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := g.Agent(pctx, "guest-ping", nil, nil)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for agent of %s: %w (last: %w)", g.dom.Name, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ExecResult is the outcome of a command run through guest-exec.
type ExecResult struct {
	Stdout, Stderr []byte
	Exit           int
}

// Run runs "/bin/sh -c cmd" in the guest and waits for it to exit.
func (g *Guest) Run(ctx context.Context, cmd string) (ExecResult, error) {
	var started struct {
		PID int `json:"pid"`
	}
	args := map[string]any{"path": "/bin/sh", "arg": []string{"-c", cmd}, "capture-output": true}
	if err := g.Agent(ctx, "guest-exec", args, &started); err != nil {
		return ExecResult{}, err
	}
	for {
		var st struct {
			Exited bool   `json:"exited"`
			Code   int    `json:"exitcode"`
			Signal int    `json:"signal"`
			Out    string `json:"out-data"`
			Err    string `json:"err-data"`
		}
		if err := g.Agent(ctx, "guest-exec-status", map[string]any{"pid": started.PID}, &st); err != nil {
			return ExecResult{}, err
		}
		if st.Exited {
			var r ExecResult
			var err error
			if r.Stdout, err = base64.StdEncoding.DecodeString(st.Out); err != nil {
				return r, fmt.Errorf("%w: exec stdout: %w", ErrAgent, err)
			}
			if r.Stderr, err = base64.StdEncoding.DecodeString(st.Err); err != nil {
				return r, fmt.Errorf("%w: exec stderr: %w", ErrAgent, err)
			}
			r.Exit = st.Code
			if st.Signal != 0 {
				r.Exit = 128 + st.Signal
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return ExecResult{}, fmt.Errorf("exec %q: %w", cmd, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Exec runs "/bin/sh -c cmd" in the guest and returns its standard output
// and exit status.
func (g *Guest) Exec(ctx context.Context, cmd string) (stdout []byte, exit int, err error) {
	r, err := g.Run(ctx, cmd)
	return r.Stdout, r.Exit, err
}

// WriteFile creates or truncates path in the guest and writes data to it.
func (g *Guest) WriteFile(ctx context.Context, path string, data []byte) error {
	var h int
	if err := g.Agent(ctx, "guest-file-open", map[string]any{"path": path, "mode": "w"}, &h); err != nil {
		return err
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, fileChunk)
		var w struct {
			Count int `json:"count"`
		}
		args := map[string]any{"handle": h, "buf-b64": base64.StdEncoding.EncodeToString(data[off : off+n])}
		if err := g.Agent(ctx, "guest-file-write", args, &w); err != nil {
			_ = g.Agent(ctx, "guest-file-close", map[string]any{"handle": h}, nil)
			return err
		}
		if w.Count <= 0 {
			_ = g.Agent(ctx, "guest-file-close", map[string]any{"handle": h}, nil)
			return fmt.Errorf("%w: write %s: no progress at offset %d", ErrAgent, path, off)
		}
		off += w.Count
	}
	return g.Agent(ctx, "guest-file-close", map[string]any{"handle": h}, nil)
}

// ReadFile returns the contents of path in the guest.
func (g *Guest) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var h int
	if err := g.Agent(ctx, "guest-file-open", map[string]any{"path": path, "mode": "r"}, &h); err != nil {
		return nil, err
	}
	defer func() { _ = g.Agent(context.WithoutCancel(ctx), "guest-file-close", map[string]any{"handle": h}, nil) }()
	var data []byte
	for {
		var r struct {
			Count int    `json:"count"`
			Buf   string `json:"buf-b64"`
			EOF   bool   `json:"eof"`
		}
		if err := g.Agent(ctx, "guest-file-read", map[string]any{"handle": h, "count": fileChunk}, &r); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(r.Buf)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %w", ErrAgent, path, err)
		}
		data = append(data, b...)
		if r.EOF || r.Count == 0 {
			return data, nil
		}
	}
}

// HMP runs a human monitor command (virsh qemu-monitor-command --hmp).
func (g *Guest) HMP(ctx context.Context, cmd string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	out, err := g.env.Conn.QEMUDomainMonitorCommand(g.dom, cmd, monitorCommandHMP)
	if err != nil {
		return "", fmt.Errorf("%w: %q on %s: %w", ErrMonitor, cmd, g.dom.Name, err)
	}
	return out, nil
}

// WriteDiskPattern fills [off, off+length) of the disk with the given target
// with the byte pattern, through qemu-io in the running VM's monitor (no
// guest OS involved), then flushes it. qemu-io reports on QEMU's stdout (the
// domain log), not on the monitor, so the range is checked here first and any
// monitor output is an error.
func (g *Guest) WriteDiskPattern(ctx context.Context, target string, pattern byte, off, length int64) error {
	dev, err := g.qdevID(target)
	if err != nil {
		return err
	}
	_, capacity, _, err := g.env.Conn.DomainGetBlockInfo(g.dom, target, 0)
	if err != nil {
		return fmt.Errorf("%w: block info of %s: %w", ErrMonitor, target, err)
	}
	if off < 0 || length < 0 || uint64(off+length) > capacity {
		return fmt.Errorf("%w: range %d+%d outside %s (%d bytes)", ErrNoDisk, off, length, target, capacity)
	}
	const step = 64 << 20
	for done := int64(0); done < length; {
		n := min(length-done, step)
		if err := g.qemuIO(ctx, dev, fmt.Sprintf("write -P 0x%02x %d %d", pattern, off+done, n)); err != nil {
			return err
		}
		done += n
	}
	return g.qemuIO(ctx, dev, "flush")
}

func (g *Guest) qemuIO(ctx context.Context, dev, cmd string) error {
	hmp := fmt.Sprintf("qemu-io -d %s %q", dev, cmd)
	out, err := g.HMP(ctx, hmp)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("%w: %s: %s", ErrMonitor, hmp, s)
	}
	return nil
}

// qdevID is the QOM path of the virtio backend of a disk: libvirt names
// virtio disks "virtio-disk<N>" with N the index of the target (vda=0).
func (g *Guest) qdevID(target string) (string, error) {
	if _, ok := g.disks[target]; !ok || len(target) < 3 || !strings.HasPrefix(target, "vd") {
		return "", fmt.Errorf("%w: %q on %s", ErrNoDisk, target, g.dom.Name)
	}
	idx := 0
	for _, c := range target[2:] {
		idx = idx*26 + int(c-'a') + 1
	}
	return fmt.Sprintf("/machine/peripheral/virtio-disk%d/virtio-backend", idx-1), nil
}

// FSFreeze freezes the guest's filesystems through the agent and returns how
// many were frozen.
func (g *Guest) FSFreeze(ctx context.Context) (int, error) {
	var n int
	err := g.Agent(ctx, "guest-fsfreeze-freeze", nil, &n)
	return n, err
}

// FSThaw thaws the guest's filesystems and returns how many were thawed.
func (g *Guest) FSThaw(ctx context.Context) (int, error) {
	var n int
	err := g.Agent(ctx, "guest-fsfreeze-thaw", nil, &n)
	return n, err
}

// FSFreezeStatus returns "frozen" or "thawed".
func (g *Guest) FSFreezeStatus(ctx context.Context) (string, error) {
	var s string
	err := g.Agent(ctx, "guest-fsfreeze-status", nil, &s)
	return s, err
}
