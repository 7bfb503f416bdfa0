package notify

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the parts of a Notifier that are not configuration.
type Options struct {
	// Logger receives retries and failures; nil discards.
	Logger *slog.Logger
	// Now is the clock (event times, Date and timestamp headers); nil is
	// time.Now.
	Now func() time.Time
	// Hostname names this server: EHLO, Message-ID, the payload's origin.
	// "" is os.Hostname().
	Hostname string
	// Retry bounds retries of queued deliveries; zero fields get
	// DefaultRetry's.
	Retry RetryPolicy
	// QueueSize bounds each destination's queue (default 256); a full
	// queue drops new deliveries (ErrQueueFull) instead of blocking.
	QueueSize int
	// OnResult, when set, is called once per delivery with its outcome,
	// from the destination's goroutine: it must be quick and safe for
	// concurrent use (metrics, a failure log).
	OnResult func(Result)
}

// Status is the outcome of a delivery.
type Status string

// Statuses.
const (
	// Delivered: the destination accepted it.
	Delivered Status = "delivered"
	// Failed: a permanent error, or every attempt failed.
	Failed Status = "failed"
	// Dropped: never completed because the queue was full or Close's
	// deadline passed.
	Dropped Status = "dropped"
)

// Result is the outcome of one delivery (one event to one destination).
type Result struct {
	Destination string
	DeliveryID  string
	EventID     string
	Kind        EventKind
	Status      Status
	// Attempts made (0 when dropped before the first).
	Attempts int
	// Err is the last error; nil when Delivered.
	Err error
}

// Stats counts one destination's deliveries since New.
type Stats struct {
	Destination string
	// Pending deliveries: queued or being attempted.
	Pending int64
	// Delivered, Failed and Dropped count final outcomes; Retries counts
	// attempts after a first one.
	Delivered, Failed, Dropped, Retries int64
}

// Notifier routes events to destinations and delivers them in the
// background. Each destination has its own bounded queue and goroutine,
// so a slow or failing one delays no other and never the caller.
type Notifier struct {
	log      *slog.Logger
	now      func() time.Time
	origin   string
	retry    RetryPolicy
	onResult func(Result)
	rules    []Rule
	mailer   *mailer
	webhooks map[string]*webhook
	targets  map[string]*target

	ctx    context.Context // deliveries; cancelled when Close gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// abandoned counts deliveries dropped because Close gave up.
	abandoned atomic.Int64

	mu     sync.Mutex
	closed bool
}

// delivery is one event on its way to one destination.
type delivery struct {
	id, eventID string
	event       Event
	body        []byte // the same for every attempt
}

// New validates cfg, reads its secret files and starts one goroutine per
// destination. Close stops them.
func New(cfg Config, opts Options) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{
		log: opts.Logger, now: opts.Now, origin: opts.Hostname, retry: opts.Retry.withDefaults(),
		onResult: opts.OnResult, rules: slices.Clone(cfg.Rules),
		webhooks: map[string]*webhook{}, targets: map[string]*target{},
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.origin == "" {
		if n.origin, _ = os.Hostname(); n.origin == "" {
			n.origin = "localhost"
		}
	}
	if cfg.SMTP != nil {
		m, err := newMailer(n.log, cfg.SMTP, messageIDHost(n.origin))
		if err != nil {
			return nil, err
		}
		n.mailer = m
	}
	for _, wc := range cfg.Webhooks {
		w, err := newWebhook(n.log, wc)
		if err != nil {
			return nil, err
		}
		n.webhooks[wc.Name] = w
		n.targets[WebhookDestination(wc.Name)] = &target{name: WebhookDestination(wc.Name), sender: w}
	}
	for _, r := range cfg.Rules {
		for _, a := range r.Email {
			n.targets[EmailDestination(a)] = &target{name: EmailDestination(a), sender: &mailTo{m: n.mailer, to: a}}
		}
	}
	size := opts.QueueSize
	if size <= 0 {
		size = 256
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, t := range n.targets {
		t.queue = make(chan *delivery, size)
		n.wg.Add(1)
		go n.run(t)
	}
	return n, nil
}

// Notify queues ev for every destination a rule selects for it and
// returns at once. It fails only for an invalid event, after Close, or
// for destinations whose queue is full (those deliveries are dropped and
// reported; the others are queued). ctx is only used for logging:
// deliveries outlive the caller.
func (n *Notifier) Notify(ctx context.Context, ev Event) error {
	if err := ev.validate(); err != nil {
		return err
	}
	if _, err := json.Marshal(ev.Data); err != nil {
		return fmt.Errorf("%w: data: %w", ErrInvalidEvent, err)
	}
	if ev.Time.IsZero() {
		ev.Time = n.now()
	}
	eventID := rand.Text()
	var errs []error
	type queued struct {
		t *target
		d *delivery
	}
	var todo []queued
	for _, name := range route(n.rules, ev) {
		t := n.targets[name]
		d, err := n.prepare(t.sender, ev, eventID)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		todo = append(todo, queued{t, d})
	}
	var dropped []Result
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	for _, q := range todo {
		q.t.pending.Add(1)
		select {
		case q.t.queue <- q.d:
		default:
			q.t.pending.Add(-1)
			err := fmt.Errorf("%s: %w (%d pending)", q.t.name, ErrQueueFull, cap(q.t.queue))
			errs = append(errs, err)
			dropped = append(dropped, result(q.t, q.d, Dropped, 0, err))
		}
	}
	n.mu.Unlock()
	for _, r := range dropped {
		n.log.WarnContext(ctx, "notification dropped", "destination", r.Destination, "kind", r.Kind, "err", r.Err)
		n.report(r)
	}
	return errors.Join(errs...)
}

func (n *Notifier) prepare(s sender, ev Event, eventID string) (*delivery, error) {
	d := &delivery{id: rand.Text(), eventID: eventID, event: ev}
	body, err := s.prepare(n, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	d.body = body
	return d, nil
}

// SendTest sends a test event to one destination ("webhook:NAME" or
// "email:ADDRESS", any address when SMTP is configured), once and
// synchronously, and returns the error of that attempt.
func (n *Notifier) SendTest(ctx context.Context, destination string) error {
	s, err := n.sender(destination)
	if err != nil {
		return err
	}
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	ev := Event{
		Kind: Test, Time: n.now(), Subject: "test notification",
		Text: "This is a test notification from kura on " + n.origin + ": delivery to " + destination + " works.",
	}
	d, err := n.prepare(s, ev, rand.Text())
	if err != nil {
		return err
	}
	t := &target{name: destination}
	if err := s.send(ctx, d, n.now()); err != nil {
		n.report(result(t, d, Failed, 1, err))
		return err
	}
	n.report(result(t, d, Delivered, 1, nil))
	return nil
}

func (n *Notifier) sender(destination string) (sender, error) {
	if t, ok := n.targets[destination]; ok {
		return t.sender, nil
	}
	kind, name, ok := splitDestination(destination)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q (use webhook:NAME or email:ADDRESS)", ErrUnknownDestination, destination)
	case kind == webhookPrefix && n.webhooks[name] != nil:
		return n.webhooks[name], nil
	case kind == webhookPrefix:
		return nil, fmt.Errorf("%w: no webhook %q", ErrUnknownDestination, name)
	case n.mailer == nil:
		return nil, fmt.Errorf("%w: %s: no smtp section configured", ErrUnknownDestination, destination)
	}
	if err := checkAddress(name); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownDestination, err)
	}
	return &mailTo{m: n.mailer, to: name}, nil
}

// Destinations lists the configured destinations, sorted.
func (n *Notifier) Destinations() []string {
	out := make([]string, 0, len(n.targets))
	for name := range n.targets {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Stats returns each configured destination's counters, sorted by name.
func (n *Notifier) Stats() []Stats {
	out := make([]Stats, 0, len(n.targets))
	for _, name := range n.Destinations() {
		out = append(out, n.targets[name].stats())
	}
	return out
}

// Close stops accepting events and waits for the queues to drain, retries
// included. When ctx ends first, pending deliveries are abandoned
// (reported Dropped) and Close returns ctx's error. Close is idempotent.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	for _, t := range n.targets {
		close(t.queue)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
	}
	n.cancel()
	<-done
	return fmt.Errorf("notify: close: %d deliveries abandoned: %w", n.abandoned.Load(), ctx.Err())
}

func (n *Notifier) report(r Result) {
	switch r.Status {
	case Failed:
		n.log.Error("notification failed", "destination", r.Destination, "kind", r.Kind, "delivery", r.DeliveryID, "attempts", r.Attempts, "err", r.Err)
	case Delivered:
		n.log.Debug("notification delivered", "destination", r.Destination, "kind", r.Kind, "delivery", r.DeliveryID, "attempts", r.Attempts)
	}
	if n.onResult != nil {
		n.onResult(r)
	}
}
