package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool skips the test when a system tool is missing, or fails it
// when KURA_TEST_STRICT=1.
func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("KURA_TEST_STRICT") == "1" {
				t.Fatalf("%s not installed (KURA_TEST_STRICT=1)", n)
			}
			t.Skipf("%s not installed", n)
		}
	}
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// startServer runs a server command that listens on the unix socket
// returned ("SOCK" in the arguments is replaced by its path) and stops it at
// the end of the test.
func startServer(t testing.TB, name string, args ...string) string {
	t.Helper()
	sock, _ := startServerStop(t, name, args...)
	return sock
}

// startServerStop is startServer that also returns a function stopping
// the server early (SIGTERM, then wait).
func startServerStop(t testing.TB, name string, args ...string) (string, func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "SOCK", sock)
	}
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphans on test timeout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock, stop
		}
		select {
		case <-exited:
			t.Fatalf("%s %v exited early: %s", name, args, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not create its socket: %s", name, stderr.String())
		}
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func dialTest(t testing.TB, sock string, opts Options) *Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix", sock, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nbdinfoMap is the reference map from libnbd's nbdinfo.
func nbdinfoMap(t testing.TB, sock, metaContext string) []Extent {
	t.Helper()
	arg := "--map"
	if metaContext != "" && metaContext != "base:allocation" {
		arg = "--map=" + metaContext
	}
	out := run(t, "nbdinfo", arg, "--json", "nbd+unix:///?socket="+sock)
	var rows []struct {
		Offset int64  `json:"offset"`
		Length int64  `json:"length"`
		Type   uint32 `json:"type"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("parse nbdinfo map: %v\n%s", err, out)
	}
	var exts []Extent
	for _, r := range rows {
		if n := len(exts); n > 0 && exts[n-1].Flags == r.Type {
			exts[n-1].Length += r.Length
			continue
		}
		exts = append(exts, Extent{Offset: r.Offset, Length: r.Length, Flags: r.Type})
	}
	return exts
}

func sameExtents(t testing.TB, got, want []Extent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d extents, want %d\ngot  %v\nwant %v", len(got), len(want), head(got), head(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("extent %d: got %+v want %+v", i, got[i], want[i])
		}
	}
}

func head(e []Extent) []Extent { return e[:min(len(e), 8)] }

// readAll reads the whole export through c with 4 MiB requests.
func readAll(t testing.TB, c *Client) []byte {
	t.Helper()
	buf := make([]byte, c.Size())
	n, err := c.ReadAt(buf, 0)
	if err != nil || int64(n) != c.Size() {
		t.Fatalf("read whole export: n=%d err=%v", n, err)
	}
	return buf
}
