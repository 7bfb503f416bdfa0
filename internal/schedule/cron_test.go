package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// at parses "2006-01-02 15:04" in loc.
func at(t testing.TB, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func compile(t testing.TB, s Spec) *Schedule {
	t.Helper()
	sc, err := s.Compile()
	if err != nil {
		t.Fatalf("compile %+v: %v", s, err)
	}
	return sc
}

// fires lists n firing times after start, formatted in the schedule's zone.
func fires(sc *Schedule, start time.Time, n int) string {
	var out []string
	t := start
	for range n {
		t = sc.Next(t)
		if t.IsZero() {
			out = append(out, "never")
			break
		}
		out = append(out, t.Format("2006-01-02 15:04 MST"))
	}
	return strings.Join(out, ", ")
}

func TestCronNext(t *testing.T) {
	cases := []struct {
		cron, from string
		n          int
		want       string
	}{
		{"30 2 * * *", "2026-11-20 02:30", 2, "2026-11-21 02:30 UTC, 2026-11-22 02:30 UTC"},
		{"*/15 9-10 * * *", "2026-11-20 10:40", 3, "2026-11-20 10:45 UTC, 2026-11-21 09:00 UTC, 2026-11-21 09:15 UTC"},
		{"0 0 1,15 * *", "2026-11-15 00:00", 2, "2026-12-01 00:00 UTC, 2026-12-15 00:00 UTC"},
		{"0 22 * * mon-fri", "2026-11-20 22:00", 2, "2026-11-23 22:00 UTC, 2026-11-24 22:00 UTC"}, // Fri → Mon
		{"0 0 * * 7", "2026-11-20 00:00", 1, "2026-11-22 00:00 UTC"},                              // 7 is Sunday
		{"0 0 * * 5-7", "2026-11-21 12:00", 2, "2026-11-22 00:00 UTC, 2026-11-27 00:00 UTC"},
		{"0 12 * JAN,jul SUN", "2026-11-20 00:00", 2, "2027-01-03 12:00 UTC, 2027-01-10 12:00 UTC"},
		// Both day fields restricted: either matches (Vixie cron).
		{"0 0 13 * fri", "2026-11-01 00:00", 4, "2026-11-06 00:00 UTC, 2026-11-13 00:00 UTC, 2026-11-20 00:00 UTC, 2026-11-27 00:00 UTC"},
		{"0 0 1 * mon", "2026-11-24 00:00", 3, "2026-11-30 00:00 UTC, 2026-12-01 00:00 UTC, 2026-12-07 00:00 UTC"},
		// A "*"-led day field leaves the other alone (AND).
		{"0 0 */10 * mon", "2026-11-01 00:00", 2, "2026-12-21 00:00 UTC, 2027-01-11 00:00 UTC"},
		{"0 0 29 2 *", "2026-01-01 00:00", 2, "2028-02-29 00:00 UTC, 2032-02-29 00:00 UTC"},
		{"0 0 29 2 *", "2097-01-01 00:00", 1, "2104-02-29 00:00 UTC"}, // 2100 is not a leap year
		{"0 0 31 * *", "2026-04-01 00:00", 2, "2026-05-31 00:00 UTC, 2026-07-31 00:00 UTC"},
		{"5/20 * * * *", "2026-11-20 10:00", 4, "2026-11-20 10:05 UTC, 2026-11-20 10:25 UTC, 2026-11-20 10:45 UTC, 2026-11-20 11:05 UTC"},
		{"59 23 31 12 *", "2026-12-31 23:59", 1, "2027-12-31 23:59 UTC"},
		{"@hourly", "2026-11-20 10:00", 2, "2026-11-20 11:00 UTC, 2026-11-20 12:00 UTC"},
		{"@daily", "2026-11-20 10:00", 1, "2026-11-21 00:00 UTC"},
		{"@weekly", "2026-11-20 10:00", 1, "2026-11-22 00:00 UTC"},
		{"@monthly", "2026-11-20 10:00", 1, "2026-12-01 00:00 UTC"},
		{"@YEARLY", "2026-11-20 10:00", 1, "2027-01-01 00:00 UTC"},
		{"  0   3 * * *  ", "2026-11-20 10:00", 1, "2026-11-21 03:00 UTC"},
	}
	for _, c := range cases {
		sc := compile(t, Spec{Cron: c.cron, Timezone: "UTC"})
		if got := fires(sc, at(t, time.UTC, c.from), c.n); got != c.want {
			t.Errorf("%q from %s:\n got  %s\n want %s", c.cron, c.from, got, c.want)
		}
	}
}

// TestNextSecondsAndZones: times inside a minute and in another zone.
func TestNextSecondsAndZones(t *testing.T) {
	sc := compile(t, Spec{Cron: "30 2 * * *", Timezone: "Asia/Tokyo"})
	after := time.Date(2026, 11, 19, 17, 29, 59, 999, time.UTC) // 02:29:59 in Tokyo
	if got, want := sc.Next(after), time.Date(2026, 11, 19, 17, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("next %v, want %v", got, want)
	}
	if got := sc.Next(time.Date(2026, 11, 19, 17, 30, 0, 1, time.UTC)); !got.Equal(time.Date(2026, 11, 20, 17, 30, 0, 0, time.UTC)) {
		t.Fatalf("next after a firing: %v", got)
	}
	if sc.Next(after).Location().String() != "Asia/Tokyo" {
		t.Fatal("Next is not in the schedule's zone")
	}
}

func TestEvery(t *testing.T) {
	ber := mustLoc(t, "Europe/Berlin")
	sc := compile(t, Spec{Every: 4 * time.Hour, Timezone: "Europe/Berlin"})
	// Anchored to the epoch: 00, 04, 08 ... UTC; across the DST change the
	// interval stays 4 hours of elapsed time.
	if got, want := fires(sc, at(t, ber, "2026-03-29 00:00"), 3), "2026-03-29 01:00 CET, 2026-03-29 06:00 CEST, 2026-03-29 10:00 CEST"; got != want {
		t.Errorf("every 4h: %s, want %s", got, want)
	}
	week := compile(t, Spec{Every: 7 * 24 * time.Hour})
	// 1970-01-01 was a Thursday.
	if got := week.Next(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)).UTC(); got != time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC) {
		t.Errorf("every 1w: %v", got)
	}
	day := compile(t, Spec{Every: 24 * time.Hour})
	if got := day.Next(time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC)).UTC(); got != time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) {
		t.Errorf("before the epoch: %v", got)
	}
	exact := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	if got := sc.Next(exact).UTC(); got != exact.Add(4*time.Hour) {
		t.Errorf("strictly after: %v", got)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		spec  Spec
		field string
		want  string
	}{
		{Spec{}, "cron", "needs cron or every"},
		{Spec{Cron: "@daily", Every: time.Hour}, "every", "not both"},
		{Spec{Cron: "0 25 * * *"}, "cron", `field 2 (hour) "25": 25 is out of range 0-23`},
		{Spec{Cron: "0 0 0 * *"}, "cron", "field 3 (day of month) \"0\": 0 is out of range 1-31"},
		{Spec{Cron: "0 0 * 13 *"}, "cron", "out of range 1-12"},
		{Spec{Cron: "0 0 * * 8"}, "cron", "out of range 0-7"},
		{Spec{Cron: "0 0 * * * *"}, "cron", "6 fields, want 5"},
		{Spec{Cron: "0 0 *"}, "cron", "3 fields, want 5"},
		{Spec{Cron: "*/0 * * * *"}, "cron", `step "0" is not a positive number`},
		{Spec{Cron: "*/61 * * * *"}, "cron", "step 61 is larger than the range 0-59"},
		{Spec{Cron: "5-1 * * * *"}, "cron", "range 5-1 is backwards"},
		{Spec{Cron: "1,,2 * * * *"}, "cron", "empty list item"},
		{Spec{Cron: "0 0 * * mon-fry"}, "cron", `"fry" is not a number or a name (sun..sat)`},
		{Spec{Cron: "0 0 * * +1"}, "cron", `"+1" is not a number`},
		{Spec{Cron: "0 0 30 feb *"}, "cron", "never matches a date"},
		{Spec{Cron: "@every 1h"}, "cron", "write the interval as every"},
		{Spec{Cron: "@reboot"}, "cron", "unknown macro"},
		{Spec{Cron: "TZ=UTC 0 0 * * *"}, "cron", "6 fields"},
		{Spec{Cron: "0 0 ? * *"}, "cron", `"?" is not a number`},
		{Spec{Every: 30 * time.Second}, "every", `"30s": shorter than 1m0s`},
		{Spec{Every: -time.Hour}, "every", "shorter than"},
		{Spec{Cron: "@daily", Timezone: "Europe/Berln"}, "timezone", "unknown time zone"},
		{Spec{Cron: "@daily", Window: -time.Minute}, "window", "negative"},
		{Spec{Cron: "@daily", CatchUp: "always"}, "catch_up", "use once or skip"},
	}
	for _, c := range cases {
		err := c.spec.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: error %v is not a FieldError wrapping ErrInvalid", c.spec, err)
			continue
		}
		if fe.Field != c.field || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %q (field %s), want field %s and %q", c.spec, err, fe.Field, c.field, c.want)
		}
	}
	if (Spec{Cron: "@daily"}).Next(time.Now()).IsZero() || !(Spec{Cron: "bad"}).Next(time.Now()).IsZero() {
		t.Error("Spec.Next")
	}
}

// TestNextMatchesBruteForce compares Next in UTC with a minute-by-minute
// search over two days, for expressions of every shape.
func TestNextMatchesBruteForce(t *testing.T) {
	exprs := []string{"* * * * *", "*/7 */5 * * *", "0 0 1,15 * mon", "30 23 * * sat,sun", "0-10/3 4 2-9/3 */2 *",
		"15 14 1 * *", "0 22 * * 1-5", "1 0 * 3 3", "59 * 31 * *", "0 12 29 2 *"}
	start := time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)
	for _, e := range exprs {
		sc := compile(t, Spec{Cron: e, Timezone: "UTC"})
		c := sc.cron
		for i := 0; i < 200; i++ {
			from := start.Add(time.Duration(i*i*517) * time.Minute)
			got := sc.Next(from)
			var want time.Time
			for m := from.Truncate(time.Minute).Add(time.Minute); m.Before(from.Add(48 * time.Hour)); m = m.Add(time.Minute) {
				if c.month&(1<<uint(m.Month())) != 0 && c.dayMatches(m) && c.hour&(1<<uint(m.Hour())) != 0 && c.minute&(1<<uint(m.Minute())) != 0 {
					want = m
					break
				}
			}
			if !want.IsZero() && !got.Equal(want) || want.IsZero() && got.Before(from.Add(48*time.Hour)) {
				t.Fatalf("%q after %v: %v, brute force %v", e, from, got, want)
			}
		}
	}
}
