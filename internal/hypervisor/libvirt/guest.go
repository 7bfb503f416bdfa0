package libvirt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// The guest agent (qemu-guest-agent through libvirt) and the console.

var (
	_ hypervisor.GuestAgent = (*Connector)(nil)
	_ hypervisor.Console    = (*Connector)(nil)
)

// agent sends one agent command and decodes its "return" into ret.
func (c *Connector) agent(ctx context.Context, nameOrUUID, cmd string, args, ret any) error {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	timeout := int32(60)
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(1, min(timeout, int32(time.Until(dl).Seconds())))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	out, err := c.lv.QEMUDomainAgentCommand(d, string(b), timeout, 0)
	if err != nil {
		return fmt.Errorf("agent %s on %s: %w: %w", cmd, d.Name, hypervisor.ErrNoAgent, err)
	}
	if len(out) == 0 {
		return fmt.Errorf("agent %s on %s: %w: empty reply", cmd, d.Name, hypervisor.ErrNoAgent)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(out[0]), &resp); err != nil {
		return fmt.Errorf("agent %s on %s: bad reply: %w", cmd, d.Name, err)
	}
	if ret != nil {
		if err := json.Unmarshal(resp.Return, ret); err != nil {
			return fmt.Errorf("agent %s on %s: bad reply: %w", cmd, d.Name, err)
		}
	}
	return nil
}

// GuestPing implements hypervisor.GuestAgent.
func (c *Connector) GuestPing(ctx context.Context, nameOrUUID string) error {
	return c.agent(ctx, nameOrUUID, "guest-ping", nil, nil)
}

// GuestExec implements hypervisor.GuestAgent.
func (c *Connector) GuestExec(ctx context.Context, nameOrUUID, path string, args ...string) (hypervisor.ExecResult, error) {
	var started struct {
		PID int `json:"pid"`
	}
	if args == nil {
		args = []string{}
	}
	if err := c.agent(ctx, nameOrUUID, "guest-exec", map[string]any{"path": path, "arg": args, "capture-output": true}, &started); err != nil {
		return hypervisor.ExecResult{}, err
	}
	for {
		var st struct {
			Exited bool   `json:"exited"`
			Code   int    `json:"exitcode"`
			Signal int    `json:"signal"`
			Out    string `json:"out-data"`
			Err    string `json:"err-data"`
		}
		if err := c.agent(ctx, nameOrUUID, "guest-exec-status", map[string]any{"pid": started.PID}, &st); err != nil {
			return hypervisor.ExecResult{}, err
		}
		if st.Exited {
			r := hypervisor.ExecResult{Exit: st.Code}
			if st.Signal != 0 {
				r.Exit = 128 + st.Signal
			}
			var err1, err2 error
			r.Stdout, err1 = base64.StdEncoding.DecodeString(st.Out)
			r.Stderr, err2 = base64.StdEncoding.DecodeString(st.Err)
			if err1 != nil || err2 != nil {
				return r, fmt.Errorf("agent exec %s: undecodable output", path)
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return hypervisor.ExecResult{}, fmt.Errorf("agent exec %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// agentReadChunk is the size of each guest-file-read.
const agentReadChunk = 48 << 10

// GuestReadFile implements hypervisor.GuestAgent.
func (c *Connector) GuestReadFile(ctx context.Context, nameOrUUID, path string, limit int64) ([]byte, error) {
	var h int
	if err := c.agent(ctx, nameOrUUID, "guest-file-open", map[string]any{"path": path, "mode": "r"}, &h); err != nil {
		return nil, err
	}
	defer func() {
		_ = c.agent(context.WithoutCancel(ctx), nameOrUUID, "guest-file-close", map[string]any{"handle": h}, nil)
	}()
	var data []byte
	for {
		var r struct {
			Count int    `json:"count"`
			Buf   string `json:"buf-b64"`
			EOF   bool   `json:"eof"`
		}
		if err := c.agent(ctx, nameOrUUID, "guest-file-read", map[string]any{"handle": h, "count": agentReadChunk}, &r); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(r.Buf)
		if err != nil {
			return nil, fmt.Errorf("agent read %s: %w", path, err)
		}
		data = append(data, b...)
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("guest file %s is larger than %d bytes", path, limit)
		}
		if r.EOF || r.Count == 0 {
			return data, nil
		}
	}
}

// Screenshot implements hypervisor.Console. libvirt returns PNG with QEMU
// 7.1 and later; the PPM of older ones is converted. A screenshot takes
// well under a second; one that fails without a whole image or takes
// longer than shotTimeout (both seen in CI on a loaded host, right after
// a guest's agent first answered: go-libvirt's XDR EOF and no PNG, and a
// stream that never ended) is taken again, on a new connection, up to
// three times. The error says how many bytes had arrived.
func (c *Connector) Screenshot(ctx context.Context, nameOrUUID string) ([]byte, error) {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return nil, err
	}
	const attempts = 3
	for i := 1; ; i++ {
		actx, cancel := context.WithTimeout(ctx, shotTimeout)
		img, err := c.screenshot(actx, d)
		cancel()
		if err == nil || i == attempts || ctx.Err() != nil {
			return img, err
		}
		c.log.Debug("screenshot failed; taking it again", "vm", d.Name, "attempt", i, "err", err)
		t := time.NewTimer(time.Duration(i) * 300 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// shotTimeout bounds one attempt of a screenshot.
const shotTimeout = 20 * time.Second

// screenshot takes one screenshot of d as PNG.
func (c *Connector) screenshot(ctx context.Context, d golibvirt.Domain) ([]byte, error) {
	var buf bytes.Buffer
	var mime golibvirt.OptString
	err := c.streamCall(ctx, "screenshot of "+d.Name, func(lv *golibvirt.Libvirt) error {
		var err error
		mime, err = lv.DomainScreenshot(d, &buf, 0, 0)
		return err
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil, err
	}
	// go-libvirt fails to decode the reply's mime type after the stream
	// (an XDR EOF) although the image arrived whole: judge by the data.
	if _, perr := png.Decode(bytes.NewReader(buf.Bytes())); perr == nil {
		return buf.Bytes(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w (%d bytes received)", mapErr("screenshot of "+d.Name, err), buf.Len())
	}
	img := ppmDecode(buf.Bytes())
	if img == nil {
		return nil, fmt.Errorf("screenshot of %s: image of type %v is neither png nor ppm", d.Name, mime)
	}
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// ppmDecode decodes a binary PPM (P6, maxval 255), QEMU's older
// screendump format; nil when b is not one.
func ppmDecode(b []byte) image.Image {
	var w, h, maxv int
	r := bytes.NewReader(b)
	if n, err := fmt.Fscanf(r, "P6 %d %d %d", &w, &h, &maxv); n != 3 || err != nil || maxv != 255 || w <= 0 || h <= 0 || w*h > 1<<26 {
		return nil
	}
	if _, err := r.ReadByte(); err != nil { // the single whitespace after maxval
		return nil
	}
	pix := b[len(b)-r.Len():]
	if len(pix) < 3*w*h {
		return nil
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		copy(img.Pix[4*i:], pix[3*i:3*i+3])
		img.Pix[4*i+3] = 0xff
	}
	return img
}
