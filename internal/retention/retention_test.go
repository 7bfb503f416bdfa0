package retention

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// items builds one group of items named by their times.
func items(group string, times ...string) []Item {
	var out []Item
	for _, s := range times {
		out = append(out, Item{ID: group + "@" + s, Time: ts(s), Group: group})
	}
	return out
}

// kept returns "ID: reason; reason" for every kept item, in input order.
func kept(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep != (len(d.Reasons) > 0) {
			panic(fmt.Sprintf("keep %v with reasons %v", d.Keep, d.Reasons))
		}
		if d.Keep {
			out = append(out, d.Item.ID+": "+strings.Join(d.Reasons, "; "))
		}
	}
	return out
}

func TestApply(t *testing.T) {
	daily := items("vm",
		"2026-11-20T22:00:00Z", "2026-11-20T10:00:00Z", "2026-11-19T23:59:59Z",
		"2026-11-19T00:00:00Z", "2026-11-17T12:00:00Z", "2026-11-16T12:00:00Z")
	cases := []struct {
		name  string
		items []Item
		p     Policy
		want  []string
	}{
		{"last", daily, Policy{Last: 2}, []string{
			"vm@2026-11-20T22:00:00Z: last", "vm@2026-11-20T10:00:00Z: last"}},
		{"daily keeps newest per day, skips empty days", daily, Policy{Daily: 3}, []string{
			"vm@2026-11-20T22:00:00Z: daily 2026-11-20",
			"vm@2026-11-19T23:59:59Z: daily 2026-11-19",
			"vm@2026-11-17T12:00:00Z: daily 2026-11-17"}},
		{"daily unlimited", daily, Policy{Daily: -1}, []string{
			"vm@2026-11-20T22:00:00Z: daily 2026-11-20",
			"vm@2026-11-19T23:59:59Z: daily 2026-11-19",
			"vm@2026-11-17T12:00:00Z: daily 2026-11-17",
			"vm@2026-11-16T12:00:00Z: daily 2026-11-16"}},
		{"rules count independently", daily, Policy{Last: 1, Daily: 2}, []string{
			"vm@2026-11-20T22:00:00Z: last; daily 2026-11-20",
			"vm@2026-11-19T23:59:59Z: daily 2026-11-19"}},
		{"hourly", items("vm", "2026-11-20T10:59:59Z", "2026-11-20T10:00:00Z", "2026-11-20T09:59:59Z", "2026-11-20T07:30:00Z"),
			Policy{Hourly: 3}, []string{
				"vm@2026-11-20T10:59:59Z: hourly 2026-11-20 10",
				"vm@2026-11-20T09:59:59Z: hourly 2026-11-20 09",
				"vm@2026-11-20T07:30:00Z: hourly 2026-11-20 07"}},
		// 2026 has 53 ISO weeks: Mon 2026-12-28 .. Sun 2027-01-03 is 2026-W53;
		// Mon 2024-12-30 belongs to 2025-W01.
		{"weekly across ISO year boundary", items("vm",
			"2027-01-04T00:00:00Z", "2027-01-03T23:00:00Z", "2026-12-28T00:00:00Z", "2026-12-27T23:59:00Z",
			"2024-12-30T12:00:00Z", "2024-12-29T12:00:00Z"),
			Policy{Weekly: 10}, []string{
				"vm@2027-01-04T00:00:00Z: weekly 2027-W01",
				"vm@2027-01-03T23:00:00Z: weekly 2026-W53",
				"vm@2026-12-27T23:59:00Z: weekly 2026-W52",
				"vm@2024-12-30T12:00:00Z: weekly 2025-W01",
				"vm@2024-12-29T12:00:00Z: weekly 2024-W52"}},
		{"monthly and yearly across years", items("vm",
			"2027-01-01T00:00:00Z", "2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2026-11-30T00:00:00Z",
			"2025-02-28T00:00:00Z", "2024-02-29T00:00:00Z"),
			Policy{Monthly: 3, Yearly: 3}, []string{
				"vm@2027-01-01T00:00:00Z: monthly 2027-01; yearly 2027",
				"vm@2026-12-31T23:59:59Z: monthly 2026-12; yearly 2026",
				"vm@2026-11-30T00:00:00Z: monthly 2026-11",
				"vm@2025-02-28T00:00:00Z: yearly 2025"}},
		// 23:30 at UTC-5 is 04:30 UTC the next day: buckets are UTC.
		{"time zones bucket in UTC", []Item{
			{ID: "ny", Time: ts("2026-11-20T23:30:00-05:00"), Group: "vm"},
			{ID: "utc", Time: ts("2026-11-21T01:00:00Z"), Group: "vm"},
			{ID: "tokyo", Time: ts("2026-11-21T08:00:00+09:00"), Group: "vm"}, // 2026-11-20T23:00Z
		}, Policy{Daily: 5}, []string{"ny: daily 2026-11-21", "tokyo: daily 2026-11-20"}},
		{"within is relative to the newest item", daily, Policy{Within: 36 * time.Hour}, []string{
			"vm@2026-11-20T22:00:00Z: within 36h0m0s", "vm@2026-11-20T10:00:00Z: within 36h0m0s",
			"vm@2026-11-19T23:59:59Z: within 36h0m0s"}},
		{"groups counted separately", append(items("a", "2026-11-20T10:00:00Z", "2026-11-19T10:00:00Z"),
			items("b", "2026-01-01T10:00:00Z", "2025-01-01T10:00:00Z")...),
			Policy{Last: 1}, []string{"a@2026-11-20T10:00:00Z: last", "b@2026-01-01T10:00:00Z: last"}},
		{"input order does not matter", []Item{
			{ID: "old", Time: ts("2026-01-01T00:00:00Z")}, {ID: "new", Time: ts("2026-01-02T00:00:00Z")},
			{ID: "mid", Time: ts("2026-01-01T12:00:00Z")}},
			Policy{Daily: 1, Last: 2}, []string{"new: last; daily 2026-01-02", "mid: last"}},
		{"equal times ordered by ID", []Item{
			{ID: "a", Time: ts("2026-01-01T00:00:00Z")}, {ID: "b", Time: ts("2026-01-01T00:00:00Z")}},
			Policy{Last: 1}, []string{"b: last"}},
		{"empty policy keeps everything", daily[:2], Policy{}, []string{
			"vm@2026-11-20T22:00:00Z: empty policy", "vm@2026-11-20T10:00:00Z: empty policy"}},
		{"no items", nil, Policy{Last: 3}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds := Apply(tc.items, tc.p)
			if len(ds) != len(tc.items) {
				t.Fatalf("%d decisions for %d items", len(ds), len(tc.items))
			}
			for i := range ds {
				if ds[i].Item != tc.items[i] {
					t.Fatalf("decision %d is for %v, want %v", i, ds[i].Item, tc.items[i])
				}
			}
			if got := kept(ds); !slices.Equal(got, tc.want) {
				t.Errorf("kept:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestDailyYear checks a year of hourly backups against counts.
func TestDailyYear(t *testing.T) {
	var its []Item
	start := ts("2026-01-01T00:00:00Z")
	for h := range 365 * 24 {
		its = append(its, Item{ID: fmt.Sprint(h), Time: start.Add(time.Duration(h) * time.Hour)})
	}
	p := Policy{Hourly: 24, Daily: 7, Weekly: 4, Monthly: 12, Yearly: 5}
	n := 0
	for _, d := range Apply(its, p) {
		if d.Keep {
			n++
		}
	}
	// The newest item is Thu 2026-12-31 23:00 (ISO 2026-W53).
	// hourly: the 24 items of Dec 31 (the newest also counts for every
	// other rule); daily: Dec 30..25 at 23:00 (+6); weekly: W53 (Dec 31),
	// W52 (Sun Dec 27, already daily), W51 and W50 (+2); monthly: the last
	// hour of Nov..Jan (+11); yearly: only 2026 exists (+0).
	if want := 24 + 6 + 2 + 11; n != want {
		t.Fatalf("kept %d, want %d", n, want)
	}
}

func TestEmptyAndString(t *testing.T) {
	if !(Policy{}).Empty() || (Policy{Within: time.Hour}).Empty() || (Policy{Yearly: -1}).Empty() {
		t.Fatal("Empty wrong")
	}
	if s := (Policy{Last: 3, Daily: -1, Within: time.Hour}).String(); s != "last 3, daily all, within 1h0m0s" {
		t.Fatalf("String %q", s)
	}
}
