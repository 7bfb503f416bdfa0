package progress

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
)

// Mode selects how a Terminal sink draws.
type Mode int

const (
	// Auto draws live lines when the writer is a terminal, plain lines
	// otherwise.
	Auto Mode = iota
	// Live always draws live lines with ANSI cursor movement.
	Live
	// Plain prints only start, done, failure and message lines.
	Plain
)

// TerminalOptions configures NewTerminal. The zero value is usable.
type TerminalOptions struct {
	Mode     Mode
	Width    int              // columns; 0 = the terminal's width, or 100
	Interval time.Duration    // minimum time between redraws; 0 = 100ms
	Now      func() time.Time // clock for redraw throttling; nil = time.Now
}

// Terminal is a human-readable sink. In live mode it keeps one line per
// disk being transferred ("vm1 vda  1.2 GiB / 8.0 GiB  350 MB/s  ETA 0:19")
// at the bottom of the output, redrawn in place, with start, done and
// failure lines scrolling above it. In plain mode (not a terminal) it
// prints only those start, done and failure lines, so logs stay readable.
type Terminal struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	width    int
	interval time.Duration
	now      func() time.Time

	disks    map[diskKey]*diskState
	seq      int
	vmStart  map[string]time.Time
	jobStart map[string]time.Time
	drawn    int // live lines currently on screen
	lastDraw time.Time
	dirty    bool
}

type diskKey struct{ job, vm, disk string }

type diskState struct {
	order        int
	vm, disk     string
	start        time.Time
	done, total  int64
	rate         *Rate
	evRate       float64
	evETA        time.Duration
	lastProgress time.Time
}

// NewTerminal returns a terminal sink writing to w.
func NewTerminal(w io.Writer, opts TerminalOptions) *Terminal {
	t := &Terminal{w: w, width: opts.Width, interval: opts.Interval, now: opts.Now,
		disks: map[diskKey]*diskState{}, vmStart: map[string]time.Time{}, jobStart: map[string]time.Time{}}
	if t.interval <= 0 {
		t.interval = 100 * time.Millisecond
	}
	if t.now == nil {
		t.now = time.Now
	}
	f, isFile := w.(*os.File)
	isTTY := isFile && term.IsTerminal(int(f.Fd()))
	switch opts.Mode {
	case Live:
		t.live = true
	case Auto:
		t.live = isTTY
	}
	if t.width <= 0 && isTTY {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			t.width = cols
		}
	}
	if t.width <= 0 {
		t.width = 100
	}
	return t
}

// Emit records e and prints what it calls for.
func (t *Terminal) Emit(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = t.now()
	}
	line := t.apply(e)
	if !t.live {
		if line != "" {
			_, _ = io.WriteString(t.w, line+"\n")
		}
		return
	}
	if line == "" && e.Kind == DiskProgress && t.now().Sub(t.lastDraw) < t.interval {
		t.dirty = true
		return
	}
	t.redraw(line)
}

// Flush draws progress that throttling held back. A caller may run it from
// a ticker so the display stays fresh when events pause.
func (t *Terminal) Flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live && t.dirty {
		t.redraw("")
	}
}

// Close erases the live lines, if any, leaving the printed log lines.
func (t *Terminal) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.live || t.drawn == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", t.drawn)
	t.drawn = 0
	_, err := io.WriteString(t.w, b.String())
	return err
}

// apply updates the state for e and returns the log line it produces, if
// any.
func (t *Terminal) apply(e Event) string {
	k := diskKey{e.Job, e.VM, e.Disk}
	switch e.Kind {
	case JobStart:
		t.jobStart[e.Job] = e.Time
		return withMsg("job "+e.Job+" started", e.Msg)
	case VMStart:
		t.vmStart[e.VM] = e.Time
		return withMsg(e.VM+": started", e.Msg)
	case VMRetry:
		return withMsg(e.VM+": retrying after error: "+e.Err, e.Msg)
	case VMDone, VMFailed:
		t.dropVM(e.Job, e.VM)
		s := e.VM + ": done"
		if e.Kind == VMFailed {
			s = e.VM + ": FAILED"
		}
		if st, ok := t.vmStart[e.VM]; ok {
			s += " after " + FormatDuration(e.Time.Sub(st))
			delete(t.vmStart, e.VM)
		}
		if e.Err != "" {
			s += ": " + e.Err
		}
		return withMsg(s, e.Msg)
	case DiskStart:
		t.seq++
		d := &diskState{order: t.seq, vm: e.VM, disk: e.Disk, start: e.Time, total: e.Total,
			rate: NewRate(0, nil)}
		d.rate.UpdateAt(e.Time, e.Done)
		d.done = e.Done
		t.disks[k] = d
		return withMsg(fmt.Sprintf("%s %s: started, %s", e.VM, e.Disk, FormatBytes(e.Total)), e.Msg)
	case DiskProgress:
		d := t.disks[k]
		if d == nil {
			// Progress without a start (e.g. a sink attached late).
			t.seq++
			d = &diskState{order: t.seq, vm: e.VM, disk: e.Disk, start: e.Time, rate: NewRate(0, nil)}
			t.disks[k] = d
		}
		d.done = e.Done
		if e.Total > 0 {
			d.total = e.Total
		}
		d.rate.UpdateAt(e.Time, e.Done)
		d.evRate, d.evETA, d.lastProgress = e.Rate, e.ETA, e.Time
		return ""
	case DiskDone:
		d := t.disks[k]
		delete(t.disks, k)
		done := e.Done
		if done == 0 && d != nil {
			done = d.done
		}
		s := fmt.Sprintf("%s %s: done, %s", e.VM, e.Disk, FormatBytes(done))
		if d != nil {
			el := e.Time.Sub(d.start)
			s += " in " + FormatDuration(el)
			if el > 0 {
				s += " (" + FormatRate(float64(done)/el.Seconds()) + ")"
			}
		}
		if e.Err != "" {
			s += ": " + e.Err
		}
		return withMsg(s, e.Msg)
	case JobDone:
		for k := range t.disks {
			if k.job == e.Job {
				delete(t.disks, k)
			}
		}
		s := "job " + e.Job + " done"
		if st, ok := t.jobStart[e.Job]; ok {
			s += " in " + FormatDuration(e.Time.Sub(st))
			delete(t.jobStart, e.Job)
		}
		if e.Err != "" {
			s += ": " + e.Err
		}
		return withMsg(s, e.Msg)
	case Message:
		s := e.Msg
		if e.VM != "" {
			s = e.VM + ": " + s
		}
		if e.Err != "" {
			s += ": " + e.Err
		}
		return s
	}
	return ""
}

func withMsg(s, msg string) string {
	if msg == "" {
		return s
	}
	return s + " (" + msg + ")"
}

func (t *Terminal) dropVM(job, vm string) {
	for k := range t.disks {
		if k.job == job && k.vm == vm {
			delete(t.disks, k)
		}
	}
}

// redraw moves the cursor to the top of the live block, prints the log
// line (if any) over it, then the live block again. Every line is written
// over the previous content and cleared to its end, so nothing flickers.
func (t *Terminal) redraw(logLine string) {
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", t.drawn)
	}
	if logLine != "" {
		b.WriteString("\r" + logLine + "\x1b[K\n")
	}
	lines := t.liveLines()
	for _, l := range lines {
		b.WriteString("\r" + l + "\x1b[K\n")
	}
	b.WriteString("\x1b[J") // erase lines left over from a longer block
	t.drawn = len(lines)
	t.lastDraw = t.now()
	t.dirty = false
	_, _ = io.WriteString(t.w, b.String())
}

// liveLines renders one line per active disk, in start order, with
// aligned columns, each cut to the terminal width.
func (t *Terminal) liveLines() []string {
	ds := make([]*diskState, 0, len(t.disks))
	for _, d := range t.disks {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].order < ds[j].order })
	vmW, diskW := 0, 0
	for _, d := range ds {
		vmW = max(vmW, utf8.RuneCountInString(d.vm))
		diskW = max(diskW, utf8.RuneCountInString(d.disk))
	}
	lines := make([]string, 0, len(ds))
	for _, d := range ds {
		lines = append(lines, truncate(formatDiskLine(d, vmW, diskW), t.width-1))
	}
	return lines
}

func formatDiskLine(d *diskState, vmW, diskW int) string {
	rate := d.evRate
	if rate <= 0 {
		rate = d.rate.Rate()
	}
	eta, ok := d.evETA, d.evETA > 0
	if !ok {
		eta, ok = d.rate.ETA(d.total)
	}
	etaS := "--:--"
	if ok {
		etaS = FormatDuration(eta)
	}
	rateS := "-- B/s"
	if rate > 0 {
		rateS = FormatRate(rate)
	}
	return fmt.Sprintf("%-*s %-*s  %s / %s  %s  ETA %s", vmW, d.vm, diskW, d.disk,
		FormatBytes(d.done), FormatBytes(d.total), rateS, etaS)
}

func truncate(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width])
}
