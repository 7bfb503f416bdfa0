package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
)

// ErrDuplicateID means two entries share an id.
var ErrDuplicateID = errors.New("duplicate schedule id")

// Entry is one schedule to plan, e.g. one of a protection group's
// schedules. ID is stable across restarts and reloads ("web/nightly").
type Entry struct {
	ID   string
	Spec Spec
}

// Store keeps, for each entry, the time up to which its runs are handled
// (catalog.ScheduleRun.Last): the slot of the newest run started or
// reported missed, or the time the planner first saw the entry (with no
// job). catalog.Catalog satisfies it.
type Store interface {
	ScheduleRuns(ctx context.Context) (map[string]catalog.ScheduleRun, error)
	RecordScheduleRun(ctx context.Context, run catalog.ScheduleRun) error
}

// Run is a run to start now.
type Run struct {
	ID string
	// Slot is the time the run was due.
	Slot time.Time
	// CatchUp is true for a run missed while the server was down and
	// caught up (catch_up: once).
	CatchUp bool
	// Deadline is when the start window closes (zero: no window).
	Deadline time.Time
}

// MissReason says why runs were missed.
type MissReason string

const (
	// MissedDown: due while the server was not running, and not caught up
	// (catch_up: skip, or older than the one run caught up).
	MissedDown MissReason = "server-down"
	// MissedWindow: could not start within the start window.
	MissedWindow MissReason = "window"
	// MissedSuperseded: due while the server ran, but the next run of the
	// same schedule was due before this one started (the server was
	// suspended or stalled); only the newest runs.
	MissedSuperseded MissReason = "superseded"
)

// CountLimit bounds Miss.Count: a Count of CountLimit means at least that
// many.
const CountLimit = 10000

// Miss reports runs of one entry that will not happen.
type Miss struct {
	ID     string
	Reason MissReason
	// First and Last are the oldest and newest missed slots.
	First, Last time.Time
	Count       int
}

// Plan is what the planner says at one moment.
type Plan struct {
	// Due are the runs to start now, in entry order.
	Due []Run
	// Missed are the runs that will not happen, to report.
	Missed []Miss
	// Wake is when to call Plan again, assuming every run and miss
	// reported is recorded (zero: nothing is scheduled).
	Wake time.Time
}

type entryState struct {
	id    string
	sched *Schedule
	last  time.Time // handled up to here
	next  time.Time // sched.Next(last), cached
}

// Planner decides which schedules are due. It has no goroutine and no
// clock: the server calls Plan with its clock's time, queues each due run
// and records it (Record with the run's slot and job), reports each miss
// and records it (Record with Miss.Last), and sleeps until Plan.Wake or a
// reload. A Planner is not safe for concurrent use.
type Planner struct {
	store   Store
	started time.Time
	entries []*entryState
	byID    map[string]*entryState
	locs    map[string]*time.Location
}

// NewPlanner compiles entries and loads their recorded times from store.
// started is when the server started: slots at or before it that were not
// handled were missed while it was down. Entries the store does not know
// are recorded as handled up to started (nothing before is missed).
func NewPlanner(ctx context.Context, entries []Entry, store Store, started time.Time) (*Planner, error) {
	p := &Planner{store: store, started: started, byID: map[string]*entryState{}, locs: map[string]*time.Location{}}
	if err := p.Update(ctx, entries, started); err != nil {
		return nil, err
	}
	return p, nil
}

// Update replaces the entries (a configuration reload at now): entries
// kept unchanged keep their recorded times; new ones, and ones whose spec
// changed, are recorded as handled up to now (a new spec does not make up
// for slots of its own before the change). Nothing changes when an entry
// is invalid.
func (p *Planner) Update(ctx context.Context, entries []Entry, now time.Time) error {
	states := make([]*entryState, 0, len(entries))
	byID := make(map[string]*entryState, len(entries))
	for _, e := range entries {
		if byID[e.ID] != nil {
			return fmt.Errorf("%w %q", ErrDuplicateID, e.ID)
		}
		sc, err := e.Spec.compile(p.loadLocation)
		if err != nil {
			return fmt.Errorf("schedule %s: %w", e.ID, err)
		}
		st := &entryState{id: e.ID, sched: sc}
		states = append(states, st)
		byID[e.ID] = st
	}
	runs, err := p.store.ScheduleRuns(ctx)
	if err != nil {
		return fmt.Errorf("load schedule runs: %w", err)
	}
	for _, st := range states {
		t := runs[st.id].Last
		if old := p.byID[st.id]; t.IsZero() || old != nil && old.sched.spec != st.sched.spec {
			t = now
			if err := p.store.RecordScheduleRun(ctx, catalog.ScheduleRun{ID: st.id, Last: t}); err != nil {
				return fmt.Errorf("record new schedule %s: %w", st.id, err)
			}
		}
		st.last, st.next = t, st.sched.Next(t)
	}
	p.entries, p.byID = states, byID
	return nil
}

// loadLocation caches zones: loading one reads a file.
func (p *Planner) loadLocation(name string) (*time.Location, error) {
	if loc, ok := p.locs[name]; ok {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		p.locs[name] = loc
	}
	return loc, err
}

// Schedule returns the compiled schedule of an entry (nil if unknown).
func (p *Planner) Schedule(id string) *Schedule {
	if st := p.byID[id]; st != nil {
		return st.sched
	}
	return nil
}

// Next returns when an entry is next due after what is recorded (zero if
// unknown or never).
func (p *Planner) Next(id string) time.Time {
	if st := p.byID[id]; st != nil {
		return st.next
	}
	return time.Time{}
}

// Record marks an entry handled up to run.Last (the slot of a run queued,
// with its job, or Miss.Last of misses reported) and stores it. Unknown
// ids and slots older than recorded are ignored.
func (p *Planner) Record(ctx context.Context, run catalog.ScheduleRun) error {
	st := p.byID[run.ID]
	if st == nil || !run.Last.After(st.last) {
		return nil
	}
	if err := p.store.RecordScheduleRun(ctx, run); err != nil {
		return fmt.Errorf("record schedule run %s: %w", run.ID, err)
	}
	st.last, st.next = run.Last, st.sched.Next(run.Last)
	return nil
}

// Plan says what is due at now, what was missed, and when to wake. It
// changes nothing: Record what it reports.
//
// Of the slots of one entry that passed since its recorded time at most
// one runs, the newest eligible one: a slot after the server's start, or,
// with catch_up: once, the newest slot before it. The run must start
// before its start window closes. Every other slot is reported missed.
func (p *Planner) Plan(now time.Time) Plan {
	var plan Plan
	wake := func(t time.Time) {
		if !t.IsZero() && (plan.Wake.IsZero() || t.Before(plan.Wake)) {
			plan.Wake = t
		}
	}
	for _, st := range p.entries {
		if st.next.IsZero() || st.next.After(now) {
			wake(st.next)
			continue
		}
		newest := p.planEntry(st, now, &plan)
		wake(st.sched.Next(newest))
	}
	return plan
}

// planEntry plans one entry with slots in (st.last, now] and returns the
// newest of them.
func (p *Planner) planEntry(st *entryState, now time.Time, plan *Plan) time.Time {
	sc := st.sched
	newest := sc.newestUpTo(now, st.last)
	downEnd := p.started
	if now.Before(downEnd) {
		downEnd = now
	}
	newestDown := sc.newestUpTo(downEnd, st.last)
	run := Run{ID: st.id}
	switch {
	case newest.After(p.started):
		run.Slot = newest
	case sc.catchUp == CatchUpOnce:
		run.Slot, run.CatchUp = newestDown, true
	}
	miss := func(reason MissReason, lo, hi time.Time) {
		if first := sc.Next(lo); !first.IsZero() && !first.After(hi) {
			plan.Missed = append(plan.Missed, Miss{ID: st.id, Reason: reason, First: first, Last: hi, Count: sc.count(first, hi)})
		}
	}
	// Down slots: (last, newestDown], less the one caught up.
	if !newestDown.IsZero() {
		hi := newestDown
		if run.CatchUp {
			hi = sc.newestUpTo(newestDown.Add(-time.Nanosecond), st.last)
		}
		if !hi.IsZero() {
			miss(MissedDown, st.last, hi)
		}
	}
	// Slots while running, less the newest, which runs.
	if !run.CatchUp && !run.Slot.IsZero() {
		lo := st.last
		if lo.Before(p.started) {
			lo = p.started
		}
		if hi := sc.newestUpTo(newest.Add(-time.Nanosecond), lo); !hi.IsZero() {
			miss(MissedSuperseded, lo, hi)
		}
	}
	if run.Slot.IsZero() {
		return newest
	}
	if sc.window > 0 {
		run.Deadline = run.Slot.Add(sc.window)
		if !now.Before(run.Deadline) {
			plan.Missed = append(plan.Missed, Miss{ID: st.id, Reason: MissedWindow, First: run.Slot, Last: run.Slot, Count: 1})
			return newest
		}
	}
	plan.Due = append(plan.Due, run)
	return newest
}

// newestUpTo returns the newest slot s with after < s <= t, or zero. It
// walks forward a few slots; when there are more, it probes backwards from
// t in doubling steps, so a long downtime of a frequent schedule costs a
// few dozen evaluations, not one per slot.
func (sc *Schedule) newestUpTo(t, after time.Time) time.Time {
	x := sc.Next(after)
	if x.IsZero() || x.After(t) {
		return time.Time{}
	}
	for range 64 {
		y := sc.Next(x)
		if y.IsZero() || y.After(t) {
			return x
		}
		x = y
	}
	// x is a slot at or before t; the newest lies in (x, t].
	for w := time.Minute; ; w *= 2 {
		lo := t.Add(-w)
		if !lo.After(x) {
			lo = x
		}
		if y := sc.Next(lo); !y.IsZero() && !y.After(t) {
			for {
				z := sc.Next(y)
				if z.IsZero() || z.After(t) {
					return y
				}
				y = z
			}
		}
		if lo.Equal(x) {
			return x
		}
	}
}

// count returns the number of slots in [first, last], first being a slot,
// at most CountLimit.
func (sc *Schedule) count(first, last time.Time) int {
	if sc.cron == nil {
		return int(min(int64(last.Sub(first)/sc.every)+1, CountLimit))
	}
	n := 0
	for t := first; !t.IsZero() && !t.After(last) && n < CountLimit; t = sc.Next(t) {
		n++
	}
	return n
}
