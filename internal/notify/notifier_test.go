package notify_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
)

// TestRulesSeparateGroups: a rule for group A never delivers group B's
// events; events about no group reach only rules without a group filter.
func TestRulesSeparateGroups(t *testing.T) {
	a, b, all := notifytest.NewReceiver(t, false), notifytest.NewReceiver(t, false), notifytest.NewReceiver(t, false)
	cfg := notify.Config{
		Webhooks: []notify.WebhookConfig{
			{Name: "a", URL: a.URL, SecretFile: a.SecretFile},
			{Name: "b", URL: b.URL, SecretFile: b.SecretFile},
			{Name: "all", URL: all.URL, SecretFile: all.SecretFile},
		},
		Rules: []notify.Rule{
			{Events: []notify.EventKind{notify.JobFailed, notify.RepositoryFull}, Groups: []string{"A"}, Webhooks: []string{"a"}},
			{Events: []notify.EventKind{notify.JobFailed, notify.JobSucceeded}, Groups: []string{"B"}, Webhooks: []string{"b"}},
			{Events: []notify.EventKind{notify.RepositoryFull}, Webhooks: []string{"all"}},
		},
	}
	n, res := start(t, cfg, notify.Options{})
	for _, ev := range []notify.Event{
		{Kind: notify.JobFailed, Group: "A", VM: "a1"},
		{Kind: notify.JobFailed, Group: "B", VM: "b1"},
		{Kind: notify.JobSucceeded, Group: "A", VM: "a2"}, // no rule
		{Kind: notify.JobSucceeded, Group: "B", VM: "b2"},
		{Kind: notify.RepositoryFull, Repository: "/srv/kura"}, // no group
	} {
		if err := n.Notify(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	res.wait(t, 4)
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	seen := func(r *notifytest.Receiver) []string {
		var s []string
		for _, q := range r.Requests() {
			s = append(s, string(q.Payload.Kind)+"/"+q.Payload.Group+q.Payload.VM+q.Payload.Repository)
		}
		return s
	}
	for name, c := range map[string]struct {
		r    *notifytest.Receiver
		want string
	}{"a": {a, "job-failed/Aa1"}, "b": {b, "job-failed/Bb1 job-succeeded/Bb2"}, "all": {all, "repository-full//srv/kura"}} {
		if got := strings.Join(seen(c.r), " "); got != c.want {
			t.Errorf("receiver %s got %q, want %q", name, got, c.want)
		}
	}
	if got := len(res.all()); got != 4 {
		t.Errorf("%d results, want 4", got)
	}
}

// TestFailingDestinationDelaysNoOther: while one webhook holds its
// request and another is down and retrying, Notify returns at once and
// a healthy webhook receives every event.
func TestFailingDestinationDelaysNoOther(t *testing.T) {
	slow, fast := notifytest.NewReceiver(t, false), notifytest.NewReceiver(t, false)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the receivers close
	slow.Respond = func(int, notifytest.Request) int { <-release; return 0 }
	down := "http://127.0.0.1:" + strconv.Itoa(notifytest.FreePort(t)) + "/"
	cfg := notify.Config{
		Webhooks: []notify.WebhookConfig{
			{Name: "slow", URL: slow.URL, SecretFile: slow.SecretFile},
			{Name: "down", URL: down},
			{Name: "fast", URL: fast.URL, SecretFile: fast.SecretFile},
		},
		Rules: []notify.Rule{{Events: []notify.EventKind{notify.JobFailed}, Webhooks: []string{"slow", "down", "fast"}}},
	}
	n, res := start(t, cfg, notify.Options{Retry: notify.RetryPolicy{MaxAttempts: 1000, InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	const events = 5
	for i := range events {
		if err := n.Notify(t.Context(), notify.Event{Kind: notify.JobFailed, VM: "vm" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	reqs := fast.Wait(t, events)
	for i, q := range reqs {
		if q.Payload.VM != "vm"+strconv.Itoa(i) {
			t.Errorf("fast request %d is about %q: order lost", i, q.Payload.VM)
		}
	}
	if got := len(slow.Requests()); got != 0 {
		t.Fatalf("slow answered %d requests while held", got)
	}
	for _, s := range n.Stats() {
		if s.Destination == "webhook:slow" && s.Pending != events {
			t.Errorf("slow: %d pending, want %d", s.Pending, events)
		}
	}
	unblock()
	res.wait(t, 2*events) // fast's and slow's: down has none yet
	// The down destination is still retrying: Close gives up on it.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), strconv.Itoa(events)+" deliveries abandoned") {
		t.Errorf("close: %v", err)
	}
	count := map[string]map[notify.Status]int{}
	for _, r := range res.all() {
		if count[r.Destination] == nil {
			count[r.Destination] = map[notify.Status]int{}
		}
		count[r.Destination][r.Status]++
	}
	for d, want := range map[string]map[notify.Status]int{
		"webhook:fast": {notify.Delivered: events}, "webhook:slow": {notify.Delivered: events}, "webhook:down": {notify.Dropped: events},
	} {
		for s, c := range want {
			if count[d][s] != c || len(count[d]) != 1 {
				t.Errorf("%s: %v, want %v", d, count[d], want)
			}
		}
	}
}

// TestQueueFullDropsInsteadOfBlocking: a destination whose queue is full
// refuses new deliveries at once; its other deliveries are unaffected.
func TestQueueFullDropsInsteadOfBlocking(t *testing.T) {
	r := notifytest.NewReceiver(t, false)
	began, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	r.Respond = func(n int, _ notifytest.Request) int {
		if n == 1 {
			close(began)
			<-release
		}
		return 0
	}
	n, res := start(t, hookConfig(r, notify.JobPartial), notify.Options{QueueSize: 1})
	ev := notify.Event{Kind: notify.JobPartial, Group: "web"}
	if err := n.Notify(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	<-began // the first is being attempted: the queue is empty again
	if err := n.Notify(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	err := n.Notify(t.Context(), ev)
	if !errors.Is(err, notify.ErrQueueFull) {
		t.Fatalf("third event: %v, want ErrQueueFull", err)
	}
	if d := res.wait(t, 1)[0]; d.Status != notify.Dropped || !errors.Is(d.Err, notify.ErrQueueFull) || d.Attempts != 0 {
		t.Errorf("result %+v", d)
	}
	once.Do(func() { close(release) })
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := n.Stats()[0]; s.Delivered != 2 || s.Dropped != 1 || s.Pending != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestCloseDrainsQueues: Close returns once every queued delivery is
// done, retries included.
func TestCloseDrainsQueues(t *testing.T) {
	r := notifytest.NewReceiver(t, false)
	r.Respond = func(n int, _ notifytest.Request) int {
		if n%2 == 1 {
			return http.StatusBadGateway // every delivery's first attempt
		}
		return 0
	}
	e := startExim(t)
	cfg := hookConfig(r, notify.DailySummary)
	cfg.SMTP = e.SMTP()
	cfg.Rules[0].Email = []string{"ops@test.example", "boss@test.example"}
	n, res := start(t, cfg, notify.Options{})
	const events = 10
	for range events {
		if err := n.Notify(t.Context(), notify.Event{Kind: notify.DailySummary, Text: "all good"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(res.all()); got != 3*events {
		t.Fatalf("%d results after Close, want %d", got, 3*events)
	}
	for _, s := range n.Stats() {
		if s.Delivered != events || s.Pending != 0 || s.Failed+s.Dropped != 0 {
			t.Errorf("stats %+v", s)
		}
	}
	ids := map[string]bool{}
	for _, q := range r.Requests() {
		if q.Status == http.StatusOK {
			ids[q.Payload.DeliveryID] = true
		}
	}
	if len(ids) != events {
		t.Errorf("%d distinct deliveries accepted, want %d", len(ids), events)
	}
	if got := len(e.Messages(t, 2*events)); got != 2*events {
		t.Errorf("%d messages, want %d", got, 2*events)
	}
	if err := n.Notify(t.Context(), notify.Event{Kind: notify.DailySummary}); !errors.Is(err, notify.ErrClosed) {
		t.Errorf("Notify after Close: %v", err)
	}
	if err := n.SendTest(t.Context(), "webhook:hook"); !errors.Is(err, notify.ErrClosed) {
		t.Errorf("SendTest after Close: %v", err)
	}
	if err := n.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSendTest: a test event goes to one named destination, at once,
// and its error comes back.
func TestSendTest(t *testing.T) {
	r := notifytest.NewReceiver(t, false)
	n, res := start(t, hookConfig(r, notify.JobFailed), notify.Options{})
	if got := n.Destinations(); len(got) != 1 || got[0] != "webhook:hook" {
		t.Errorf("destinations %v", got)
	}
	if err := n.SendTest(t.Context(), "webhook:hook"); err != nil {
		t.Fatal(err)
	}
	q := r.Requests()[0]
	if q.Payload.Kind != notify.Test || q.Payload.Severity != notify.Info || !strings.Contains(q.Payload.Text, "delivery to webhook:hook works") {
		t.Errorf("test payload %+v", q.Payload)
	}
	if rs := res.all(); len(rs) != 1 || rs[0].Status != notify.Delivered || rs[0].Kind != notify.Test {
		t.Errorf("results %+v", rs)
	}
	r.Respond = func(int, notifytest.Request) int { return http.StatusServiceUnavailable }
	if err := n.SendTest(t.Context(), "webhook:hook"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("failing SendTest: %v", err)
	}
	if got := len(r.Requests()); got != 2 {
		t.Errorf("SendTest retried: %d requests", got)
	}
	for _, d := range []string{"webhook:nope", "email:ops@test.example", "hook", "slack:x"} {
		if err := n.SendTest(t.Context(), d); !errors.Is(err, notify.ErrUnknownDestination) {
			t.Errorf("%s: %v, want ErrUnknownDestination", d, err)
		}
	}
}

func TestNotifyRejectsInvalidEvents(t *testing.T) {
	r := notifytest.NewReceiver(t, false)
	n, _ := start(t, hookConfig(r, notify.JobFailed), notify.Options{})
	for name, ev := range map[string]notify.Event{
		"unknown kind": {Kind: "job-exploded"},
		"bad data":     {Kind: notify.JobFailed, Data: map[string]any{"c": make(chan int)}},
	} {
		if err := n.Notify(t.Context(), ev); !errors.Is(err, notify.ErrInvalidEvent) {
			t.Errorf("%s: %v, want ErrInvalidEvent", name, err)
		}
	}
}
