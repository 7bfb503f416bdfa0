package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/retention"
)

func TestPolicySimulate(t *testing.T) {
	args := []string{"policy", "simulate", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12",
		"--keep-quarterly", "8", "--keep-yearly", "99", "--every", "1d", "--span", "400d", "--end", "2026-12-31T02:00:00Z"}
	code, out, errs := run(t, nil, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"policy   daily 7, weekly 4, monthly 12, quarterly 8, yearly 99",
		"backups  400, 2025-11-27 02:00 .. 2026-12-31 02:00 UTC",
		"kept     21, the oldest from 2025-12-31 02:00 UTC (365 days before the end)",
		"  quarterly  5\n",
		"  2026-12-31 02:00  daily 2026-12-31, weekly 2026-W53, monthly 2026-12, quarterly 2026-Q4, yearly 2026\n",
		"  2025-12-31 02:00  quarterly 2025-Q4, yearly 2025\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = run(t, nil, append(args, "--json")...)
	var sim retention.Simulation
	if code != 0 || json.Unmarshal([]byte(out), &sim) != nil {
		t.Fatalf("--json: exit %d, %s %s", code, out, errs)
	}
	if sim.Kept != 21 || len(sim.Points) != 400 || sim.PerRule["monthly"] != 12 || !sim.To.Equal(time.Date(2026, 12, 31, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("json: kept %d of %d, rules %v", sim.Kept, len(sim.Points), sim.PerRule)
	}
}

func TestPolicySimulateCron(t *testing.T) {
	// Weekday backups at 01:30 in New York for four weeks, keep the last 5.
	code, out, errs := run(t, nil, "policy", "simulate", "--keep-last", "5", "--cron", "30 1 * * mon-fri",
		"--timezone", "America/New_York", "--span", "4w", "--end", "2026-11-27T12:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Fri Nov 27 01:30 EST is 06:30 UTC; the fifth newest is Mon Nov 23.
	for _, want := range []string{"backups  20, 2026-11-02 06:30 .. 2026-11-27 06:30 UTC", "kept     5, the oldest from 2026-11-23 06:30 UTC"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPolicySimulateBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "no retention policy"},
		{[]string{"--keep-daily", "7", "--every", "0"}, "give a positive duration"},
		{[]string{"--keep-daily", "7", "--span", "long"}, `--span "long": give a positive duration`},
		{[]string{"--keep-daily", "7", "--every", "1m", "--span", "1y"}, `--span "1y"`},
		{[]string{"--keep-daily", "7", "--every", "1m", "--span", "1000d"}, "more than 200000 hypothetical backups"},
		{[]string{"--keep-daily", "7", "--cron", "0 2 * * *", "--every", "1h"}, "not both"},
		{[]string{"--keep-daily", "7", "--cron", "0 26 * * *"}, `field 2 (hour) "26": 26 is out of range 0-23`},
		{[]string{"--keep-daily", "7", "--end", "tomorrow"}, `--end "tomorrow"`},
	}
	for _, c := range cases {
		code, _, errs := run(t, nil, append([]string{"policy", "simulate"}, c.args...)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}
