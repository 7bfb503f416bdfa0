package notify

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// sender is a kind of destination: it turns a delivery into bytes once,
// then makes attempts.
type sender interface {
	prepare(n *Notifier, d *delivery) ([]byte, error)
	send(ctx context.Context, d *delivery, now time.Time) error
}

// target is a configured destination with its queue and counters.
type target struct {
	name   string
	sender sender
	queue  chan *delivery

	pending, delivered, failed, dropped, retries atomic.Int64
}

func (t *target) stats() Stats {
	return Stats{
		Destination: t.name, Pending: t.pending.Load(), Delivered: t.delivered.Load(),
		Failed: t.failed.Load(), Dropped: t.dropped.Load(), Retries: t.retries.Load(),
	}
}

func result(t *target, d *delivery, s Status, attempts int, err error) Result {
	switch s {
	case Delivered:
		t.delivered.Add(1)
	case Failed:
		t.failed.Add(1)
	case Dropped:
		t.dropped.Add(1)
	}
	return Result{Destination: t.name, DeliveryID: d.id, EventID: d.eventID, Kind: d.event.Kind, Status: s, Attempts: attempts, Err: err}
}

// run delivers t's queue, one delivery at a time, until it is closed.
func (n *Notifier) run(t *target) {
	defer n.wg.Done()
	for d := range t.queue {
		r := n.deliver(t, d)
		t.pending.Add(-1)
		n.report(r)
	}
}

// errAbandoned is the cause of deliveries Close gave up on.
var errAbandoned = errors.New("abandoned: notifier closed before delivery")

// deliver attempts d until it succeeds, fails permanently, runs out of
// attempts or Close gives up.
func (n *Notifier) deliver(t *target, d *delivery) Result {
	ctx := n.ctx
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			n.abandoned.Add(1)
			return result(t, d, Dropped, attempt-1, errAbandoned)
		}
		err := t.sender.send(ctx, d, n.now())
		switch {
		case err == nil:
			return result(t, d, Delivered, attempt, nil)
		case ctx.Err() != nil:
			n.abandoned.Add(1)
			return result(t, d, Dropped, attempt, errors.Join(errAbandoned, err))
		case !retryable(err) || attempt >= n.retry.MaxAttempts:
			return result(t, d, Failed, attempt, err)
		}
		wait := n.retry.waitFor(attempt, err, rand.Float64())
		t.retries.Add(1)
		n.log.Warn("notification attempt failed, will retry", "destination", t.name, "delivery", d.id,
			"attempt", attempt, "wait", wait, "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
	}
}

func (w *webhook) prepare(n *Notifier, d *delivery) ([]byte, error) {
	return json.Marshal(newPayload(d.event, d.eventID, d.id, n.origin))
}

// mailTo is the e-mail destination of one recipient.
type mailTo struct {
	m  *mailer
	to string
}

func (e *mailTo) prepare(n *Notifier, d *delivery) ([]byte, error) {
	return composeMail(e.m.from, e.to, d.event, d.eventID, d.id, n.origin, n.now()), nil
}

func (e *mailTo) send(ctx context.Context, d *delivery, _ time.Time) error {
	return e.m.send(ctx, e.to, d.body)
}
