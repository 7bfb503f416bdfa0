package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors. Functions wrap them with %w and add context.
var (
	// ErrNotFound means no record matches the given identifier.
	ErrNotFound = errors.New("not found in catalog")
	// ErrAmbiguous means an identifier prefix matches more than one record.
	ErrAmbiguous = errors.New("ambiguous identifier prefix")
	// ErrSchemaTooNew means the database was written by a newer kura whose
	// schema this binary does not know.
	ErrSchemaTooNew = errors.New("catalog schema is newer than this version of kura supports")
	// ErrNotDatabase means the file is not a SQLite database or is corrupt.
	ErrNotDatabase = errors.New("file is not a valid catalog database")
	// ErrInvalid means a record passed to the catalog is incomplete or has
	// a value outside its allowed set.
	ErrInvalid = errors.New("invalid catalog record")
)

// busyTimeout is how long a statement waits for another process's lock
// before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// SQLite is the embedded catalog: a SQLite database file. It is safe for
// concurrent use.
type SQLite struct {
	path   string
	w      *sql.DB // single connection: every write and write transaction
	r      *sql.DB // pool of read-only connections
	logger *slog.Logger
	now    func() time.Time
	// host and pid identify this process in the jobs it starts.
	host string
	pid  int
}

// Open opens the catalog at path, creating the file (mode 0600) and its
// parent directory (0700) when absent, and migrates its schema to the
// current version. A file that is not a SQLite database gives an error
// wrapping ErrNotDatabase; one with a newer schema, ErrSchemaTooNew.
// A nil logger discards log records.
func Open(ctx context.Context, path string, logger *slog.Logger) (*SQLite, error) {
	return OpenWith(ctx, path, Options{Logger: logger})
}

// Options tune an opened catalog. Zero fields take their defaults.
type Options struct {
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
	// Host and PID identify this process in the jobs it runs (the host
	// name and os.Getpid()).
	Host string
	PID  int
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options) (*SQLite, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, fmt.Errorf("open catalog: %w: empty path", ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	// Create the file ourselves so it is not world-readable; an empty
	// file is a valid empty SQLite database.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}

	c := &SQLite{path: path, logger: logger, now: opts.Now, host: opts.Host, pid: opts.PID}
	if c.now == nil {
		c.now = time.Now
	}
	if c.host == "" {
		c.host, _ = os.Hostname()
	}
	if c.pid == 0 {
		c.pid = os.Getpid()
	}
	c.w, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	c.w.SetMaxOpenConns(1)
	c.r, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		_ = c.w.Close()
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	c.r.SetMaxOpenConns(8)
	if err := c.migrate(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("open catalog %s: %w", path, classify(err))
	}
	return c, nil
}

// dsn builds the driver connection string. Writers take the write lock at
// BEGIN (immediate) so a transaction never has to upgrade a read lock, which
// in WAL mode can fail with SQLITE_BUSY regardless of the busy timeout.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_foreign_keys", "1")
	if readOnly {
		q.Set("_query_only", "1")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "NORMAL")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Close closes the database. Pending writes are already committed.
func (c *SQLite) Close() error {
	return errors.Join(c.r.Close(), c.w.Close())
}

// Path returns the database file name.
func (c *SQLite) Path() string { return c.path }

// classify maps SQLite's "not a database" and "corrupt" codes to
// ErrNotDatabase so callers can tell a damaged file from other failures.
func classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("%w: %w", ErrNotDatabase, err)
		}
	}
	return err
}

// inTx runs fn inside a write transaction, committing when fn returns nil.
func (c *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := c.w.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return classify(tx.Commit())
}

// readTx runs fn inside a read transaction, so multi-statement reads see
// one consistent snapshot.
func (c *SQLite) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := c.r.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// timeToDB converts t to Unix nanoseconds, or NULL for the zero time.
func timeToDB(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// timeFromDB is the inverse of timeToDB.
func timeFromDB(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}

// Snapshot implements Catalog: VACUUM INTO a new file (a consistent copy,
// taken while others keep reading and writing).
func (c *SQLite) Snapshot(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("snapshot catalog: %s exists", path)
	}
	if _, err := c.w.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("snapshot catalog to %s: %w", path, classify(err))
	}
	return os.Chmod(path, 0o600)
}
