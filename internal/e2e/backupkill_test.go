package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/cli"
)

// helperArgsEnv carries the JSON-encoded arguments of the kura command line
// run by TestHelperKuraProcess.
const helperArgsEnv = "KURA_E2E_HELPER_ARGS"

// TestHelperKuraProcess is not a test: run in a child process by
// killKuraDuringBackup, it runs the kura command line given in the
// environment and exits with its code.
func TestHelperKuraProcess(t *testing.T) {
	raw := os.Getenv(helperArgsEnv)
	if raw == "" {
		t.Skip("helper process only")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		os.Exit(100)
	}
	os.Exit(cli.Main(args, strings.NewReader(""), os.Stdout, os.Stderr))
}

// killResult describes a kura process killed in the middle of a backup.
type killResult struct {
	Done, Total int64         // progress of the disk when the kill was sent
	After       time.Duration // time from start to kill
	Events      int           // progress events seen
}

// killKuraDuringBackup runs "kura backup --json args..." in a child process
// and SIGKILLs it at the first disk-progress event of disk with done > 0.
// It fails the test if the child ends by itself.
func killKuraDuringBackup(t *testing.T, c *cliRepo, disk string, args ...string) killResult {
	t.Helper()
	enc, _ := json.Marshal(c.args(append([]string{"backup", "--json"}, args...)...))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKuraProcess$")
	cmd.Env = append(os.Environ(), helperArgsEnv+"="+string(enc))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res killResult
	killed := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Kind, Disk  string
			Done, Total int64
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		res.Events++
		if ev.Kind == "disk-progress" && ev.Disk == disk && ev.Done > 0 && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("kill kura: %v", err)
			}
			killed = true
			res.Done, res.Total, res.After = ev.Done, ev.Total, time.Since(start)
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("kura backup ended before it could be killed (%v): %s", werr, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("kura backup was not killed by SIGKILL: %v (%s)", werr, stderr.String())
	}
	return res
}
