package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// userAgent identifies kura's webhook requests.
const userAgent = "kura-notify/1"

// webhook posts payloads to one endpoint.
type webhook struct {
	name    string
	url     string
	shown   string // url, or only scheme and host when it came from a file
	secret  []byte
	header  http.Header
	timeout time.Duration
	client  *http.Client
}

func newWebhook(log *slog.Logger, c WebhookConfig) (*webhook, error) {
	w := &webhook{name: c.Name, url: c.URL, shown: c.URL, header: http.Header{}, timeout: c.Timeout}
	if w.timeout == 0 {
		w.timeout = 10 * time.Second
	}
	what := "webhook " + c.Name
	if c.URLFile != "" || c.URLCredential != "" {
		u, err := readSecret(log, what+" url", c.URLFile, c.URLCredential)
		if err != nil {
			return nil, err
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("%w: %s url: %w", ErrSecretFile, what, err)
		}
		pu, _ := url.Parse(u)
		w.url, w.shown = u, pu.Scheme+"://"+pu.Host+"/…"
	}
	if c.SecretFile != "" || c.SecretCredential != "" {
		s, err := readSecret(log, what+" secret", c.SecretFile, c.SecretCredential)
		if err != nil {
			return nil, err
		}
		w.secret = []byte(s)
	}
	for k, v := range c.Headers {
		w.header.Set(k, v)
	}
	for k, f := range c.HeaderFiles {
		v, err := readSecret(log, what+" header "+k, f, "")
		if err != nil {
			return nil, err
		}
		w.header.Set(k, v)
	}
	for k, cred := range c.HeaderCredentials {
		v, err := readSecret(log, what+" header "+k, "", cred)
		if err != nil {
			return nil, err
		}
		w.header.Set(k, v)
	}
	roots, err := loadCAs(what+" ca_file", c.CAFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	w.client = &http.Client{
		Transport: tr,
		// A redirected POST would be replayed as a GET or to an unchecked
		// host: the configured URL must be the final one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return w, nil
}

// send makes one attempt. body is the same for every attempt of a
// delivery; so is its signature.
func (w *webhook) send(ctx context.Context, d *delivery, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(d.body))
	if err != nil {
		return permanent(fmt.Errorf("webhook %s: %w", w.name, err))
	}
	for k, v := range w.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderEvent, string(d.event.Kind))
	req.Header.Set(HeaderDelivery, d.id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	if w.secret != nil {
		req.Header.Set(HeaderSignature, Sign(w.secret, d.body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = w.shown // never log a URL read from a secret file
		}
		return fmt.Errorf("webhook %s: %w", w.name, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("webhook %s: %s answered %s%s", w.name, w.shown, resp.Status, bodyHint(snippet))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		if s, perr := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); perr == nil && s > 0 {
			return &retryAfterError{err: err, after: time.Duration(s) * time.Second}
		}
		return err
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return permanent(fmt.Errorf("%w (redirects are not followed: configure the final URL)", err))
	}
	return permanent(err)
}

// bodyHint returns the start of an error response, on one line.
func bodyHint(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if s == "" {
		return ""
	}
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return ": " + s
}
