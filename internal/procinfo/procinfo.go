// Package procinfo identifies processes across restarts: a pid together
// with the process start time names one process, so that a recycled pid
// is not mistaken for a dead owner still alive. Connectors record it with
// what a backup session leaves on a VM; the next run tells a killed
// session from a live one by it. PeakRSS reports the process's own peak
// memory.
package procinfo

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Start returns the start time of a live, non-zombie process in clock
// ticks since boot (field 22 of /proc/<pid>/stat), or 0 when there is no
// such process.
func Start(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Alive says whether the process pid started at start (0: any start) runs
// on this host.
func Alive(pid int, start uint64) bool {
	s := Start(pid)
	return s != 0 && (start == 0 || s == start)
}

// Self is the start time of this process.
func Self() uint64 { return Start(os.Getpid()) }

// PeakRSS returns this process's peak resident set size in bytes (VmHWM
// of /proc/self/status), 0 when unknown.
func PeakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
