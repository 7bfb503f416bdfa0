package schedule

import (
	"strings"
	"testing"
	"time"
)

// FuzzSpec feeds arbitrary cron expressions to the parser.
// Nothing may panic; a spec that compiles fires strictly later each time,
// and every cron firing in UTC is a matching minute.
func FuzzSpec(f *testing.F) {
	for _, s := range []string{"30 2 * * *", "*/15 9-17 * * mon-fri", "0 0 1,15 * sun", "@daily", "@every 1h",
		"0 0 29 2 *", "5/20 * * * *", "0-59/61 * * * *", "1-2,3-4/2 1 1 jan-dec/3 7", "* * * * * *", "0 0 L * *",
		"1 2 3 4 5 6", "*/5,7-9 1-23/2 ? * *"} {
		f.Add(s, uint8(0))
	}
	f.Add("0 2 * * *", uint8(2))
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Havana"}
	f.Fuzz(func(t *testing.T, expr string, zi uint8) {
		zone := zones[int(zi)%len(zones)]
		sc, err := Spec{Cron: expr, Timezone: zone}.Compile()
		if err != nil {
			if !strings.Contains(err.Error(), "cron") && !strings.Contains(err.Error(), "timezone") {
				t.Fatalf("error does not name the field: %v", err)
			}
			return
		}
		utc, err := Spec{Cron: expr, Timezone: "UTC"}.Compile()
		if err != nil {
			t.Fatalf("valid in %s but not in UTC: %v", zone, err)
		}
		t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for _, s := range []*Schedule{sc, utc} {
			prev := t0
			for range 20 {
				next := s.Next(prev)
				if next.IsZero() {
					t.Fatalf("%q in %s: compiled but never fires after %v", expr, s.loc, prev)
				}
				if !next.After(prev) {
					t.Fatalf("%q in %s: %v is not after %v", expr, s.loc, next, prev)
				}
				prev = next
			}
		}
		c := utc.cron
		for t1, i := t0, 0; i < 20; i++ {
			t1 = utc.Next(t1)
			u := t1.UTC()
			if u.Second() != 0 || c.minute&(1<<uint(u.Minute())) == 0 || c.hour&(1<<uint(u.Hour())) == 0 ||
				c.month&(1<<uint(u.Month())) == 0 || !c.dayMatches(u) {
				t.Fatalf("%q fires at %v, which does not match", expr, u)
			}
		}
	})
}
