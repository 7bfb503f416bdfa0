// Package retention decides which recovery points a prune keeps.
//
// Apply is a pure function with the semantics of restic's "forget": within
// each group (a VM), items are considered newest first. Each rule keeps up
// to its count of items: "last" keeps the newest N; the calendar rules
// (hourly, daily, weekly, monthly, quarterly, yearly) split time into
// buckets (an hour, a day, an ISO-8601 week, a month, a calendar quarter, a
// year, all in UTC) and keep the newest item of each of the N newest
// buckets that hold an item. Together the calendar rules are a
// grandfather-father-son scheme: short-term points by the day, long-term
// ones by the month, quarter and year (a count of 99 years is nothing
// special). A rule
// counts buckets independently of the other rules, so one item may be kept
// for several reasons. Within keeps every item no older than the duration
// before the group's newest item. A negative count means unlimited. An
// item is kept if any rule keeps it.
//
// An empty policy keeps everything; callers that delete data refuse an
// empty policy (see Policy.Empty).
//
// Simulate applies a policy to hypothetical backups over a span of time, to
// show what it keeps before it is saved.
package retention

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy says how many items each rule keeps per group.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Quarterly, Yearly int
	Within                                                  time.Duration
}

// Item is one recovery point.
type Item struct {
	ID    string
	Time  time.Time
	Group string // policies apply per group, e.g. per VM UUID
}

// Decision says whether an item is kept and why.
type Decision struct {
	Item    Item
	Keep    bool
	Reasons []string // "last", "daily 2026-11-20", "weekly 2026-W47", "quarterly 2026-Q4", ...
}

// Empty reports whether the policy has no rule at all.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 &&
		p.Monthly == 0 && p.Quarterly == 0 && p.Yearly == 0 && p.Within == 0
}

// String describes the policy ("last 3, daily 7, within 48h0m0s").
func (p Policy) String() string {
	var parts []string
	for _, r := range p.rules() {
		if r.count != 0 {
			n := fmt.Sprint(r.count)
			if r.count < 0 {
				n = "all"
			}
			parts = append(parts, r.name+" "+n)
		}
	}
	if p.Within != 0 {
		parts = append(parts, "within "+p.Within.String())
	}
	if len(parts) == 0 {
		return "empty (keep everything)"
	}
	return strings.Join(parts, ", ")
}

type rule struct {
	name   string
	count  int
	bucket func(t time.Time) string // "" for "last": every item is its own bucket
}

func (p Policy) rules() []rule {
	return []rule{
		{"last", p.Last, nil},
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02 15") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"quarterly", p.Quarterly, func(t time.Time) string {
			return fmt.Sprintf("%04d-Q%d", t.Year(), (t.Month()-1)/3+1)
		}},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// Apply decides for every item; decisions come back in the order of items.
// Items with equal times are ordered by ID (greater ID counts as newer) so
// results are deterministic.
func Apply(items []Item, p Policy) []Decision {
	out := make([]Decision, len(items))
	for i, it := range items {
		out[i].Item = it
	}
	if p.Empty() {
		for i := range out {
			out[i].Keep = true
			out[i].Reasons = []string{"empty policy"}
		}
		return out
	}
	groups := map[string][]int{}
	for i, it := range items {
		groups[it.Group] = append(groups[it.Group], i)
	}
	for _, idx := range groups {
		applyGroup(items, idx, p, out)
	}
	return out
}

func applyGroup(items []Item, idx []int, p Policy, out []Decision) {
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := items[b].Time.Compare(items[a].Time); c != 0 {
			return c
		}
		return strings.Compare(items[b].ID, items[a].ID)
	})
	rules := p.rules()
	left := make([]int, len(rules))
	lastBucket := make([]string, len(rules))
	for r := range rules {
		left[r] = rules[r].count
	}
	newest := items[idx[0]].Time
	for _, i := range idx {
		t := items[i].Time.UTC()
		d := &out[i]
		for r, ru := range rules {
			if left[r] == 0 {
				continue
			}
			if ru.bucket == nil {
				d.Reasons = append(d.Reasons, ru.name)
			} else {
				b := ru.bucket(t)
				if b == lastBucket[r] {
					continue
				}
				lastBucket[r] = b
				d.Reasons = append(d.Reasons, ru.name+" "+b)
			}
			if left[r] > 0 {
				left[r]--
			}
		}
		if p.Within > 0 && !items[i].Time.Before(newest.Add(-p.Within)) {
			d.Reasons = append(d.Reasons, "within "+p.Within.String())
		}
		d.Keep = len(d.Reasons) > 0
	}
}
