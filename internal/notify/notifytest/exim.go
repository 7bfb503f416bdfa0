package notifytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/notify"
)

// Exim is a private exim4 daemon on loopback, configured and owned by one
// test: its own configuration (exim4 -C), spool, logs, certificate and
// maildir, all in one directory removed at cleanup.
type Exim struct {
	// StartTLSPort offers STARTTLS and, after it, AUTH PLAIN and LOGIN.
	StartTLSPort int
	// TLSPort speaks TLS from the first byte (like 465).
	TLSPort int
	// PlainPort offers neither TLS nor AUTH, and relays without AUTH.
	PlainPort int
	// LoginPort is StartTLSPort offering AUTH LOGIN only.
	LoginPort int
	// CAFile is the server's self-signed certificate (for 127.0.0.1).
	CAFile string
	// Username and PasswordFile are the account AUTH accepts.
	Username, PasswordFile string

	dir string
}

const eximConf = `primary_hostname = kura-test.localhost
spool_directory = @DIR@/spool
log_file_path = @DIR@/log/%slog
pid_file_path = @DIR@/exim.pid
exim_user = @USER@
exim_group = @GROUP@
keep_environment =
host_lookup =
rfc1413_hosts =
local_interfaces = <; 127.0.0.1
daemon_smtp_ports = @P1@ : @P2@ : @P3@ : @P4@
tls_on_connect_ports = @P2@
tls_advertise_hosts = ${if eq{$received_port}{@P3@}{}{*}}
tls_certificate = @DIR@/cert.pem
tls_privatekey = @DIR@/key.pem
acl_smtp_rcpt = acl_rcpt

begin acl
acl_rcpt:
  accept authenticated = *
  accept condition = ${if eq{$received_port}{@P3@}}
  deny message = authentication required

begin routers
maildir:
  driver = accept
  transport = maildir

begin transports
maildir:
  driver = appendfile
  directory = @DIR@/mail
  maildir_format
  create_directory
  envelope_to_add
  user = @USER@
  group = @GROUP@

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{@NAME@}}{eq{$auth3}{@PASS@}}}}
  server_set_id = $auth2
  server_advertise_condition = ${if and {{def:tls_in_cipher}{!eq{$received_port}{@P4@}}}}
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${if and {{eq{$auth1}{@NAME@}}{eq{$auth2}{@PASS@}}}}
  server_set_id = $auth1
  server_advertise_condition = ${if def:tls_in_cipher}
`

// FreePort returns a loopback TCP port nothing listens on (at the time).
func FreePort(t testing.TB) int { return freePorts(t, 1)[0] }

// StartExim starts exim (the path of exim4) and stops it at cleanup. As
// root, exim delivers as Debian-exim (it never delivers as root);
// otherwise as the calling user.
func StartExim(t testing.TB, exim string) *Exim {
	t.Helper()
	dir, err := os.MkdirTemp("", "kura-exim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	usr, grp, uid, gid := deliveryUser(t)
	// exim's processes run as that user: they must reach the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"spool", "log", "mail"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o750); err != nil {
			t.Fatal(err)
		}
		if os.Getuid() == 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	e := &Exim{dir: dir, Username: "kura-test", PasswordFile: filepath.Join(dir, "password")}
	pass := rand.Text()
	if err := os.WriteFile(e.PasswordFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.CAFile, _ = selfSigned(t, dir)
	ports := freePorts(t, 4)
	e.StartTLSPort, e.TLSPort, e.PlainPort, e.LoginPort = ports[0], ports[1], ports[2], ports[3]
	conf := strings.NewReplacer("@DIR@", dir, "@USER@", usr, "@GROUP@", grp,
		"@P1@", strconv.Itoa(ports[0]), "@P2@", strconv.Itoa(ports[1]), "@P3@", strconv.Itoa(ports[2]), "@P4@", strconv.Itoa(ports[3]),
		"@NAME@", e.Username, "@PASS@", pass).Replace(eximConf)
	confFile := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// -bdf: the daemon stays in the foreground, a child of the test.
	cmd := exec.Command(exim, "-C", confFile, "-bdf")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start exim: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // the daemon and its children
		<-exited
		if t.Failed() {
			t.Logf("exim output:\n%s\n%s", out.String(), e.logs())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range ports {
		if err := waitListening(ctx, p, exited); err != nil {
			t.Fatalf("exim on port %d: %v\n%s\n%s", p, err, out.String(), e.logs())
		}
	}
	return e
}

// deliveryUser is the user and group exim runs and delivers as.
func deliveryUser(t testing.TB) (usr, grp string, uid, gid int) {
	t.Helper()
	var u *user.User
	var err error
	if os.Getuid() == 0 {
		u, err = user.Lookup("Debian-exim")
	} else {
		u, err = user.Current()
	}
	if err != nil {
		t.Fatalf("exim delivery user: %v", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatalf("exim delivery group: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return u.Username, g.Name, uid, gid
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func waitListening(ctx context.Context, port int, exited <-chan error) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exim exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *Exim) logs() string {
	var b strings.Builder
	for _, f := range []string{"mainlog", "rejectlog", "paniclog"} {
		if data, err := os.ReadFile(filepath.Join(e.dir, "log", f)); err == nil {
			fmt.Fprintf(&b, "== %s\n%s", f, data)
		}
	}
	return b.String()
}

// SMTP returns a configuration for this server: port StartTLSPort with
// STARTTLS and AUTH, from kura@test.example.
func (e *Exim) SMTP() *notify.SMTPConfig {
	return &notify.SMTPConfig{
		Host: "127.0.0.1", Port: e.StartTLSPort, TLS: notify.StartTLS,
		Username: e.Username, PasswordFile: e.PasswordFile,
		From: "kura <kura@test.example>", CAFile: e.CAFile,
	}
}

// Message is one delivered message.
type Message struct {
	Raw    []byte
	Header mail.Header
	// Body is the decoded text (quoted-printable undone).
	Body string
}

// Messages waits (up to a minute) until at least n messages were
// delivered and returns them all, oldest first.
func (e *Exim) Messages(t testing.TB, n int) []Message {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		msgs, err := e.read()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("exim: %d messages delivered, want %d\n%s", len(msgs), n, e.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *Exim) read() ([]Message, error) {
	files, err := filepath.Glob(filepath.Join(e.dir, "mail", "new", "*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files) // maildir names start with the delivery time
	var out []Message
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("exim delivered an unparsable message %s: %w", f, err)
		}
		var body io.Reader = m.Body
		if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(m.Body)
		}
		text, err := io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("message %s: %w", f, err)
		}
		out = append(out, Message{Raw: raw, Header: m.Header, Body: string(text)})
	}
	return out, nil
}
