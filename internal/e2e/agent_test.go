package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/testenv"
)

// vmAgent talks to the guest agent of any domain (a restored VM is not a
// testenv.Guest).
type vmAgent struct {
	env *testenv.Env
	dom golibvirt.Domain
}

func agentOf(t *testing.T, env *testenv.Env, name string) *vmAgent {
	t.Helper()
	d, err := env.Conn.DomainLookupByName(name)
	if err != nil {
		t.Fatalf("lookup %s: %v", name, err)
	}
	return &vmAgent{env: env, dom: d}
}

func (a *vmAgent) call(ctx context.Context, cmd string, args, ret any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	out, err := a.env.Conn.QEMUDomainAgentCommand(a.dom, string(b), 60, 0)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", cmd, a.dom.Name, err)
	}
	if len(out) == 0 {
		return fmt.Errorf("%s on %s: empty reply", cmd, a.dom.Name)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(out[0]), &resp); err != nil {
		return err
	}
	if ret != nil {
		return json.Unmarshal(resp.Return, ret)
	}
	return nil
}

// wait pings the agent until it answers (the guest booted).
func (a *vmAgent) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(150 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := a.call(pctx, "guest-ping", nil, nil)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("agent of %s never answered: %v", a.dom.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sh runs a shell command in the guest and returns its standard output.
func (a *vmAgent) sh(t *testing.T, ctx context.Context, cmd string) string {
	t.Helper()
	var started struct {
		PID int `json:"pid"`
	}
	if err := a.call(ctx, "guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", cmd}, "capture-output": true}, &started); err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	for {
		var st struct {
			Exited bool   `json:"exited"`
			Code   int    `json:"exitcode"`
			Out    string `json:"out-data"`
			Err    string `json:"err-data"`
		}
		if err := a.call(ctx, "guest-exec-status", map[string]any{"pid": started.PID}, &st); err != nil {
			t.Fatalf("exec status %q: %v", cmd, err)
		}
		if st.Exited {
			out, _ := base64.StdEncoding.DecodeString(st.Out)
			if st.Code != 0 {
				e, _ := base64.StdEncoding.DecodeString(st.Err)
				t.Fatalf("%q in %s exited %d: %s%s", cmd, a.dom.Name, st.Code, out, e)
			}
			return string(out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
