package progress

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair with the given size, so Auto mode
// can be checked against a real terminal device.
func openPTY(t *testing.T, cols, rows int) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)}); err != nil {
		t.Fatalf("set window size: %v", err)
	}
	return m, s
}

func TestTerminalAutoDetectsTTY(t *testing.T) {
	m, s := openPTY(t, 60, 20)
	clk := &fakeClock{t: t0}
	tty := NewTerminal(s, TerminalOptions{Now: clk.now})
	if !tty.live || tty.width != 60 {
		t.Fatalf("on a pty: live=%v width=%d, want live, 60 columns", tty.live, tty.width)
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if plain := NewTerminal(f, TerminalOptions{}); plain.live {
		t.Fatal("a regular file was taken for a terminal")
	}

	tty.Emit(Event{Time: t0, Kind: DiskStart, VM: "vm1", Disk: "vda", Total: 8 << 30})
	clk.advance(time.Second)
	tty.Emit(Event{Time: t0.Add(time.Hour), Kind: DiskProgress, VM: "vm1", Disk: "vda", Done: 1 << 30, Total: 8 << 30,
		Rate: 350e6, ETA: 19 * time.Second})
	if err := tty.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	var out bytes.Buffer
	_ = m.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	const closeSeq = "\x1b[1A\r\x1b[J" // Close erases the one live line
	for !strings.Contains(out.String(), closeSeq) {
		n, err := m.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			if err != io.EOF {
				t.Logf("read pty: %v", err)
			}
			break
		}
	}
	got := out.String()
	for _, want := range []string{"vm1 vda: started, 8.0 GiB", "vm1 vda  1.0 GiB / 8.0 GiB  350 MB/s  ETA 0:19", "\x1b[1A"} {
		if !strings.Contains(got, want) {
			t.Errorf("pty output %q lacks %q", got, want)
		}
	}
}
