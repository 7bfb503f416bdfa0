package progress

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// script is a backup of two VMs: vm1 with two disks succeeds, vm2 fails
// after a retry.
func script() []Event {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	return []Event{
		{Time: at(0), Kind: JobStart, Job: "j1", Msg: "backup of 2 vms"},
		{Time: at(0), Kind: VMStart, Job: "j1", VM: "vm1"},
		{Time: at(0), Kind: VMStart, Job: "j1", VM: "vm2"},
		{Time: at(0.5), Kind: DiskStart, Job: "j1", VM: "vm1", Disk: "vda", Total: 8 << 30},
		{Time: at(0.5), Kind: DiskStart, Job: "j1", VM: "vm1", Disk: "vdb", Total: 1 << 30},
		{Time: at(1.5), Kind: DiskProgress, Job: "j1", VM: "vm1", Disk: "vda", Done: 350e6, Total: 8 << 30},
		{Time: at(1.5), Kind: DiskProgress, Job: "j1", VM: "vm1", Disk: "vdb", Done: 1 << 29, Total: 1 << 30},
		{Time: at(2), Kind: VMRetry, Job: "j1", VM: "vm2", Err: "guest agent not responding", Msg: "attempt 2 of 3"},
		{Time: at(2.5), Kind: DiskProgress, Job: "j1", VM: "vm1", Disk: "vda", Done: 700e6, Total: 8 << 30},
		{Time: at(2.5), Kind: DiskDone, Job: "j1", VM: "vm1", Disk: "vdb", Done: 1 << 30, Total: 1 << 30},
		{Time: at(3), Kind: Message, Job: "j1", VM: "vm1", Msg: "filesystems thawed"},
		{Time: at(25.5), Kind: DiskDone, Job: "j1", VM: "vm1", Disk: "vda", Done: 8 << 30, Total: 8 << 30},
		{Time: at(26), Kind: VMDone, Job: "j1", VM: "vm1"},
		{Time: at(30), Kind: VMFailed, Job: "j1", VM: "vm2", Err: "guest agent not responding"},
		{Time: at(31), Kind: JobDone, Job: "j1", Err: "1 of 2 vms failed"},
	}
}

func TestTerminalPlain(t *testing.T) {
	var buf bytes.Buffer
	s := NewTerminal(&buf, TerminalOptions{}) // a buffer is not a terminal: plain
	for _, e := range script() {
		s.Emit(e)
	}
	want := `job j1 started (backup of 2 vms)
vm1: started
vm2: started
vm1 vda: started, 8.0 GiB
vm1 vdb: started, 1.0 GiB
vm2: retrying after error: guest agent not responding (attempt 2 of 3)
vm1 vdb: done, 1.0 GiB in 0:02 (537 MB/s)
vm1: filesystems thawed
vm1 vda: done, 8.0 GiB in 0:25 (344 MB/s)
vm1: done after 0:26
vm2: FAILED after 0:30: guest agent not responding
job j1 done in 0:31: 1 of 2 vms failed
`
	if got := buf.String(); got != want {
		t.Fatalf("plain output:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(buf.String(), "\x1b") {
		t.Error("escape sequence in plain output")
	}
	if NewTerminal(os.Stderr, TerminalOptions{}).live && os.Getenv("TERM") == "" {
		t.Log("stderr is a terminal here")
	}
}

// screen interprets the few ANSI sequences the live renderer uses and
// returns the visible lines.
type screen struct {
	lines []string
	row   int
}

var csi = regexp.MustCompile(`^\x1b\[(\d*)([AKJ])`)

func (s *screen) feed(t *testing.T, out string) {
	t.Helper()
	col := 0
	set := func(r rune) {
		for len(s.lines) <= s.row {
			s.lines = append(s.lines, "")
		}
		line := []rune(s.lines[s.row])
		for len(line) < col {
			line = append(line, ' ')
		}
		if col < len(line) {
			line[col] = r
		} else {
			line = append(line, r)
		}
		s.lines[s.row] = string(line)
		col++
	}
	for i := 0; i < len(out); {
		if m := csi.FindStringSubmatch(out[i:]); m != nil {
			n := 1
			if m[1] != "" {
				n, _ = strconv.Atoi(m[1])
			}
			switch m[2] {
			case "A":
				s.row -= n
				if s.row < 0 {
					t.Fatalf("cursor moved above the top")
				}
			case "K":
				if s.row < len(s.lines) {
					if r := []rune(s.lines[s.row]); col < len(r) {
						s.lines[s.row] = string(r[:col])
					}
				}
			case "J":
				if s.row < len(s.lines) {
					if r := []rune(s.lines[s.row]); col < len(r) {
						s.lines[s.row] = string(r[:col])
					}
					s.lines = s.lines[:s.row+1]
				}
			}
			i += len(m[0])
			continue
		}
		switch out[i] {
		case '\r':
			col = 0
		case '\n':
			s.row++
			col = 0
		case '\x1b':
			t.Fatalf("unknown escape at %q", out[i:min(len(out), i+8)])
		default:
			set(rune(out[i]))
		}
		i++
	}
	for len(s.lines) > 0 && s.lines[len(s.lines)-1] == "" && len(s.lines) > s.row {
		s.lines = s.lines[:len(s.lines)-1]
	}
}

func (s *screen) String() string { return strings.Join(s.lines, "\n") }

func TestTerminalLive(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: t0}
	s := NewTerminal(&buf, TerminalOptions{Mode: Live, Width: 80, Now: clk.now})
	sc := &screen{}
	ev := script()
	emit := func(i int) {
		buf.Reset()
		s.Emit(ev[i])
		sc.feed(t, buf.String())
	}
	for i := 0; i <= 4; i++ {
		emit(i)
	}
	clk.advance(time.Second)
	emit(5)
	emit(6)
	// Event 6 came within 100ms of event 5's redraw: not drawn yet.
	want := `job j1 started (backup of 2 vms)
vm1: started
vm2: started
vm1 vda: started, 8.0 GiB
vm1 vdb: started, 1.0 GiB
vm1 vda  333.8 MiB / 8.0 GiB  350 MB/s  ETA 0:24
vm1 vdb  0 B / 1.0 GiB  -- B/s  ETA --:--`
	if sc.String() != want {
		t.Fatalf("screen:\n%s\nwant:\n%s", sc, want)
	}
	buf.Reset()
	s.Flush() // draws the held-back progress of vdb
	sc.feed(t, buf.String())
	if !strings.HasSuffix(sc.String(), "vm1 vdb  512.0 MiB / 1.0 GiB  537 MB/s  ETA 0:01") {
		t.Fatalf("after Flush:\n%s", sc)
	}
	buf.Reset()
	s.Flush() // nothing pending: writes nothing
	if buf.Len() != 0 {
		t.Fatalf("idle Flush wrote %q", buf.String())
	}
	clk.advance(time.Second)
	emit(7) // a retry line scrolls above the live block, which is redrawn
	want = `job j1 started (backup of 2 vms)
vm1: started
vm2: started
vm1 vda: started, 8.0 GiB
vm1 vdb: started, 1.0 GiB
vm2: retrying after error: guest agent not responding (attempt 2 of 3)
vm1 vda  333.8 MiB / 8.0 GiB  350 MB/s  ETA 0:24
vm1 vdb  512.0 MiB / 1.0 GiB  537 MB/s  ETA 0:01`
	if sc.String() != want {
		t.Fatalf("screen:\n%s\nwant:\n%s", sc, want)
	}
	for i := 8; i < len(ev); i++ {
		clk.advance(time.Second)
		emit(i)
	}
	want = `job j1 started (backup of 2 vms)
vm1: started
vm2: started
vm1 vda: started, 8.0 GiB
vm1 vdb: started, 1.0 GiB
vm2: retrying after error: guest agent not responding (attempt 2 of 3)
vm1 vdb: done, 1.0 GiB in 0:02 (537 MB/s)
vm1: filesystems thawed
vm1 vda: done, 8.0 GiB in 0:25 (344 MB/s)
vm1: done after 0:26
vm2: FAILED after 0:30: guest agent not responding
job j1 done in 0:31: 1 of 2 vms failed`
	if sc.String() != want {
		t.Fatalf("final screen:\n%s\nwant:\n%s", sc, want)
	}
}

func TestTerminalLiveThrottleAndWidth(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: t0}
	s := NewTerminal(&buf, TerminalOptions{Mode: Live, Width: 30, Now: clk.now})
	s.Emit(Event{Time: t0, Kind: DiskStart, VM: "a-very-long-vm-name", Disk: "vda", Total: 1 << 40})
	writes := 0
	for i := range 1000 { // 1000 progress events over 1 s of clock time
		clk.advance(time.Millisecond)
		n := buf.Len()
		s.Emit(Event{Time: clk.t, Kind: DiskProgress, VM: "a-very-long-vm-name", Disk: "vda",
			Done: int64(i+1) << 20, Total: 1 << 40, Rate: 1e9, ETA: time.Hour})
		if buf.Len() != n {
			writes++
		}
	}
	if writes < 9 || writes > 11 {
		t.Errorf("%d redraws for 1000 events in 1 s, want about 10", writes)
	}
	sc := &screen{}
	sc.feed(t, buf.String())
	if len(sc.lines) != 2 {
		t.Fatalf("screen %q, want a log line and a live line", sc.lines)
	}
	// Log lines may wrap; the live line must not, or redraws would drift.
	if l := sc.lines[1]; len([]rune(l)) != 29 || !strings.HasPrefix(l, "a-very-long-vm-name vda  1000") {
		t.Errorf("live line %q, want it cut to 29 columns", l)
	}
	for _, l := range sc.lines[1:] {
		if len([]rune(l)) > 29 {
			t.Errorf("line wider than the terminal: %q", l)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTerminalConcurrentEmits(t *testing.T) {
	var buf bytes.Buffer
	s := NewTerminal(&buf, TerminalOptions{Mode: Plain})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			vm := fmt.Sprintf("vm%d", g)
			s.Emit(Event{Kind: DiskStart, VM: vm, Disk: "vda", Total: 100})
			for i := range 100 {
				s.Emit(Event{Kind: DiskProgress, VM: vm, Disk: "vda", Done: int64(i), Total: 100})
			}
			s.Emit(Event{Kind: DiskDone, VM: vm, Disk: "vda", Done: 100, Total: 100})
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 16 {
		t.Fatalf("%d lines, want 16:\n%s", len(lines), buf.String())
	}
	re := regexp.MustCompile(`^vm\d vda: (started, 100 B|done, 100 B in 0:00.*)$`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("garbled line %q", l)
		}
	}
	if len(s.disks) != 0 {
		t.Errorf("%d disks left in state", len(s.disks))
	}
}
