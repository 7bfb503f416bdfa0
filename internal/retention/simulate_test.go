package retention

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestQuarterly(t *testing.T) {
	its := items("vm", "2026-09-30T12:00:00Z", "2026-06-30T23:59:59Z", "2026-04-01T00:00:00Z",
		"2026-03-31T23:59:59Z", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z")
	want := []string{
		"vm@2026-09-30T12:00:00Z: quarterly 2026-Q3",
		"vm@2026-06-30T23:59:59Z: quarterly 2026-Q2",
		"vm@2026-03-31T23:59:59Z: quarterly 2026-Q1",
	}
	if got := kept(Apply(its, Policy{Quarterly: 3})); !slices.Equal(got, want) {
		t.Fatalf("kept %q, want %q", got, want)
	}
	if (Policy{Quarterly: 1}).Empty() {
		t.Fatal("a quarterly policy is not empty")
	}
	if s := (Policy{Monthly: 12, Quarterly: 8, Yearly: 99}).String(); s != "monthly 12, quarterly 8, yearly 99" {
		t.Fatalf("String %q", s)
	}
}

// TestSimulateGFS: 400 daily backups at 02:00 UTC ending Thu 2026-12-31
// (ISO week 2026-W53), under a grandfather-father-son policy.
func TestSimulateGFS(t *testing.T) {
	to := ts("2026-12-31T02:00:00Z")
	from := to.Add(-400 * 24 * time.Hour)
	p := Policy{Daily: 7, Weekly: 4, Monthly: 12, Quarterly: 8, Yearly: 99}
	sim, err := Simulate(p, from, to, Interval(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(sim.Points) != 400 || !sim.Points[0].Time.Equal(ts("2025-11-27T02:00:00Z")) || !sim.Points[399].Time.Equal(to) {
		t.Fatalf("%d points from %v to %v", len(sim.Points), sim.Points[0].Time, sim.Points[len(sim.Points)-1].Time)
	}
	// daily: Dec 31..25 (7). weekly: W53 and W52 are daily already, W51
	// and W50 add Sun Dec 20 and 13 (+2). monthly: Dec is daily, Jan..Nov
	// add their last days (+11). quarterly: 2026's four are monthly
	// already, 2025-Q4 (the oldest quarter present) adds Dec 31 2025 (+1).
	// yearly: 2026 and 2025 are both kept already (+0).
	if sim.Kept != 21 {
		t.Errorf("kept %d, want 21", sim.Kept)
	}
	wantRules := map[string]int{"daily": 7, "weekly": 4, "monthly": 12, "quarterly": 5, "yearly": 2}
	if !maps.Equal(sim.PerRule, wantRules) {
		t.Errorf("per rule %v, want %v", sim.PerRule, wantRules)
	}
	if !sim.OldestKept.Equal(ts("2025-12-31T02:00:00Z")) {
		t.Errorf("oldest kept %v", sim.OldestKept)
	}
	var keptDays []string
	for _, pt := range sim.Points {
		if pt.Keep != (len(pt.Reasons) > 0) {
			t.Fatalf("%v: keep %v with reasons %v", pt.Time, pt.Keep, pt.Reasons)
		}
		if pt.Keep {
			keptDays = append(keptDays, pt.Time.Format("01-02"))
		}
	}
	want := []string{"12-31", "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30", "10-31", "11-30",
		"12-13", "12-20", "12-25", "12-26", "12-27", "12-28", "12-29", "12-30", "12-31"}
	if !slices.Equal(keptDays, want) {
		t.Errorf("kept days %v\nwant %v", keptDays, want)
	}
	if sim.Policy != p.String() || !sim.From.Equal(from) || !sim.To.Equal(to) {
		t.Errorf("header %q %v %v", sim.Policy, sim.From, sim.To)
	}
}

// monthlyOn1st is a Timeline of backups at midnight on each month's first.
type monthlyOn1st struct{}

func (monthlyOn1st) Next(after time.Time) time.Time {
	t := time.Date(after.Year(), after.Month(), 1, 0, 0, 0, 0, time.UTC)
	for !t.After(after) {
		t = t.AddDate(0, 1, 0)
	}
	return t
}

// TestSimulateCenturyYearly: monthly backups over a century keep 99 yearly
// points, the newest of each year.
func TestSimulateCenturyYearly(t *testing.T) {
	to := ts("2126-12-01T00:00:00Z")
	sim, err := Simulate(Policy{Yearly: 99, Within: 100 * 24 * time.Hour}, ts("2026-12-31T00:00:00Z"), to, monthlyOn1st{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sim.Points) != 100*12 {
		t.Fatalf("%d points", len(sim.Points))
	}
	// within 100 days of Dec 1: Sep 1 .. Dec 1 (4); yearly: Dec 1 of
	// 2126..2028 (99), Dec 2126 already within.
	if sim.Kept != 4+98 || sim.PerRule["yearly"] != 99 || sim.PerRule["within"] != 4 {
		t.Fatalf("kept %d, per rule %v", sim.Kept, sim.PerRule)
	}
	if !sim.OldestKept.Equal(ts("2028-12-01T00:00:00Z")) {
		t.Fatalf("oldest kept %v", sim.OldestKept)
	}
}

func TestSimulateErrors(t *testing.T) {
	now := ts("2026-11-25T00:00:00Z")
	year := 365 * 24 * time.Hour
	if _, err := Simulate(Policy{Daily: 1}, now.Add(-year), now, Interval(0)); !errors.Is(err, ErrBadTimeline) {
		t.Errorf("zero interval: %v", err)
	}
	if _, err := Simulate(Policy{Daily: 1}, now, now.Add(-time.Hour), Interval(time.Hour)); !errors.Is(err, ErrBadSpan) {
		t.Errorf("backwards span: %v", err)
	}
	if _, err := Simulate(Policy{Daily: 1}, now.Add(-year), now, Interval(time.Minute)); !errors.Is(err, ErrTooManyPoints) {
		t.Errorf("a year of minutes: %v", err)
	}
	sim, err := Simulate(Policy{Daily: 1}, now.Add(-time.Hour), now, Interval(2*time.Hour))
	if err != nil || len(sim.Points) != 0 || sim.Kept != 0 || !sim.OldestKept.IsZero() {
		t.Errorf("no points: %+v %v", sim, err)
	}
}
