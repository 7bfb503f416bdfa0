package schedule

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
)

// memStore keeps schedule runs in memory; TestPlannerSQLiteCatalog uses
// the real catalog.
type memStore struct {
	times  map[string]time.Time
	jobs   map[string]string
	writes int
}

func newMemStore() *memStore {
	return &memStore{times: map[string]time.Time{}, jobs: map[string]string{}}
}

func (s *memStore) ScheduleRuns(context.Context) (map[string]catalog.ScheduleRun, error) {
	out := make(map[string]catalog.ScheduleRun, len(s.times))
	for k, v := range s.times {
		out[k] = catalog.ScheduleRun{ID: k, Last: v, Job: s.jobs[k]}
	}
	return out, nil
}

func (s *memStore) RecordScheduleRun(_ context.Context, r catalog.ScheduleRun) error {
	s.writes++
	s.times[r.ID], s.jobs[r.ID] = r.Last, r.Job
	return nil
}

// record records what a plan reports, as the server does after queueing
// the runs (job "job-<id>") and reporting the misses.
func record(t *testing.T, p *Planner, plan Plan) {
	t.Helper()
	ctx := context.Background()
	for _, m := range plan.Missed {
		if err := p.Record(ctx, catalog.ScheduleRun{ID: m.ID, Last: m.Last}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range plan.Due {
		if err := p.Record(ctx, catalog.ScheduleRun{ID: r.ID, Last: r.Slot, Job: "job-" + r.ID}); err != nil {
			t.Fatal(err)
		}
	}
}

// describe renders a plan compactly for comparison.
func describe(p Plan, loc *time.Location) []string {
	f := func(t time.Time) string { return t.In(loc).Format("Mon 15:04") }
	var out []string
	for _, r := range p.Due {
		s := "due " + r.ID + " " + f(r.Slot)
		if r.CatchUp {
			s += " catch-up"
		}
		if !r.Deadline.IsZero() {
			s += " until " + f(r.Deadline)
		}
		out = append(out, s)
	}
	for _, m := range p.Missed {
		out = append(out, fmt.Sprintf("missed %s %s %s..%s (%d)", m.ID, m.Reason, f(m.First), f(m.Last), m.Count))
	}
	if !p.Wake.IsZero() {
		out = append(out, "wake "+f(p.Wake))
	}
	return out
}

func checkPlan(t *testing.T, p Plan, loc *time.Location, want ...string) {
	t.Helper()
	if got := describe(p, loc); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestPlannerSteadyState(t *testing.T) {
	ctx := context.Background()
	ber := mustLoc(t, "Europe/Berlin")
	start := at(t, ber, "2026-11-23 09:10") // a Monday
	st := newMemStore()
	p, err := NewPlanner(ctx, []Entry{
		{ID: "web/backup", Spec: Spec{Every: time.Hour}},
		{ID: "web/verify", Spec: Spec{Cron: "30 9 * * mon-fri", Timezone: "Europe/Berlin"}},
	}, st, start)
	if err != nil {
		t.Fatal(err)
	}
	// New entries are handled up to the start: nothing was missed.
	if len(st.times) != 2 || !st.times["web/backup"].Equal(start) || st.writes != 2 {
		t.Fatalf("store after start: %v (%d writes)", st.times, st.writes)
	}
	checkPlan(t, p.Plan(start), ber, "wake Mon 09:30")
	plan := p.Plan(at(t, ber, "2026-11-23 09:30"))
	checkPlan(t, plan, ber, "due web/verify Mon 09:30", "wake Mon 10:00")
	record(t, p, plan)
	if st.jobs["web/verify"] != "job-web/verify" {
		t.Fatalf("job not recorded: %v", st.jobs)
	}
	checkPlan(t, p.Plan(at(t, ber, "2026-11-23 09:30")), ber, "wake Mon 10:00")
	plan = p.Plan(at(t, ber, "2026-11-23 10:00"))
	checkPlan(t, plan, ber, "due web/backup Mon 10:00", "wake Mon 11:00")
	record(t, p, plan)
	if !p.Next("web/verify").Equal(at(t, ber, "2026-11-24 09:30")) || !p.Next("nope").IsZero() {
		t.Fatalf("Next: %v", p.Next("web/verify"))
	}
	if p.Schedule("web/backup").String() != "every 1h0m0s, catch-up once" || p.Schedule("nope") != nil {
		t.Fatalf("Schedule: %v", p.Schedule("web/backup"))
	}
	// Recording an older slot changes nothing.
	w := st.writes
	if err := p.Record(ctx, catalog.ScheduleRun{ID: "web/backup", Last: start}); err != nil || st.writes != w {
		t.Fatalf("old slot recorded: %v, %d writes", err, st.writes-w)
	}
	if err := p.Record(ctx, catalog.ScheduleRun{ID: "unknown", Last: start}); err != nil || st.writes != w {
		t.Fatalf("old slot recorded: %v, %d writes", err, st.writes-w)
	}
}

// TestPlannerCatchUp simulates a downtime: the server ran until Monday
// 03:00 and starts again on Thursday 10:00.
func TestPlannerCatchUp(t *testing.T) {
	ctx := context.Background()
	ber := mustLoc(t, "Europe/Berlin")
	entries := []Entry{
		{ID: "once", Spec: Spec{Cron: "0 2 * * *", Timezone: "Europe/Berlin"}},
		{ID: "skip", Spec: Spec{Cron: "0 2 * * *", Timezone: "Europe/Berlin", CatchUp: "skip"}},
		{ID: "hourly", Spec: Spec{Every: time.Hour, CatchUp: "once"}},
	}
	st := newMemStore()
	mon2 := at(t, ber, "2026-11-23 02:00")
	st.times = map[string]time.Time{"once": mon2, "skip": mon2, "hourly": at(t, ber, "2026-11-23 03:00")}
	started := at(t, ber, "2026-11-26 10:00")
	p, err := NewPlanner(ctx, entries, st, started)
	if err != nil {
		t.Fatal(err)
	}
	plan := p.Plan(started)
	checkPlan(t, plan, ber,
		"due once Thu 02:00 catch-up",
		"due hourly Thu 10:00 catch-up",
		"missed once server-down Tue 02:00..Wed 02:00 (2)",
		"missed skip server-down Tue 02:00..Thu 02:00 (3)",
		"missed hourly server-down Mon 04:00..Thu 09:00 (78)",
		"wake Thu 11:00")
	record(t, p, plan)
	// Nothing is reported twice, neither now nor after another restart.
	checkPlan(t, p.Plan(started.Add(time.Minute)), ber, "wake Thu 11:00")
	p2, err := NewPlanner(ctx, entries, st, started.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p2.Plan(started.Add(2*time.Minute)), ber, "wake Thu 11:00")
	plan = p2.Plan(at(t, ber, "2026-11-27 02:00"))
	checkPlan(t, plan, ber, "due once Fri 02:00", "due skip Fri 02:00",
		"due hourly Fri 02:00", "missed hourly superseded Thu 11:00..Fri 01:00 (15)", "wake Fri 03:00")
}

func TestPlannerWindow(t *testing.T) {
	ctx := context.Background()
	ny := mustLoc(t, "America/New_York")
	e := []Entry{{ID: "night", Spec: Spec{Cron: "0 22 * * *", Timezone: "America/New_York", Window: 2 * time.Hour}}}
	last := at(t, ny, "2026-11-22 22:00") // Sunday's run happened
	cases := []struct {
		started, now string
		want         []string
	}{
		// Down over Monday 22:00, back within the window: caught up.
		{"2026-11-23 23:30", "2026-11-23 23:30", []string{"due night Mon 22:00 catch-up until Tue 00:00", "wake Tue 22:00"}},
		// Back after the window closed: missed, reported.
		{"2026-11-24 01:00", "2026-11-24 01:00", []string{"missed night window Mon 22:00..Mon 22:00 (1)", "wake Tue 22:00"}},
		// Running, but the loop came late (suspended laptop, stalled server).
		{"2026-11-23 08:00", "2026-11-23 23:59", []string{"due night Mon 22:00 until Tue 00:00", "wake Tue 22:00"}},
		{"2026-11-23 08:00", "2026-11-24 00:00", []string{"missed night window Mon 22:00..Mon 22:00 (1)", "wake Tue 22:00"}},
	}
	for _, c := range cases {
		st := newMemStore()
		st.times["night"] = last
		p, err := NewPlanner(ctx, e, st, at(t, ny, c.started))
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, p.Plan(at(t, ny, c.now)), ny, c.want...)
	}
}

// TestPlannerLongDowntime: a year down with a schedule firing every
// minute is counted up to CountLimit without walking every slot.
func TestPlannerLongDowntime(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	last := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	st.times["busy"], st.times["sunday"] = last, last
	started := time.Date(2026, 11, 1, 12, 0, 30, 0, time.UTC)
	p, err := NewPlanner(ctx, []Entry{
		{ID: "busy", Spec: Spec{Cron: "* * * * *", Timezone: "UTC", CatchUp: "skip"}},
		{ID: "sunday", Spec: Spec{Cron: "0 3 * * sun", Timezone: "UTC"}},
	}, st, started)
	if err != nil {
		t.Fatal(err)
	}
	plan := p.Plan(started)
	want := []string{
		"due sunday Sun 03:00 catch-up",
		"missed busy server-down Sat 00:01..Sun 12:00 (10000)",
		"missed sunday server-down Sun 03:00..Sun 03:00 (52)",
		"wake Sun 12:01",
	}
	checkPlan(t, plan, time.UTC, want...)
	if m := plan.Missed[0]; !m.First.Equal(last.Add(time.Minute)) || !m.Last.Equal(started.Truncate(time.Minute)) {
		t.Fatalf("busy missed %v..%v", m.First, m.Last)
	}
	if m := plan.Missed[1]; !m.First.Equal(time.Date(2025, 11, 2, 3, 0, 0, 0, time.UTC)) || !m.Last.Equal(time.Date(2026, 10, 25, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("sunday missed %v..%v", m.First, m.Last)
	}
}

func TestPlannerUpdateAndErrors(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	p, err := NewPlanner(ctx, []Entry{{ID: "a", Spec: Spec{Every: time.Hour}}, {ID: "b", Spec: Spec{Every: time.Hour}}}, st, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Record(ctx, catalog.ScheduleRun{ID: "a", Last: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Reload: b goes, c arrives, a keeps its record and gets a new spec.
	t1 := t0.Add(90 * time.Minute)
	if err := p.Update(ctx, []Entry{{ID: "a", Spec: Spec{Every: 2 * time.Hour}}, {ID: "c", Spec: Spec{Every: 30 * time.Minute}}}, t1); err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p.Plan(t1), time.UTC, "wake Mon 02:00")
	if p.Schedule("b") != nil || !st.times["c"].Equal(t1) || !st.times["a"].Equal(t1) || !p.Next("a").Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after reload: b %v, c %v, a next %v", p.Schedule("b"), st.times["c"], p.Next("a"))
	}
	// The same entries again: nothing moves.
	if err := p.Update(ctx, []Entry{{ID: "a", Spec: Spec{Every: 2 * time.Hour}}, {ID: "c", Spec: Spec{Every: 30 * time.Minute}}}, t1.Add(time.Hour)); err != nil || !st.times["a"].Equal(t1) {
		t.Fatalf("unchanged reload: %v, a recorded %v", err, st.times["a"])
	}
	bad := []Entry{{ID: "a", Spec: Spec{Every: 2 * time.Hour}}, {ID: "x", Spec: Spec{Cron: "0 24 * * *"}}}
	err = p.Update(ctx, bad, t1)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "cron" || !strings.Contains(err.Error(), "schedule x: cron") {
		t.Fatalf("invalid entry: %v", err)
	}
	if p.Schedule("c") == nil {
		t.Fatal("a failed reload changed the entries")
	}
	if err := p.Update(ctx, []Entry{{ID: "a", Spec: Spec{Every: time.Hour}}, {ID: "a", Spec: Spec{Every: 2 * time.Hour}}}, t1); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := NewPlanner(ctx, nil, failingStore{}, t0); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("store error: %v", err)
	}
}

type failingStore struct{}

func (failingStore) ScheduleRuns(context.Context) (map[string]catalog.ScheduleRun, error) {
	return nil, errors.New("disk on fire")
}
func (failingStore) RecordScheduleRun(context.Context, catalog.ScheduleRun) error {
	return errors.New("disk on fire")
}

// TestPlannerSQLiteCatalog runs a downtime and a restart against the real
// SQLite catalog, which is the Store the server gives the planner.
func TestPlannerSQLiteCatalog(t *testing.T) {
	ctx := context.Background()
	cat, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "catalog.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	var _ Store = catalog.Catalog(cat)
	entries := []Entry{{ID: "web/backup", Spec: Spec{Cron: "0 2 * * *", Timezone: "UTC"}}}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	p, err := NewPlanner(ctx, entries, cat, t0)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p.Plan(t0), time.UTC, "wake Tue 02:00")
	plan := p.Plan(t0.Add(14 * time.Hour))
	checkPlan(t, plan, time.UTC, "due web/backup Tue 02:00", "wake Wed 02:00")
	record(t, p, plan)
	// Down from Tue 03:00 to Fri 12:00: Wed and Thu are missed, Fri caught up.
	p2, err := NewPlanner(ctx, entries, cat, t0.Add(96*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p2.Plan(t0.Add(96*time.Hour)), time.UTC,
		"due web/backup Fri 02:00 catch-up", "missed web/backup server-down Wed 02:00..Thu 02:00 (2)", "wake Sat 02:00")
	runs, err := cat.ScheduleRuns(ctx)
	if err != nil || runs["web/backup"].Job != "job-web/backup" || !runs["web/backup"].Last.Equal(t0.Add(14*time.Hour)) {
		t.Fatalf("catalog: %+v %v", runs, err)
	}
}
