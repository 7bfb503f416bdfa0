package s3server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault kinds the proxy injects.
const (
	Fault503       = "503 SlowDown"                 // answered by the proxy, not forwarded
	FaultDropEarly = "dropped before forwarding"    // connection closed, request not sent
	FaultDropLate  = "dropped after the server ran" // the request took effect, its answer is lost
	FaultTruncate  = "response cut in the middle"   // headers and half the body, then closed
	FaultSlow      = "slow response"                // the answer is held back for Faults.Slow
	FaultCorrupt   = "request body damaged"         // one byte of an upload flipped on the way
)

// Faults says how often the proxy misbehaves.
type Faults struct {
	Rate float64       // probability that a request gets a fault
	Slow time.Duration // how long a slow response is held back
	Seed uint64
	// Only, when set, limits faults to the requests it accepts.
	Only func(*http.Request) bool
}

// Proxy is a fault-injecting HTTP proxy in front of a Server.
type Proxy struct {
	Addr    string
	target  string
	faults  Faults
	enabled atomic.Bool
	mu      sync.Mutex
	rng     *rand.Rand
	counts  map[string]int
	tr      *http.Transport
}

// FaultProxy starts a proxy on a loopback port that forwards to s and
// injects faults; it stops when the test ends.
func (s *Server) FaultProxy(t testing.TB, f Faults) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: s.Addr, faults: f, rng: rand.New(rand.NewPCG(f.Seed, 7)),
		counts: map[string]int{}, tr: &http.Transport{MaxIdleConnsPerHost: 64}}
	p.enabled.Store(true)
	srv := &http.Server{Handler: p}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); p.tr.CloseIdleConnections() })
	return p
}

// Location is the kura location of bucket/prefix through the proxy.
func (p *Proxy) Location(bucket, prefix, params string) string {
	loc := "s3:http://" + p.Addr + "/" + bucket + "/" + prefix
	if params != "" {
		loc += "?" + params
	}
	return loc
}

// SetEnabled turns fault injection on or off.
func (p *Proxy) SetEnabled(on bool) { p.enabled.Store(on) }

// Counts returns how many faults of each kind were injected.
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

func (p *Proxy) pick(req *http.Request) string {
	if !p.enabled.Load() || (p.faults.Only != nil && !p.faults.Only(req)) {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rng.Float64() >= p.faults.Rate {
		return ""
	}
	kinds := []string{Fault503, FaultDropEarly, FaultDropLate, FaultTruncate, FaultCorrupt}
	if p.faults.Slow > 0 {
		kinds = append(kinds, FaultSlow)
	}
	k := kinds[p.rng.IntN(len(kinds))]
	p.counts[k]++
	return k
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fault := p.pick(req)
	switch fault {
	case Fault503:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
		return
	case FaultDropEarly:
		_, _ = io.Copy(io.Discard, req.Body)
		closeConn(w)
		return
	}
	resp, err := p.forward(req, fault == FaultCorrupt)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		closeConn(w)
		return
	}
	switch fault {
	case FaultDropLate:
		closeConn(w)
		return
	case FaultTruncate:
		if len(body) < 2 {
			closeConn(w)
			return
		}
		conn, buf := hijack(w)
		if conn == nil {
			return
		}
		fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
		resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
		_ = resp.Header.Write(buf)
		fmt.Fprint(buf, "\r\n")
		_, _ = buf.Write(body[:len(body)/2])
		_ = buf.Flush()
		_ = conn.Close()
		return
	case FaultSlow:
		time.Sleep(p.faults.Slow)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, bytes.NewReader(body))
}

// forward sends the request on to the server, keeping its Host header
// (the signature covers it).
func (p *Proxy) forward(req *http.Request, damage bool) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	if damage && len(body) > 1000 {
		body[len(body)/2] ^= 0x40
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, "http://"+p.target+req.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Header = req.Header.Clone()
	out.Host = req.Host
	out.ContentLength = req.ContentLength
	return p.tr.RoundTrip(out)
}

func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter) {
	h, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil
	}
	conn, buf, err := h.Hijack()
	if err != nil {
		return nil, nil
	}
	return conn, buf
}

func closeConn(w http.ResponseWriter) {
	if conn, _ := hijack(w); conn != nil {
		_ = conn.Close()
	}
}
