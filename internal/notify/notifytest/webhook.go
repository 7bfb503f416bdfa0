package notifytest

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/notify"
)

// Receiver is a webhook endpoint on loopback (a real HTTP listener) that
// records every request, verifies its signature and decodes its body.
type Receiver struct {
	// URL to configure as the webhook's url.
	URL string
	// SecretFile holds the HMAC secret the receiver verifies with.
	SecretFile string
	// CAFile, for a TLS receiver, is its certificate.
	CAFile string
	// Respond, when set before the first request, chooses the status of
	// the n-th request (1-based) once it was checked; 0 means 200. It may
	// block to hold a request.
	Respond func(n int, r Request) int

	secret []byte
	srv    *httptest.Server
	mu     sync.Mutex
	seen   int       // requests begun
	reqs   []Request // requests answered
	notify chan struct{}
}

// Request is one request a Receiver got.
type Request struct {
	Header http.Header
	Body   []byte
	// SigErr is the signature check's result; Payload is valid when
	// PayloadErr is nil.
	SigErr     error
	Payload    notify.Payload
	PayloadErr error
	// Status is what the receiver answered.
	Status int
}

// NewReceiver starts a plain HTTP receiver, or an HTTPS one with a
// certificate for 127.0.0.1 when useTLS; it is closed at cleanup.
func NewReceiver(t testing.TB, useTLS bool) *Receiver {
	t.Helper()
	dir := t.TempDir()
	r := &Receiver{secret: []byte("s3cret-" + t.Name()), notify: make(chan struct{}, 1)}
	r.SecretFile = filepath.Join(dir, "secret")
	if err := os.WriteFile(r.SecretFile, append(r.secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	// Refused handshakes are expected in tests; the client reports them.
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		r.srv.StartTLS()
		r.CAFile = filepath.Join(dir, "ca.pem")
		cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
		if err := os.WriteFile(r.CAFile, cert, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		r.srv.Start()
	}
	r.URL = r.srv.URL + "/hook"
	t.Cleanup(r.srv.Close)
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rq := Request{Header: req.Header.Clone(), Body: body}
	rq.SigErr = notify.VerifySignature(r.secret, body, req.Header.Get(notify.HeaderSignature))
	rq.Payload, rq.PayloadErr = notify.DecodePayload(body)
	r.mu.Lock()
	r.seen++
	n := r.seen
	r.mu.Unlock()
	switch {
	case rq.SigErr != nil:
		rq.Status = http.StatusUnauthorized
	case rq.PayloadErr != nil:
		rq.Status = http.StatusBadRequest
	case r.Respond != nil:
		rq.Status = r.Respond(n, rq)
	}
	if rq.Status == 0 {
		rq.Status = http.StatusOK
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rq)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(rq.Status)
}

// Requests returns the requests answered so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Wait waits (up to a minute) until at least n requests were answered and
// returns them all, in arrival order.
func (r *Receiver) Wait(t testing.TB, n int) []Request {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		if reqs := r.Requests(); len(reqs) >= n {
			return reqs
		}
		select {
		case <-r.notify:
		case <-timeout:
			t.Fatalf("webhook receiver: %d requests, want %d", len(r.Requests()), n)
		}
	}
}
