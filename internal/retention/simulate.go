package retention

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Timeline gives the times of hypothetical backups: Next returns the first
// one after after (zero: no more). A compiled schedule
// (*schedule.Schedule) is one; Interval is the simplest.
type Timeline interface {
	Next(after time.Time) time.Time
}

// Interval is a Timeline of backups every so often.
type Interval time.Duration

// Next returns after plus the interval.
func (d Interval) Next(after time.Time) time.Time { return after.Add(time.Duration(d)) }

// MaxSimPoints bounds the hypothetical backups of one simulation.
const MaxSimPoints = 200_000

// Errors of Simulate.
var (
	ErrTooManyPoints = fmt.Errorf("more than %d hypothetical backups: use a longer interval or a shorter span", MaxSimPoints)
	ErrBadTimeline   = errors.New("the backup times do not advance: use a positive interval")
	ErrBadSpan       = errors.New("the span ends before it starts")
)

// SimPoint is one hypothetical backup and what the policy decides for it.
type SimPoint struct {
	Time    time.Time `json:"time"`
	Keep    bool      `json:"keep"`
	Reasons []string  `json:"reasons,omitempty"`
}

// Simulation is what a policy keeps of hypothetical backups taken in
// (From, To], the policy being applied at To, just after the newest.
type Simulation struct {
	Policy string     `json:"policy"`
	From   time.Time  `json:"from"`
	To     time.Time  `json:"to"`
	Points []SimPoint `json:"points"` // oldest first
	Kept   int        `json:"kept"`
	// PerRule counts the points each rule keeps ("daily": 7); a point
	// several rules keep counts for each of them.
	PerRule map[string]int `json:"per_rule"`
	// OldestKept is the oldest point kept (zero when none is).
	OldestKept time.Time `json:"oldest_kept,omitzero"`
}

// Simulate applies p to backups at the times tl gives after from, up to and
// including to.
func Simulate(p Policy, from, to time.Time, tl Timeline) (*Simulation, error) {
	if to.Before(from) {
		return nil, ErrBadSpan
	}
	var items []Item
	for t := tl.Next(from); !t.IsZero() && !t.After(to); {
		if len(items) == MaxSimPoints {
			return nil, ErrTooManyPoints
		}
		items = append(items, Item{ID: fmt.Sprintf("%09d", len(items)), Time: t})
		next := tl.Next(t)
		if !next.IsZero() && !next.After(t) {
			return nil, ErrBadTimeline
		}
		t = next
	}
	sim := &Simulation{Policy: p.String(), From: from, To: to, Points: make([]SimPoint, len(items)), PerRule: map[string]int{}}
	for i, d := range Apply(items, p) {
		sim.Points[i] = SimPoint{Time: d.Item.Time, Keep: d.Keep, Reasons: d.Reasons}
		if !d.Keep {
			continue
		}
		sim.Kept++
		if sim.OldestKept.IsZero() {
			sim.OldestKept = d.Item.Time
		}
		for _, r := range d.Reasons {
			name, _, _ := strings.Cut(r, " ")
			sim.PerRule[name]++
		}
	}
	return sim, nil
}
