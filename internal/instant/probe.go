package instant

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Probe kinds.
const (
	ProbeAgent = "agent" // the guest agent answers (always checked first)
	ProbeExec  = "exec"  // a command exits with a status (and prints a text)
	ProbeFile  = "file"  // a file's SHA-256, read from inside the guest
	ProbeTCP   = "tcp"   // a TCP port listens inside the guest
)

// Probe is one check run in a booted guest. Parse them with ParseProbe:
//
//	agent                      the guest agent answers
//	exec:COMMAND               /bin/sh -c COMMAND exits 0
//	exec[N]:COMMAND            ... exits N
//	exec:COMMAND => TEXT       ... exits 0 and prints TEXT (trimmed)
//	file:PATH=SHA256           the file's SHA-256 (hex) is SHA256
//	tcp:PORT                   something listens on TCP port PORT
type Probe struct {
	Kind    string  `json:"kind"`
	Command string  `json:"command,omitempty"`
	Exit    int     `json:"exit,omitempty"`
	Output  *string `json:"output,omitempty"`
	Path    string  `json:"path,omitempty"`
	SHA256  string  `json:"sha256,omitempty"`
	Port    int     `json:"port,omitempty"`
	// Spec is the text the probe was parsed from.
	Spec string `json:"spec"`
}

// ParseProbe parses a probe specification (see Probe).
func ParseProbe(s string) (Probe, error) {
	p := Probe{Spec: s}
	bad := func(format string, args ...any) (Probe, error) {
		return Probe{}, fmt.Errorf("%w %q: %s", ErrBadProbe, s, fmt.Sprintf(format, args...))
	}
	kind, arg, _ := strings.Cut(s, ":")
	switch {
	case s == ProbeAgent:
		p.Kind = ProbeAgent
	case kind == ProbeExec || strings.HasPrefix(kind, ProbeExec+"["):
		p.Kind = ProbeExec
		if kind != ProbeExec {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(kind, ProbeExec+"["), "]"))
			if err != nil || !strings.HasSuffix(kind, "]") || n < 0 || n > 255 {
				return bad("the exit status in exec[N] must be 0-255")
			}
			p.Exit = n
		}
		cmd, out, ok := strings.Cut(arg, "=>")
		p.Command = strings.TrimSpace(cmd)
		if ok {
			o := strings.TrimSpace(out)
			p.Output = &o
		}
		if p.Command == "" {
			return bad("no command")
		}
	case kind == ProbeFile:
		i := strings.LastIndexByte(arg, '=')
		if i <= 0 {
			return bad("use file:PATH=SHA256")
		}
		p.Kind, p.Path, p.SHA256 = ProbeFile, arg[:i], strings.ToLower(arg[i+1:])
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size {
			return bad("%q is not a SHA-256 in hex", arg[i+1:])
		}
		if !strings.HasPrefix(p.Path, "/") {
			return bad("the path must be absolute")
		}
	case kind == ProbeTCP:
		n, err := strconv.Atoi(arg)
		if err != nil || n <= 0 || n > 65535 {
			return bad("the port must be 1-65535")
		}
		p.Kind, p.Port = ProbeTCP, n
	default:
		return bad("use agent, exec:COMMAND, exec[N]:COMMAND, exec:COMMAND => TEXT, file:PATH=SHA256 or tcp:PORT")
	}
	return p, nil
}

// ProbeResult is the outcome of one probe.
type ProbeResult struct {
	Probe string `json:"probe"`
	OK    bool   `json:"ok"`
	// Detail says what was found (the reason when not OK).
	Detail string `json:"detail,omitempty"`
}

// maxProbeFile bounds a file a probe hashes.
const maxProbeFile = 256 << 20

// run runs the probe in the guest of VM vm.
func (p Probe) run(ctx context.Context, g hypervisor.GuestAgent, vm string) ProbeResult {
	r := ProbeResult{Probe: p.Spec}
	fail := func(format string, args ...any) ProbeResult {
		r.Detail = fmt.Sprintf(format, args...)
		return r
	}
	switch p.Kind {
	case ProbeAgent:
		if err := g.GuestPing(ctx, vm); err != nil {
			return fail("the agent does not answer: %v", err)
		}
		r.Detail = "the agent answers"
	case ProbeExec:
		res, err := g.GuestExec(ctx, vm, "/bin/sh", "-c", p.Command)
		if err != nil {
			return fail("cannot run: %v", err)
		}
		out := strings.TrimSpace(string(res.Stdout))
		if res.Exit != p.Exit {
			return fail("exit status %d, want %d (stderr: %q)", res.Exit, p.Exit, clip(strings.TrimSpace(string(res.Stderr))))
		}
		if p.Output != nil && out != *p.Output {
			return fail("printed %q, want %q", clip(out), *p.Output)
		}
		r.Detail = fmt.Sprintf("exit status %d", res.Exit)
	case ProbeFile:
		b, err := g.GuestReadFile(ctx, vm, p.Path, maxProbeFile)
		if err != nil {
			return fail("cannot read: %v", err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != p.SHA256 {
			return fail("sha256 %s, want %s", got, p.SHA256)
		}
		r.Detail = fmt.Sprintf("%d bytes, sha256 matches", len(b))
	case ProbeTCP:
		ok, err := listening(ctx, g, vm, p.Port)
		if err != nil {
			return fail("cannot read the guest's sockets: %v", err)
		}
		if !ok {
			return fail("nothing listens on TCP port %d", p.Port)
		}
		r.Detail = fmt.Sprintf("TCP port %d listens", p.Port)
	}
	r.OK = true
	return r
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// listening reads the guest's /proc/net/tcp{,6} for a socket in state
// LISTEN on port.
func listening(ctx context.Context, g hypervisor.GuestAgent, vm string, port int) (bool, error) {
	var firstErr error
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := g.GuestReadFile(ctx, vm, f, 16<<20)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if listensOn(b, port) {
			return true, nil
		}
		firstErr = nil
	}
	return false, firstErr
}

// listensOn parses a /proc/net/tcp table: "sl local_address rem_address
// st ...", addresses as HEXIP:HEXPORT, state 0A meaning LISTEN.
func listensOn(table []byte, port int) bool {
	sc := bufio.NewScanner(bytes.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port {
			return true
		}
	}
	return false
}
