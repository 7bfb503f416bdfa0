// Package s3server starts a real S3-compatible server for tests:
// versitygw serving a temporary directory on a loopback port, with bucket
// versioning and Object Lock available. Tests that need it fail under
// KURA_TEST_STRICT=1 when versitygw is not installed (scripts/test.sh
// installs the pinned version).
package s3server

import (
	"bytes"
	"context"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kurabackup/kura/internal/testenv"
)

// Credentials of the server's single (root) account.
const (
	AccessKey = "kuratestaccess"
	SecretKey = "kuratestsecret0123456789"
)

// Server is a running versitygw process.
type Server struct {
	Addr string // host:port on loopback
	Dir  string // directory holding the buckets
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// Binary returns the path of versitygw: in PATH or in $GOPATH/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not in PATH nor in %s", filepath.Dir(p))
	}
	return p, nil
}

// Options of a server.
type Options struct {
	// NoVersioning starts the gateway without bucket versioning: Object
	// Lock buckets then refuse to overwrite or delete a locked object
	// outright (a versitygw extension; AWS only has versioned lock buckets).
	NoVersioning bool
}

// Start runs a server for the test; it is killed when the test ends. The
// test's environment gets the server's credentials (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY), the way kura reads them.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	bin, err := Binary()
	testenv.Need(t, "versitygw (S3 server): "+fmt.Sprint(err), err == nil)
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		s, err := start(bin, dir, o)
		if err == nil {
			t.Cleanup(s.stop)
			t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
			t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
			t.Setenv("AWS_SESSION_TOKEN", "")
			return s
		}
		if attempt == 2 {
			t.Fatalf("start versitygw: %v", err)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(bin, dir string, o Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	root, ver := filepath.Join(dir, "root"), filepath.Join(dir, "versions")
	for _, d := range []string{root, ver} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := &Server{Addr: addr, Dir: root, log: &bytes.Buffer{}}
	args := []string{"--access", AccessKey, "--secret", SecretKey, "--port", addr, "posix"}
	if !o.NoVersioning {
		args = append(args, "--versioning-dir", ver)
	}
	s.cmd = exec.Command(bin, append(args, root)...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("versitygw on %s did not answer within 30 s: %s", addr, s.log.String())
}

func (s *Server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
	}
}

// Client returns a minio client with the server's root credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""),
		BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Bucket creates a bucket, with Object Lock (hence versioning) when lock
// is set, and returns its name.
func (s *Server) Bucket(t testing.TB, name string, lock bool) string {
	t.Helper()
	err := s.Client(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{ObjectLocking: lock})
	if err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Location is the kura location of prefix in bucket on this server
// (prefix may be empty).
func (s *Server) Location(bucket, prefix string) string {
	loc := "s3:http://" + s.Addr + "/" + bucket
	if prefix != "" {
		loc += "/" + prefix
	}
	return loc
}
