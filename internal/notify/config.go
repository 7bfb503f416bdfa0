package notify

import (
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Config is the notification part of the server's configuration file. It
// holds no secret: passwords, HMAC secrets and secret URLs or headers are
// named by file (…_file) or by systemd credential (…_credential: a file
// of that name in $CREDENTIALS_DIRECTORY), and read by New.
//
// Relative file names are used as given (relative to the working
// directory): the configuration loader resolves them first.
type Config struct {
	// SMTP is the mail relay; nil when no rule sends e-mail.
	SMTP *SMTPConfig `yaml:"smtp,omitempty"`
	// Webhooks are HTTP endpoints, named for rules to refer to.
	Webhooks []WebhookConfig `yaml:"webhooks,omitempty"`
	// Rules say which events go where.
	Rules []Rule `yaml:"rules,omitempty"`
}

// TLSMode is how the SMTP connection is protected.
type TLSMode string

// TLS modes.
const (
	// StartTLS: plain connection upgraded with STARTTLS, which the server
	// must offer (the default, usually port 587).
	StartTLS TLSMode = "starttls"
	// ImplicitTLS: TLS from the first byte (the default on port 465).
	ImplicitTLS TLSMode = "implicit"
	// Opportunistic: STARTTLS when the server offers it, plain otherwise;
	// only allowed without credentials.
	Opportunistic TLSMode = "opportunistic"
	// NoTLS: plain text; only allowed without credentials.
	NoTLS TLSMode = "none"
)

// SMTPConfig describes the relay e-mail goes through. The certificate is
// always verified, against the system roots or CAFile.
type SMTPConfig struct {
	Host string `yaml:"host,omitempty"`
	// Port defaults to 587, or 465 with TLS implicit.
	Port int `yaml:"port,omitempty"`
	// TLS defaults to "implicit" on port 465 and "starttls" otherwise.
	TLS TLSMode `yaml:"tls,omitempty"`
	// Username and a password (from PasswordFile or the systemd
	// credential PasswordCredential) enable AUTH (PLAIN, else LOGIN),
	// which is only ever sent over TLS.
	Username           string `yaml:"username,omitempty"`
	PasswordFile       string `yaml:"password_file,omitempty"`
	PasswordCredential string `yaml:"password_credential,omitempty"`
	// From is the sender, "Name <addr>" or "addr".
	From string `yaml:"from,omitempty"`
	// CAFile holds PEM certificates to trust instead of the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// Timeout bounds one delivery attempt (default 30s).
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// WebhookConfig describes an HTTP endpoint that receives events as signed
// JSON POSTs (docs/design/notifications.md).
type WebhookConfig struct {
	// Name is how rules refer to it: letters, digits, '.', '_', '-'.
	Name string `yaml:"name,omitempty"`
	// URL, or URLFile / URLCredential when the URL itself is a credential
	// (chat services' incoming webhooks): exactly one of them.
	URL           string `yaml:"url,omitempty"`
	URLFile       string `yaml:"url_file,omitempty"`
	URLCredential string `yaml:"url_credential,omitempty"`
	// SecretFile or SecretCredential holds the HMAC-SHA256 key of the
	// X-Kura-Signature header; without one requests are unsigned.
	SecretFile       string `yaml:"secret_file,omitempty"`
	SecretCredential string `yaml:"secret_credential,omitempty"`
	// CAFile holds PEM certificates to trust instead of the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Headers are extra request headers (not credentials).
	Headers map[string]string `yaml:"headers,omitempty"`
	// HeaderFiles and HeaderCredentials are extra headers whose values are
	// read from files or systemd credentials (e.g. Authorization).
	HeaderFiles       map[string]string `yaml:"header_files,omitempty"`
	HeaderCredentials map[string]string `yaml:"header_credentials,omitempty"`
}

// Rule sends events of the listed kinds about the listed groups to the
// listed destinations. An empty Groups matches every event, including
// those about no group (repository-full, daily-summary); a non-empty one
// matches only events whose Group it names.
type Rule struct {
	Events   []EventKind `yaml:"events,omitempty"`
	Groups   []string    `yaml:"groups,omitempty"`
	Email    []string    `yaml:"email,omitempty"`
	Webhooks []string    `yaml:"webhooks,omitempty"`
}

// FieldError is one problem of a Config, at a path of YAML keys such as
// "webhooks[1].url" or "rules[0].events[2]".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns ErrInvalidConfig and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalidConfig, e.Err} }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Header names kura sets itself or that carry credentials (those go in
// header_files).
var (
	reservedHeaders = map[string]bool{"Content-Type": true, "Content-Length": true, "Host": true, "User-Agent": true}
	secretHeaders   = map[string]bool{"Authorization": true, "Proxy-Authorization": true, "Cookie": true}
)

// Validate checks c and returns every problem found, each a *FieldError
// (joined with errors.Join), or nil.
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, &FieldError{Path: path, Err: fmt.Errorf(format, a...)})
	}
	if c.SMTP != nil {
		c.SMTP.validate(add)
	}
	names := map[string]bool{}
	for i, w := range c.Webhooks {
		p := fmt.Sprintf("webhooks[%d]", i)
		switch {
		case w.Name == "":
			add(p+".name", "missing")
		case !nameRE.MatchString(w.Name):
			add(p+".name", "%q: use letters, digits, '.', '_' and '-'", w.Name)
		case names[w.Name]:
			add(p+".name", "%q: defined twice", w.Name)
		}
		names[w.Name] = true
		w.validate(p, add)
	}
	for i, r := range c.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		if len(r.Events) == 0 {
			add(p+".events", "missing: list the event kinds (%s)", kindList())
		}
		for j, k := range r.Events {
			if !k.Valid() {
				add(fmt.Sprintf("%s.events[%d]", p, j), "unknown event kind %q (known: %s)", k, kindList())
			}
		}
		for j, g := range r.Groups {
			if strings.TrimSpace(g) == "" {
				add(fmt.Sprintf("%s.groups[%d]", p, j), "empty group name")
			}
		}
		if len(r.Email) == 0 && len(r.Webhooks) == 0 {
			add(p, "no destination: give email addresses or webhook names")
		}
		if len(r.Email) > 0 && c.SMTP == nil {
			add(p+".email", "e-mail needs an smtp section")
		}
		for j, a := range r.Email {
			if err := checkAddress(a); err != nil {
				add(fmt.Sprintf("%s.email[%d]", p, j), "%v", err)
			}
		}
		for j, n := range r.Webhooks {
			if !names[n] {
				add(fmt.Sprintf("%s.webhooks[%d]", p, j), "unknown webhook %q (defined: %s)", n, definedNames(c.Webhooks))
			}
		}
	}
	return errors.Join(errs...)
}

func definedNames(ws []WebhookConfig) string {
	if len(ws) == 0 {
		return "none"
	}
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.Name
	}
	return strings.Join(s, ", ")
}

// checkAddress accepts a bare address (no display name).
func checkAddress(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q is not an e-mail address: %w", s, err)
	}
	if a.Address != s {
		return fmt.Errorf("%q: give the bare address %q", s, a.Address)
	}
	return nil
}

func (s *SMTPConfig) validate(add func(path, format string, a ...any)) {
	if s.Host == "" {
		add("smtp.host", "missing")
	}
	if s.Port < 0 || s.Port > 65535 {
		add("smtp.port", "%d is not a TCP port", s.Port)
	}
	switch s.TLS {
	case "", StartTLS, ImplicitTLS, Opportunistic, NoTLS:
	default:
		add("smtp.tls", "unknown mode %q (starttls, implicit, opportunistic, none)", s.TLS)
	}
	if s.From == "" {
		add("smtp.from", "missing")
	} else if _, err := mail.ParseAddress(s.From); err != nil {
		add("smtp.from", "%q is not an e-mail address: %w", s.From, err)
	}
	hasPassword := s.PasswordFile != "" || s.PasswordCredential != ""
	switch {
	case s.PasswordFile != "" && s.PasswordCredential != "":
		add("smtp.password_file", "give password_file or password_credential, not both")
	case s.Username != "" && !hasPassword:
		add("smtp.password_file", "missing (or password_credential): username is set")
	case s.Username == "" && hasPassword:
		add("smtp.username", "missing: a password is set")
	}
	checkCredential(add, "smtp.password_credential", s.PasswordCredential)
	if m := s.mode(); s.Username != "" && (m == NoTLS || m == Opportunistic) {
		add("smtp.tls", "%q with a username: credentials are only sent over TLS (use starttls or implicit)", m)
	}
	if s.Timeout < 0 {
		add("smtp.timeout", "negative")
	}
}

// mode returns the TLS mode with its default applied.
func (s *SMTPConfig) mode() TLSMode {
	switch {
	case s.TLS != "":
		return s.TLS
	case s.Port == 465:
		return ImplicitTLS
	}
	return StartTLS
}

// port returns the port with its default applied.
func (s *SMTPConfig) port() int {
	switch {
	case s.Port != 0:
		return s.Port
	case s.mode() == ImplicitTLS:
		return 465
	}
	return 587
}

func (w WebhookConfig) validate(p string, add func(path, format string, a ...any)) {
	switch n := count(w.URL, w.URLFile, w.URLCredential); {
	case n == 0:
		add(p+".url", "missing (or url_file, url_credential)")
	case n > 1:
		add(p+".url", "give one of url, url_file and url_credential")
	case w.URL != "":
		if err := checkURL(w.URL); err != nil {
			add(p+".url", "%v", err)
		}
	}
	if w.SecretFile != "" && w.SecretCredential != "" {
		add(p+".secret_file", "give secret_file or secret_credential, not both")
	}
	checkCredential(add, p+".url_credential", w.URLCredential)
	checkCredential(add, p+".secret_credential", w.SecretCredential)
	for h := range w.Headers {
		switch c := textproto.CanonicalMIMEHeaderKey(h); {
		case !validHeaderName(h):
			add(p+".headers", "%q is not a header name", h)
		case reservedHeaders[c] || strings.HasPrefix(c, "X-Kura-"):
			add(p+".headers", "%q is set by kura", h)
		case secretHeaders[c]:
			add(p+".headers", "%q carries a credential: move it to header_files", h)
		}
	}
	for _, hs := range []struct {
		key string
		m   map[string]string
	}{{"header_files", w.HeaderFiles}, {"header_credentials", w.HeaderCredentials}} {
		for h, v := range hs.m {
			switch c := textproto.CanonicalMIMEHeaderKey(h); {
			case !validHeaderName(h):
				add(p+"."+hs.key, "%q is not a header name", h)
			case reservedHeaders[c] || strings.HasPrefix(c, "X-Kura-"):
				add(p+"."+hs.key, "%q is set by kura", h)
			case v == "":
				add(p+"."+hs.key, "%q: empty", h)
			}
			if _, dup := w.Headers[h]; dup {
				add(p+"."+hs.key, "%q is also in headers", h)
			}
			if _, dup := w.HeaderFiles[h]; dup && hs.key == "header_credentials" {
				add(p+"."+hs.key, "%q is also in header_files", h)
			}
			if hs.key == "header_credentials" {
				checkCredential(add, p+"."+hs.key, v)
			}
		}
	}
	if w.Timeout < 0 {
		add(p+".timeout", "negative")
	}
}

// count counts the non-empty strings.
func count(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// checkCredential accepts a systemd credential name (no directory).
func checkCredential(add func(path, format string, a ...any), path, name string) {
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		add(path, "%q is not a credential name (a file name in $CREDENTIALS_DIRECTORY)", name)
	}
}

// checkURL accepts absolute http(s) URLs without inline credentials.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", s)
	}
	if u.User != nil {
		return errors.New("user:password in the URL: use header_files (Authorization) instead")
	}
	return nil
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
