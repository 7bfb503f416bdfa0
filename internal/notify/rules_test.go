package notify

import (
	"slices"
	"testing"
)

func TestRouteMatchesKindsAndGroupsOnce(t *testing.T) {
	rules := []Rule{
		{Events: []EventKind{JobFailed, JobPartial}, Groups: []string{"web"}, Email: []string{"web@x.example"}, Webhooks: []string{"chat"}},
		{Events: []EventKind{JobFailed, RepositoryFull, DailySummary}, Email: []string{"ops@x.example"}, Webhooks: []string{"chat"}},
		{Events: []EventKind{RepositoryFull}, Groups: []string{"web"}, Webhooks: []string{"web-only"}},
	}
	for _, c := range []struct {
		ev   Event
		want []string
	}{
		{Event{Kind: JobFailed, Group: "web"}, []string{"email:web@x.example", "webhook:chat", "email:ops@x.example"}},
		{Event{Kind: JobFailed, Group: "db"}, []string{"email:ops@x.example", "webhook:chat"}},
		{Event{Kind: JobPartial, Group: "db"}, nil},
		{Event{Kind: JobSucceeded, Group: "web"}, nil},
		// Server-wide events reach only rules without a group filter.
		{Event{Kind: RepositoryFull}, []string{"email:ops@x.example", "webhook:chat"}},
		{Event{Kind: RepositoryFull, Group: "web"}, []string{"email:ops@x.example", "webhook:chat", "webhook:web-only"}},
	} {
		if got := route(rules, c.ev); !slices.Equal(got, c.want) {
			t.Errorf("%s/%q: %v, want %v", c.ev.Kind, c.ev.Group, got, c.want)
		}
	}
}

func TestSplitDestination(t *testing.T) {
	for in, want := range map[string][2]string{
		"webhook:chat": {webhookPrefix, "chat"}, "email:a@b.example": {emailPrefix, "a@b.example"},
		"webhook:": {}, "chat": {}, "mailto:a@b": {},
	} {
		k, n, ok := splitDestination(in)
		if ok != (want[0] != "") || k != want[0] || n != want[1] {
			t.Errorf("%q: %q %q %v", in, k, n, ok)
		}
	}
}
