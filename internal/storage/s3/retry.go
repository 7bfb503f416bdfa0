package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/time/rate"

	"github.com/kurabackup/kura/internal/storage"
)

type op int

const (
	opPut op = iota
	opGet
	opHead
	opList
	opDelete
	opRetention
	opCount
)

// limits bounds and counts the requests of one backend.
type limits struct {
	cfg     *Config
	sem     chan struct{}
	limiter *rate.Limiter // nil = unlimited
	counts  [opCount]atomic.Int64
	retries atomic.Int64
	up      atomic.Int64
	down    atomic.Int64
}

func newLimits(cfg *Config) *limits {
	l := &limits{cfg: cfg, sem: make(chan struct{}, cfg.Parallel)}
	if cfg.Rate > 0 {
		l.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/10)))
	}
	return l
}

func (l *limits) stats() storage.RequestStats {
	return storage.RequestStats{
		Put: l.counts[opPut].Load(), Get: l.counts[opGet].Load(), Head: l.counts[opHead].Load(),
		List: l.counts[opList].Load(), Delete: l.counts[opDelete].Load(), Retention: l.counts[opRetention].Load(),
		Retries: l.retries.Load(), BytesUp: l.up.Load(), BytesDown: l.down.Load(),
	}
}

// do runs one request, attempt after attempt while it fails with a
// transient error, each attempt bounded by the configured timeout, with
// full-jitter exponential back-off between attempts. fn must be
// idempotent: every kura request is (a Put writes the same bytes again, a
// Delete of something already gone is reported by fn).
func (l *limits) do(ctx context.Context, o op, fn func(ctx context.Context) error) error {
	var err error
	for attempt := 0; attempt < l.cfg.Retries; attempt++ {
		if attempt > 0 {
			l.retries.Add(1)
			if werr := l.backoff(ctx, attempt); werr != nil {
				return fmt.Errorf("%w (after %d attempts, last error: %w)", werr, attempt, err)
			}
		}
		err = l.once(ctx, o, fn)
		if err == nil || !transient(ctx, err) {
			return err
		}
	}
	return fmt.Errorf("giving up after %d attempts: %w", l.cfg.Retries, err)
}

func (l *limits) once(ctx context.Context, o op, fn func(ctx context.Context) error) error {
	if l.limiter != nil {
		if err := l.limiter.Wait(ctx); err != nil {
			return ctxErr(ctx, err)
		}
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.sem }()
	l.counts[o].Add(1)
	actx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	err := fn(actx)
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		err = fmt.Errorf("attempt timed out after %s: %w", l.cfg.Timeout, errAttemptTimeout)
	}
	return err
}

var errAttemptTimeout = errors.New("request attempt timed out")

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (l *limits) backoff(ctx context.Context, attempt int) error {
	d := l.cfg.RetryBase << min(attempt-1, 30)
	if d > l.cfg.RetryMax || d <= 0 {
		d = l.cfg.RetryMax
	}
	d = d/2 + rand.N(d/2+1) // jitter: half fixed, half random
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// transient reports whether err is worth another attempt: throttling and
// server errors, timeouts, and connections that broke.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, errStopped) {
		return false
	}
	if errors.Is(err, errAttemptTimeout) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errShort) {
		return true
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.StatusCode != 0 {
		switch er.Code {
		case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed", "OperationAborted",
			// The body arrived damaged (the store checked its checksum) or short.
			"BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", "InvalidChunkSizeError":
			return true
		}
		return er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests || er.StatusCode == http.StatusRequestTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTemporary
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// The HTTP client reports some broken connections only as text.
	msg := err.Error()
	for _, s := range []string{"connection reset", "broken pipe", "server closed idle connection",
		"unexpected EOF", "EOF", "Connection closed by foreign host", "transport connection broken", "http2: server sent GOAWAY"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// errShort is a response body shorter than its Content-Length said.
var errShort = errors.New("response shorter than announced")
