package schedule

import (
	"strings"
	"testing"
	"time"
)

// Europe/Berlin 2026: 02:00 CET → 03:00 CEST on Sun 29 March (02:00-02:59
// does not exist); 03:00 CEST → 02:00 CET on Sun 25 October (02:00-02:59
// happens twice). America/New_York 2026: 02:00 EST → 03:00 EDT on Sun 8
// March; 02:00 EDT → 01:00 EST on Sun 1 November (01:00-01:59 twice).
func TestCronDST(t *testing.T) {
	cases := []struct {
		zone, cron, from string
		n                int
		want             string
	}{
		// A skipped time fires once, at the end of the gap.
		{"Europe/Berlin", "30 2 * * *", "2026-03-28 00:00", 3, "2026-03-28 02:30 CET, 2026-03-29 03:00 CEST, 2026-03-30 02:30 CEST"},
		{"Europe/Berlin", "0 2 * * *", "2026-03-28 12:00", 2, "2026-03-29 03:00 CEST, 2026-03-30 02:00 CEST"},
		// Several skipped times and the gap's end itself: one firing.
		{"Europe/Berlin", "*/30 * * * *", "2026-03-29 01:00", 3, "2026-03-29 01:30 CET, 2026-03-29 03:00 CEST, 2026-03-29 03:30 CEST"},
		{"America/New_York", "*/10 2 * * *", "2026-03-07 23:00", 3, "2026-03-08 03:00 EDT, 2026-03-09 02:00 EDT, 2026-03-09 02:10 EDT"},
		{"America/New_York", "0 2 * * *", "2026-03-07 12:00", 2, "2026-03-08 03:00 EDT, 2026-03-09 02:00 EDT"},
		{"America/New_York", "15 2 8 3 *", "2026-01-01 00:00", 2, "2026-03-08 03:00 EDT, 2027-03-08 02:15 EST"},
		// A repeated time fires once, at its first occurrence.
		{"Europe/Berlin", "30 2 * * *", "2026-10-24 00:00", 3, "2026-10-24 02:30 CEST, 2026-10-25 02:30 CEST, 2026-10-26 02:30 CET"},
		{"Europe/Berlin", "*/30 * * * *", "2026-10-25 01:50", 4, "2026-10-25 02:00 CEST, 2026-10-25 02:30 CEST, 2026-10-25 03:00 CET, 2026-10-25 03:30 CET"},
		{"Europe/Berlin", "@hourly", "2026-10-25 01:30", 3, "2026-10-25 02:00 CEST, 2026-10-25 03:00 CET, 2026-10-25 04:00 CET"},
		{"Europe/Berlin", "0 3 * * *", "2026-10-24 12:00", 2, "2026-10-25 03:00 CET, 2026-10-26 03:00 CET"},
		{"America/New_York", "30 1 * * *", "2026-10-31 12:00", 2, "2026-11-01 01:30 EDT, 2026-11-02 01:30 EST"},
		{"America/New_York", "0 * * * *", "2026-11-01 00:30", 3, "2026-11-01 01:00 EDT, 2026-11-01 02:00 EST, 2026-11-01 03:00 EST"},
		{"America/New_York", "@daily", "2026-10-31 12:00", 2, "2026-11-01 00:00 EDT, 2026-11-02 00:00 EST"},
	}
	for _, c := range cases {
		loc := mustLoc(t, c.zone)
		sc := compile(t, Spec{Cron: c.cron, Timezone: c.zone})
		if got := fires(sc, at(t, loc, c.from), c.n); got != c.want {
			t.Errorf("%s %q from %s:\n got  %s\n want %s", c.zone, c.cron, c.from, got, c.want)
		}
	}
}

// TestCronDSTSecondPass: asked during the second pass of a repeated hour,
// the times of that hour already fired in the first pass.
func TestCronDSTSecondPass(t *testing.T) {
	ber := mustLoc(t, "Europe/Berlin")
	sc := compile(t, Spec{Cron: "30 2 * * *", Timezone: "Europe/Berlin"})
	secondPass := time.Date(2026, 10, 25, 1, 10, 0, 0, time.UTC) // 02:10 CET
	if got, want := sc.Next(secondPass), time.Date(2026, 10, 26, 2, 30, 0, 0, ber); !got.Equal(want) {
		t.Fatalf("next %v, want %v", got, want)
	}
	ny := compile(t, Spec{Cron: "*/20 * * * *", Timezone: "America/New_York"})
	from := time.Date(2026, 11, 1, 6, 5, 0, 0, time.UTC) // 01:05 EST, second pass
	if got, want := ny.Next(from), time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("next %v, want 02:00 EST", got.In(ny.Location()))
	}
}

// TestCronHalfHourDST: Lord Howe Island moves its clocks by 30 minutes;
// on Sun 5 April 2026 01:30-01:59 happens twice (+11, then +10:30).
func TestCronHalfHourDST(t *testing.T) {
	sc := compile(t, Spec{Cron: "*/15 * * * *", Timezone: "Australia/Lord_Howe"})
	var got []string
	for t0, i := time.Date(2026, 4, 4, 14, 20, 0, 0, time.UTC), 0; i < 4; i++ {
		t0 = sc.Next(t0)
		got = append(got, t0.UTC().Format("15:04"))
	}
	// 01:30 and 01:45 (+11) fire; their repeats (15:00Z, 15:15Z) do not.
	if want := "14:30 14:45 15:30 15:45"; strings.Join(got, " ") != want {
		t.Fatalf("fires %s, want %s", strings.Join(got, " "), want)
	}
}

// TestCronDSTYearInvariants walks a year of several schedules in several
// zones: times strictly increase, each wall time fires at most once, and
// every firing is a matching wall time or the end of a DST gap.
func TestCronDSTYearInvariants(t *testing.T) {
	for _, zone := range []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Havana", "UTC"} {
		for _, expr := range []string{"*/15 * * * *", "30 1,2 * * *", "0 0 * * *", "45 0-3 * * sun"} {
			sc := compile(t, Spec{Cron: expr, Timezone: zone})
			seen := map[string]bool{}
			prev := time.Date(2026, 1, 1, 0, 0, 0, 0, sc.Location())
			for prev.Year() == 2026 {
				next := sc.Next(prev)
				if !next.After(prev) {
					t.Fatalf("%s %q: %v after %v", zone, expr, next, prev)
				}
				wall := next.Format("2006-01-02 15:04")
				if seen[wall] {
					t.Fatalf("%s %q: wall time %s fired twice", zone, expr, wall)
				}
				seen[wall] = true
				c := sc.cron
				civil := time.Date(next.Year(), next.Month(), next.Day(), next.Hour(), next.Minute(), 0, 0, time.UTC)
				matches := c.month&(1<<uint(civil.Month())) != 0 && c.dayMatches(civil) &&
					c.hour&(1<<uint(civil.Hour())) != 0 && c.minute&(1<<uint(civil.Minute())) != 0
				start, _ := next.ZoneBounds()
				if !matches && !start.Equal(next) {
					t.Fatalf("%s %q: %v neither matches nor ends a gap", zone, expr, next)
				}
				prev = next
			}
		}
	}
}
