package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/kurabackup/kura/internal/progress"
)

// jobEvents streams a job's progress as Server-Sent Events: first the
// latest event of each kind so far, then every new one, until the job
// ends (event "job-done") or the client goes away. A job that ended
// already gets its final state at once.
func (s *Server) jobEvents(rc *reqCtx) error {
	j, err := s.job(rc, "read")
	if err != nil {
		return err
	}
	fl, ok := rc.w.(http.Flusher)
	if !ok {
		return fmt.Errorf("streaming unsupported")
	}
	h := rc.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc.w.WriteHeader(http.StatusOK)
	send := func(ev progress.Event) bool {
		b, err := json.Marshal(ev)
		if err != nil {
			return true
		}
		if _, err := fmt.Fprintf(rc.w, "event: %s\ndata: %s\n\n", ev.Kind, b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if j.State.Final() {
		send(jobDoneEvent(j.ID, j.State))
		return nil
	}
	snap, ch := s.hub.subscribe(j.ID)
	if ch != nil {
		defer s.hub.unsubscribe(j.ID, ch)
	}
	for _, ev := range snap {
		if !send(ev) {
			return nil
		}
	}
	if ch == nil {
		if cur, err := s.cat.Job(rc.ctx, j.ID); err == nil {
			send(jobDoneEvent(j.ID, cur.State))
		}
		return nil
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-rc.ctx.Done():
			return nil
		case <-keep.C:
			if _, err := fmt.Fprint(rc.w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			fl.Flush()
		case ev, ok := <-ch:
			if !ok {
				// The job ended: its final state is in the catalog.
				if cur, err := s.cat.Job(rc.ctx, j.ID); err == nil {
					send(jobDoneEvent(j.ID, cur.State))
				}
				return nil
			}
			if !send(ev) {
				return nil
			}
		}
	}
}
