package notify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestRetryDelayGrowsWithJitterAndCap(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialDelay: time.Second, MaxDelay: 20 * time.Second}
	want := []time.Duration{1, 2, 4, 8, 16, 20, 20, 20}
	for i, d := range want {
		d *= time.Second
		n := i + 1
		if lo := p.Delay(n, 0); lo != d/2 {
			t.Errorf("attempt %d: shortest wait %v, want %v", n, lo, d/2)
		}
		if hi := p.Delay(n, 0.999999); hi > d || hi < d-d/100 {
			t.Errorf("attempt %d: longest wait %v, want about %v", n, hi, d)
		}
	}
	if got := p.Delay(1000, 0.5); got > 20*time.Second {
		t.Errorf("attempt 1000: %v", got)
	}
}

func TestRetryAfterIsHonouredUpToMaxDelay(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 3, InitialDelay: time.Second, MaxDelay: time.Minute}
	ra := &retryAfterError{err: errors.New("429"), after: 30 * time.Second}
	if got := p.waitFor(1, fmt.Errorf("wrapped: %w", ra), 0); got != 30*time.Second {
		t.Errorf("Retry-After 30s: waited %v", got)
	}
	ra.after = time.Hour
	if got := p.waitFor(1, ra, 0); got != time.Minute {
		t.Errorf("Retry-After 1h: waited %v, want the 1m cap", got)
	}
}

func TestRetryableClassification(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("connection refused"), true},
		{permanent(errors.New("400")), false},
		{fmt.Errorf("x: %w", permanent(errors.New("535"))), false},
		{fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), false},
		{fmt.Errorf("tls: %w", x509.HostnameError{}), false},
	} {
		if got := retryable(c.err); got != c.want {
			t.Errorf("%v: retryable %v, want %v", c.err, got, c.want)
		}
	}
}

func TestDefaultsFillZeroFields(t *testing.T) {
	p := RetryPolicy{InitialDelay: 10 * time.Minute}.withDefaults()
	if p.MaxAttempts != DefaultRetry.MaxAttempts || p.MaxDelay != 10*time.Minute {
		t.Errorf("%+v", p)
	}
}
