package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"
)

// RetryPolicy bounds how a queued delivery is retried after a temporary
// failure: attempt n (n ≥ 1) is followed by a wait drawn uniformly from
// [d/2, d], d = min(MaxDelay, InitialDelay·2^(n-1)) ("equal jitter", so
// destinations that failed together do not retry together).
type RetryPolicy struct {
	// MaxAttempts counts the first attempt (default 8).
	MaxAttempts int
	// InitialDelay is d after the first attempt (default 2s).
	InitialDelay time.Duration
	// MaxDelay caps d, and a server's Retry-After (default 5m).
	MaxDelay time.Duration
}

// DefaultRetry waits about 2+4+…+128 s ≈ 4 min in all before giving up.
var DefaultRetry = RetryPolicy{MaxAttempts: 8, InitialDelay: 2 * time.Second, MaxDelay: 5 * time.Minute}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetry.MaxAttempts
	}
	if p.InitialDelay <= 0 {
		p.InitialDelay = DefaultRetry.InitialDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = max(DefaultRetry.MaxDelay, p.InitialDelay)
	}
	return p
}

// Delay returns the wait after attempt n; r in [0, 1) is the jitter draw.
func (p RetryPolicy) Delay(n int, r float64) time.Duration {
	d := p.InitialDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	return d/2 + time.Duration(r*float64(d-d/2))
}

// permanentError marks a failure retrying cannot fix (a 4xx answer, a
// rejected password, a certificate that does not verify).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// retryAfterError carries a server's Retry-After.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// retryable reports whether err may go away by itself.
func retryable(err error) bool {
	var p *permanentError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &p), errors.As(err, &unknownCA), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &verify),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// waitFor returns how long to wait after attempt n failed with err.
func (p RetryPolicy) waitFor(n int, err error, r float64) time.Duration {
	d := p.Delay(n, r)
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > d {
		d = min(ra.after, p.MaxDelay)
	}
	return d
}
