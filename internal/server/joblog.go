package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
)

// jobLog keeps a job's log lines and writes them to the catalog in
// batches (every second or 100 lines), so the full log can be read
// afterwards through the API.
type jobLog struct {
	cat catalog.Catalog
	id  string
	log *slog.Logger

	mu      sync.Mutex
	pending []catalog.LogLine
	last    time.Time
}

func newJobLog(cat catalog.Catalog, id string, log *slog.Logger) *jobLog {
	return &jobLog{cat: cat, id: id, log: log, last: time.Now()}
}

func (l *jobLog) add(ctx context.Context, line catalog.LogLine) {
	l.mu.Lock()
	l.pending = append(l.pending, line)
	due := len(l.pending) >= 100 || time.Since(l.last) > time.Second
	l.mu.Unlock()
	if due {
		l.flush(ctx)
	}
}

// flush writes the pending lines.
func (l *jobLog) flush(ctx context.Context) {
	l.mu.Lock()
	lines := l.pending
	l.pending, l.last = nil, time.Now()
	l.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	if err := l.cat.AppendJobLog(context.WithoutCancel(ctx), l.id, lines); err != nil {
		l.log.Warn("catalog: job log", "job", l.id, "err", err)
	}
}

// handler returns a slog handler writing to next and to the job's log.
func (l *jobLog) handler(next slog.Handler) slog.Handler { return &teeHandler{next: next, l: l} }

type teeHandler struct {
	next  slog.Handler
	l     *jobLog
	attrs []slog.Attr
}

func (h *teeHandler) Enabled(ctx context.Context, lvl slog.Level) bool {
	return lvl >= slog.LevelInfo || h.next.Enabled(ctx, lvl)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if lvl := r.Level; lvl >= slog.LevelInfo {
		attrs := map[string]any{}
		for _, a := range h.attrs {
			attrs[a.Key] = a.Value.Any()
		}
		r.Attrs(func(a slog.Attr) bool {
			v := a.Value.Any()
			if err, ok := v.(error); ok {
				v = err.Error()
			}
			attrs[a.Key] = v
			return true
		})
		delete(attrs, "job")
		raw, _ := json.Marshal(attrs)
		h.l.add(ctx, catalog.LogLine{Time: r.Time, Level: lvl.String(), Message: r.Message, Attrs: raw})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.WithAttrs(h.attrs).Handle(ctx, r)
	}
	return nil
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{next: h.next, l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *teeHandler) WithGroup(string) slog.Handler { return h }
