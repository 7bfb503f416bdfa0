package schedule

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// scaleEntries returns DPM's per-server scale: 800 groups with three
// schedules each (a nightly backup in one of several zones, a weekly
// verify, a prune every 6 hours).
func scaleEntries() []Entry {
	zones := []string{"Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo"}
	var es []Entry
	for g := range 800 {
		z := zones[g%len(zones)]
		es = append(es,
			Entry{ID: fmt.Sprintf("g%03d/backup", g), Spec: Spec{Cron: fmt.Sprintf("%d %d * * *", g%60, 20+g%6%4), Timezone: z, Window: 4 * time.Hour}},
			Entry{ID: fmt.Sprintf("g%03d/verify", g), Spec: Spec{Cron: fmt.Sprintf("%d 3 * * sun", g%60), Timezone: z}},
			Entry{ID: fmt.Sprintf("g%03d/prune", g), Spec: Spec{Every: 6 * time.Hour, CatchUp: "skip"}},
		)
	}
	return es
}

// BenchmarkPlan800x3 is one wake-up of the server's loop in steady state.
func BenchmarkPlan800x3(b *testing.B) {
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	p, err := NewPlanner(ctx, scaleEntries(), newMemStore(), start)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if plan := p.Plan(start.Add(time.Minute)); len(plan.Due) != 0 || plan.Wake.IsZero() {
			b.Fatalf("plan %+v", plan)
		}
	}
}

// BenchmarkStartup800x3 is a server start after three days down: compile
// 2400 schedules, load their times, and plan the catch-up.
func BenchmarkStartup800x3(b *testing.B) {
	ctx := context.Background()
	entries := scaleEntries()
	down := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	st := newMemStore()
	for _, e := range entries {
		st.times[e.ID] = down
	}
	started := down.Add(72 * time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		p, err := NewPlanner(ctx, entries, st, started)
		if err != nil {
			b.Fatal(err)
		}
		if plan := p.Plan(started); len(plan.Missed) == 0 {
			b.Fatal("nothing missed")
		}
	}
}
