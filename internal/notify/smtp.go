package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mailer sends messages through one SMTP relay.
type mailer struct {
	addr     string // host:port
	host     string
	mode     TLSMode
	username string
	password string
	from     *mail.Address
	tls      *tls.Config
	timeout  time.Duration
	helo     string
}

func newMailer(log *slog.Logger, c *SMTPConfig, helo string) (*mailer, error) {
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("smtp from: %w", err)
	}
	m := &mailer{
		addr: net.JoinHostPort(c.Host, strconv.Itoa(c.port())), host: c.Host, mode: c.mode(),
		username: c.Username, from: from, timeout: c.Timeout, helo: helo,
	}
	if m.timeout == 0 {
		m.timeout = 30 * time.Second
	}
	if c.PasswordFile != "" || c.PasswordCredential != "" {
		if m.password, err = readSecret(log, "smtp password", c.PasswordFile, c.PasswordCredential); err != nil {
			return nil, err
		}
	}
	roots, err := loadCAs("smtp ca_file", c.CAFile)
	if err != nil {
		return nil, err
	}
	m.tls = &tls.Config{ServerName: c.Host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	return m, nil
}

// send delivers msg to one recipient in one SMTP session. 5xx replies and
// TLS or authentication problems are permanent; the rest may be retried.
func (m *mailer) send(ctx context.Context, to string, msg []byte) (err error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	defer func() {
		if err != nil {
			err = fmt.Errorf("smtp %s: %w", m.addr, classifySMTP(err))
		}
	}()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if m.mode == ImplicitTLS {
		tc := tls.Client(conn, m.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(m.helo); err != nil {
		return err
	}
	secure := m.mode == ImplicitTLS
	if m.mode == StartTLS || m.mode == Opportunistic {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(m.tls); err != nil {
				return fmt.Errorf("starttls: %w", err)
			}
			secure = true
		} else if m.mode == StartTLS {
			return permanent(fmt.Errorf("%w: STARTTLS not offered (tls: starttls)", ErrNoTLS))
		}
	}
	if m.username != "" {
		if err := m.auth(c, secure); err != nil {
			return err
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("rcpt to %s: %w", to, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	_ = c.Quit() // the message is accepted: a failed QUIT changes nothing
	return nil
}

// auth authenticates with PLAIN, else LOGIN, only over TLS.
func (m *mailer) auth(c *smtp.Client, secure bool) error {
	if !secure {
		return permanent(fmt.Errorf("%w: refusing to send credentials in clear", ErrNoTLS))
	}
	ok, mechs := c.Extension("AUTH")
	if !ok {
		return permanent(errors.New("server offers no AUTH: remove username or use another relay"))
	}
	var a smtp.Auth
	switch list := strings.Fields(strings.ToUpper(mechs)); {
	case slices.Contains(list, "PLAIN"):
		a = smtp.PlainAuth("", m.username, m.password, m.host)
	case slices.Contains(list, "LOGIN"):
		a = &loginAuth{user: m.username, pass: m.password}
	default:
		return permanent(fmt.Errorf("server offers AUTH %s, kura speaks PLAIN and LOGIN", mechs))
	}
	if err := c.Auth(a); err != nil {
		return fmt.Errorf("auth as %s: %w", m.username, err)
	}
	return nil
}

// classifySMTP marks 5xx replies permanent.
func classifySMTP(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(err)
	}
	return err
}

// loginAuth is the LOGIN mechanism: the user name, then the password,
// each in answer to a prompt.
type loginAuth struct {
	user, pass string
	step       int
}

func (a *loginAuth) Start(s *smtp.ServerInfo) (string, []byte, error) {
	if !s.TLS {
		return "", nil, fmt.Errorf("%w: refusing to send credentials in clear", ErrNoTLS)
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(_ []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.user), nil
	case 2:
		return []byte(a.pass), nil
	}
	return nil, errors.New("auth login: unexpected server challenge")
}
