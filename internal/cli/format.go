package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/storage"
)

func fmtBytes(n int64) string { return progress.FormatBytes(n) }

// parseSize parses "4MiB", "512k", "1G", "4194304".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 4MiB, 512k, 1G)", s)
	}
	return int64(n * float64(mult)), nil
}

// isUsage recognises cobra's usage errors.
func isUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// explain adds what to do next to well-known errors.
func explain(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		return msg + " (interrupted: nothing half-written is visible; the next run continues from the last recovery point; kura cleanup removes leftovers)"
	case errors.Is(err, storage.ErrNoSpace):
		return msg + " (the repository's disk is full: nothing was committed; free space, or kura prune then kura gc)"
	case errors.Is(err, lock.ErrLocked):
		return msg + " (wait for it to finish; if that process is dead, kura locks --remove-stale)"
	case errors.Is(err, hypervisor.ErrNoAgent):
		return msg + " (install and start qemu-guest-agent in the guest, or use --consistency auto or crash)"
	case errors.Is(err, hypervisor.ErrVMNotFound):
		return msg + " (see kura vm list)"
	}
	return msg
}

// interactive reports whether stdin is a terminal.
func (a *App) interactive() bool {
	f, ok := a.stdin.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
