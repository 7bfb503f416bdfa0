package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
	"github.com/kurabackup/kura/internal/storage"
	_ "github.com/kurabackup/kura/internal/storage/backends" // every backend, chosen by location scheme
)

// App holds the global options and the resources commands open lazily.
type App struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	repoLocation string
	passwordFile string
	masterKey    string
	connectURI   string
	connectPass  string
	catalogPath  string
	jsonOut      bool
	logLevel     string
	quiet        bool

	logger  *slog.Logger
	cat     catalog.Catalog
	closers []func()

	// cacheBytes is the chunk cache of each disk reader (0: the default);
	// passphrase is the one the repository was opened with (kura instant
	// hands it to the process it starts).
	cacheBytes int64
	passphrase string
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *App {
	return &App{stdin: stdin, stdout: stdout, stderr: stderr}
}

func (a *App) bindGlobalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVarP(&a.repoLocation, "repo", "r", os.Getenv("KURA_REPO"), "repository location: a directory, local:DIR or s3:https://host[:port]/bucket[/prefix]; env KURA_REPO")
	f.StringVar(&a.passwordFile, "password-file", os.Getenv("KURA_PASSWORD_FILE"), "read the repository passphrase from this file; env KURA_PASSWORD_FILE (or KURA_PASSWORD)")
	f.StringVar(&a.masterKey, "master-key-file", os.Getenv("KURA_MASTER_KEY_FILE"), "open the repository with a master key written by kura repo export-key instead of a passphrase (then kura repo key add sets a new one); env KURA_MASTER_KEY_FILE")
	f.StringVarP(&a.connectURI, "connect", "c", envOr("KURA_CONNECT", "qemu:///system"), "hypervisor connection URI: qemu:///system, qemu+ssh://USER@HOST/system, vsphere://USER@VCENTER/DATACENTER; env KURA_CONNECT")
	f.StringVar(&a.connectPass, "connect-password-file", os.Getenv("KURA_CONNECT_PASSWORD_FILE"), "read the hypervisor login's password (vSphere) from this file; env KURA_CONNECT_PASSWORD_FILE (or KURA_CONNECT_PASSWORD)")
	f.StringVar(&a.catalogPath, "catalog", os.Getenv("KURA_CATALOG"), "catalog database (default /var/lib/kura/catalog.db as root, else ~/.cache/kura/catalog.db); env KURA_CATALOG")
	f.BoolVar(&a.jsonOut, "json", false, "machine-readable JSON output")
	f.StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	f.BoolVarP(&a.quiet, "quiet", "q", false, "no progress output")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (a *App) setup(_ *cobra.Command) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usageError("invalid --log-level %q: use debug, info, warn or error", a.logLevel)
	}
	a.logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
	return nil
}

func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func (a *App) onClose(fn func()) { a.closers = append(a.closers, fn) }

// backend opens the storage backend named by --repo, through the
// registry of backends linked in (storage/backends).
func (a *App) backend(ctx context.Context, create bool) (storage.Backend, error) {
	return a.openLocation(ctx, a.repoLocation, create)
}

// openLocation opens a repository location (a path, local:DIR, s3:URL)
// and closes it with the App.
func (a *App) openLocation(ctx context.Context, loc string, create bool) (storage.Backend, error) {
	be, err := openBackend(ctx, loc, create)
	if err != nil {
		return nil, err
	}
	a.onClose(func() { _ = be.Close() })
	return be, nil
}

// openBackend opens the storage backend at a repository location through
// the registry; locks and gc markers may use a full local disk's reserve.
func openBackend(ctx context.Context, loc string, create bool) (storage.Backend, error) {
	if loc == "" {
		return nil, usageError("no repository given: use --repo LOCATION or set KURA_REPO")
	}
	be, err := storage.Open(ctx, loc, storage.OpenOptions{Create: create, ReserveFor: repo.MaintenanceObject})
	if errors.Is(err, storage.ErrUnknownScheme) {
		return nil, usageError("%v", err)
	}
	return be, err
}

// password returns the passphrase from --password-file (or
// KURA_PASSWORD_FILE), KURA_PASSWORD, or a terminal prompt, in that order.
// confirm asks twice (for new passphrases).
func (a *App) password(prompt string, confirm bool) (string, error) {
	if a.passwordFile != "" && prompt == "" {
		data, err := os.ReadFile(a.passwordFile)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		return strings.TrimRight(string(data), "\r\n"), nil
	}
	if v, ok := os.LookupEnv("KURA_PASSWORD"); ok && prompt == "" {
		return v, nil
	}
	if prompt == "" {
		prompt = "repository passphrase"
	}
	return a.askPassword(prompt, confirm)
}

func (a *App) askPassword(prompt string, confirm bool) (string, error) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", fmt.Errorf("%s needed: set KURA_PASSWORD, use --password-file, or run on a terminal", prompt)
	}
	fmt.Fprintf(a.stderr, "enter %s: ", prompt)
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read passphrase: %w", err)
	}
	if confirm {
		fmt.Fprintf(a.stderr, "enter %s again: ", prompt)
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("read passphrase: %w", err)
		}
		if string(p) != string(p2) {
			return "", errors.New("the passphrases do not match")
		}
	}
	if len(p) == 0 {
		return "", errors.New("empty passphrase")
	}
	return string(p), nil
}

// connectPassword returns the hypervisor login's password from
// --connect-password-file (or KURA_CONNECT_PASSWORD_FILE), else
// KURA_CONNECT_PASSWORD, else a terminal prompt. Never from the URI.
func (a *App) connectPassword() (string, error) {
	if a.connectPass != "" {
		data, err := os.ReadFile(a.connectPass)
		if err != nil {
			return "", fmt.Errorf("read connection password file: %w", err)
		}
		return strings.TrimRight(string(data), "\r\n"), nil
	}
	if v, ok := os.LookupEnv("KURA_CONNECT_PASSWORD"); ok {
		return v, nil
	}
	return a.askPassword("password for "+a.connectURI, false)
}

// openRepo opens the repository named by --repo with the passphrase.
func (a *App) openRepo(ctx context.Context) (*repo.Repository, error) {
	open, err := a.repoOpener(ctx)
	if err != nil {
		return nil, err
	}
	r, err := open()
	if err != nil {
		return nil, err
	}
	a.onClose(func() { _ = r.Close() })
	return r, nil
}

// repoOpener gets what opening the repository takes (its backend, and the
// passphrase or master key: a prompt, if any, happens here) and returns
// the opening itself, which runs the passphrase's KDF and may run in
// another goroutine. The caller closes what it returns.
func (a *App) repoOpener(ctx context.Context) (func() (*repo.Repository, error), error) {
	be, err := a.backend(ctx, false)
	if err != nil {
		return nil, err
	}
	opts := repo.OpenOptions{Logger: a.logger, CacheBytes: a.cacheBytes}
	wrap := func(r *repo.Repository, err error) (*repo.Repository, error) {
		if err != nil {
			return nil, fmt.Errorf("open repository %s: %w", be.Location(), err)
		}
		return r, nil
	}
	if a.masterKey != "" {
		data, err := os.ReadFile(a.masterKey)
		if err != nil {
			return nil, fmt.Errorf("read master key: %w", err)
		}
		return func() (*repo.Repository, error) { return wrap(repo.OpenWithMasterKey(ctx, be, data, opts)) }, nil
	}
	pw, err := a.password("", false)
	if err != nil {
		return nil, err
	}
	a.passphrase = pw
	return func() (*repo.Repository, error) { return wrap(repo.Open(ctx, be, pw, opts)) }, nil
}

// loadPoint opens the repository and finds a point by id or unique prefix.
func (a *App) loadPoint(ctx context.Context, id string) (*repo.Repository, *repo.Manifest, error) {
	r, err := a.openRepo(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := r.LoadPoint(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return r, m, nil
}

// openService opens what an operation needs: the repository, the catalog
// (a cache: when it cannot be opened the operation still runs, with a
// warning) and, with needConn, the hypervisor connection.
func (a *App) openService(ctx context.Context, needConn bool) (*service.Service, error) {
	// The passphrase's KDF (0.1 s) runs while the hypervisor connection and
	// the catalog open.
	open, err := a.repoOpener(ctx)
	if err != nil {
		return nil, err
	}
	type opening struct {
		r   *repo.Repository
		err error
	}
	done := make(chan opening, 1)
	go func() {
		r, err := open()
		done <- opening{r, err}
	}()
	var r *repo.Repository
	a.onClose(func() {
		if r != nil {
			_ = r.Close()
		}
	})
	var conn hypervisor.Connector
	var connErr error
	if needConn {
		conn, connErr = a.connect(ctx)
	}
	cat, opened, err := a.catalog(ctx)
	o := <-done
	if o.err != nil {
		return nil, o.err
	}
	r = o.r
	if connErr != nil {
		return nil, connErr
	}
	svc := &service.Service{Repo: r, Conn: conn, Logger: a.logger, ScratchDir: defaultScratchDir()}
	if err != nil {
		a.logger.Warn("catalog unavailable; points are still stored in the repository", "err", err)
		return svc, nil
	}
	svc.Catalog = cat
	if opened.MovedAside != "" {
		// The damaged catalog was set aside: fill the new one at once.
		if rep, err := svc.RebuildCatalog(ctx); err != nil {
			a.logger.Warn("catalog rebuild", "err", err)
		} else {
			fmt.Fprintf(a.stderr, "kura: the catalog was damaged: moved to %s; rebuilt from the repository (%d points)\n",
				opened.MovedAside, rep.Points)
		}
	}
	return svc, nil
}

// openEngine opens what a restore job needs (see openService).
func (a *App) openEngine(ctx context.Context) (*engine.Engine, error) {
	svc, err := a.openService(ctx, true)
	if err != nil {
		return nil, err
	}
	return svc.Engine(), nil
}

// openCatalog opens the catalog database (for commands that read only it).
func (a *App) openCatalog(ctx context.Context) (catalog.Catalog, error) {
	c, opened, err := a.catalog(ctx)
	if err != nil {
		return nil, err
	}
	if opened.MovedAside != "" {
		fmt.Fprintf(a.stderr, "kura: the catalog was damaged: moved to %s; kura catalog rebuild fills the new one\n", opened.MovedAside)
	}
	return c, nil
}

// catalogFile is the catalog's path: --catalog, or the default.
func (a *App) catalogFile() string {
	if a.catalogPath != "" {
		return a.catalogPath
	}
	dir := "/var/lib/kura"
	if os.Geteuid() != 0 {
		if d, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(d, "kura")
		}
	}
	return filepath.Join(dir, "catalog.db")
}

// catalog opens the catalog once per command.
func (a *App) catalog(ctx context.Context) (catalog.Catalog, *service.CatalogOpened, error) {
	if a.cat != nil {
		return a.cat, &service.CatalogOpened{}, nil
	}
	path := a.catalogFile()
	c, opened, err := service.OpenCatalog(ctx, path, a.logger)
	if err != nil {
		return nil, nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	a.cat = c
	a.onClose(func() { _ = c.Close() })
	return c, opened, nil
}

// progressSink returns the sink for long operations: JSON lines with --json,
// a live terminal view otherwise, nothing with --quiet.
func (a *App) progressSink() progress.Sink {
	switch {
	case a.jsonOut:
		return progress.NewJSON(a.stdout)
	case a.quiet:
		return progress.Nop()
	default:
		t := progress.NewTerminal(a.stderr, progress.TerminalOptions{})
		a.onClose(func() { _ = t.Close() })
		return t
	}
}

// endProgress erases a terminal sink's live lines, so that the results
// printed next are not drawn over.
func endProgress(s progress.Sink) {
	if c, ok := s.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// printJSON writes v as indented JSON.
func (a *App) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// out prints a line of text output.
func (a *App) out(format string, args ...any) {
	fmt.Fprintf(a.stdout, format+"\n", args...)
}
