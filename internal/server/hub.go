package server

import (
	"sync"

	"github.com/kurabackup/kura/internal/progress"
)

// hub fans the progress events of running jobs out to their subscribers
// (Server-Sent Events), and keeps each job's latest events so that a late
// subscriber sees where the job stands.
type hub struct {
	mu     sync.Mutex
	subs   map[string]map[chan progress.Event]struct{}
	latest map[string][]progress.Event // per job: the last event of each (kind, vm, disk)
	done   map[string]bool
}

func newHub() *hub {
	return &hub{subs: map[string]map[chan progress.Event]struct{}{}, latest: map[string][]progress.Event{}, done: map[string]bool{}}
}

// publish sends ev to the job's subscribers; a subscriber too slow to keep
// up misses events rather than slowing the job down.
func (h *hub) publish(job string, ev progress.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.latest[job]
	replaced := false
	for i := range l {
		if l[i].Kind == ev.Kind && l[i].VM == ev.VM && l[i].Disk == ev.Disk {
			l[i], replaced = ev, true
		}
	}
	if !replaced && len(l) < 256 {
		l = append(l, ev)
	}
	h.latest[job] = l
	for ch := range h.subs[job] {
		select {
		case ch <- ev:
		default:
		}
	}
}

// finish ends a job's stream: subscribers' channels are closed.
func (h *hub) finish(job string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done[job] = true
	for ch := range h.subs[job] {
		close(ch)
	}
	delete(h.subs, job)
}

// subscribe returns the job's latest events and a channel of the next
// ones (closed when the job ends; nil when it has ended already).
func (h *hub) subscribe(job string) ([]progress.Event, chan progress.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	snap := append([]progress.Event(nil), h.latest[job]...)
	if h.done[job] {
		return snap, nil
	}
	ch := make(chan progress.Event, 64)
	if h.subs[job] == nil {
		h.subs[job] = map[chan progress.Event]struct{}{}
	}
	h.subs[job][ch] = struct{}{}
	return snap, ch
}

func (h *hub) unsubscribe(job string, ch chan progress.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[job][ch]; ok {
		delete(h.subs[job], ch)
		close(ch)
	}
}

// sink is a progress.Sink publishing one job's events.
type sink struct {
	h   *hub
	job string
	// also receives each event (the job's log), may be nil.
	also func(progress.Event)
}

func (s sink) Emit(ev progress.Event) {
	ev.Job = s.job
	s.h.publish(s.job, ev)
	if s.also != nil {
		s.also(ev)
	}
}
