package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/storage"
)

// KDFParams are the argon2id costs used to wrap the master key.
type KDFParams = crypto.KDFParams

// InitOptions configure a new repository.
type InitOptions struct {
	Password           string
	ChunkSize          int // 0 = DefaultChunkSize
	Encrypt            bool
	KDF                KDFParams // zero = crypto.DefaultKDF()
	Hostname, Username string    // recorded in the key file; empty = this host/user
	// Immutable > 0 makes an immutable repository: the store (an S3 bucket
	// with Object Lock) locks every object a point references for this
	// long after the point, plus ImmutableSlack (0 = DefaultSlack).
	Immutable, ImmutableSlack time.Duration
	// CopyOf initialises the repository as a copy of another one: same
	// chunk size, encryption and master key (its key files are copied, so
	// the same passphrases open it), so that kura copy moves encrypted
	// chunks as they are. ChunkSize, Encrypt and Password are ignored.
	CopyOf *Repository
	// Version is the format version to create (0 = CurrentVersion). 1
	// makes a repository kura releases before format version 2 can use
	// (zstd only).
	Version int
}

// OpenOptions configure an opened repository.
type OpenOptions struct {
	Logger     *slog.Logger
	CacheBytes int64 // chunk cache of each DiskReader; 0 = 64 MiB
	// Workers is the parallelism of writers, verify and stream; 0 = 2×GOMAXPROCS.
	Workers int
	// Compression chooses how new chunks are compressed ("": CompressAuto).
	Compression Compression
}

// Repository is an opened kura repository. It is safe for concurrent use.
type Repository struct {
	be     storage.Backend
	cfg    Config
	codec  *codec
	mk     *crypto.MasterKey // nil when unencrypted
	keyID  string            // key file that opened the repository
	kdf    KDFParams
	log    *slog.Logger
	opts   OpenOptions
	closed bool
}

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// Backend returns the storage backend.
func (r *Repository) Backend() storage.Backend { return r.be }

// Close releases the repository's resources (not the backend).
func (r *Repository) Close() error {
	if !r.closed {
		r.closed = true
		r.codec.close()
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func defaultIdentity(host, usr string) (string, string) {
	if host == "" {
		host, _ = os.Hostname()
	}
	if usr == "" {
		if u, err := user.Current(); err == nil {
			usr = u.Username
		}
	}
	return host, usr
}

// Init creates a repository in an empty backend. The config object is
// written last, so an interrupted init leaves no repository behind.
func Init(ctx context.Context, be storage.Backend, opts InitOptions) (*Repository, error) {
	if _, err := be.Stat(ctx, configName); err == nil {
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrAlreadyExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("init %s: %w", be.Location(), err)
	}
	if opts.CopyOf != nil {
		opts.ChunkSize, opts.Encrypt = opts.CopyOf.cfg.ChunkSize, opts.CopyOf.cfg.Encrypted
	}
	cs := opts.ChunkSize
	if cs == 0 {
		cs = DefaultChunkSize
	}
	if cs < MinChunkSize || cs > MaxChunkSize || cs%4096 != 0 {
		return nil, fmt.Errorf("chunk size %d must be a multiple of 4096 between %d and %d", cs, MinChunkSize, MaxChunkSize)
	}
	version := opts.Version
	if version == 0 {
		version = CurrentVersion
	}
	if version < MinWriteVersion || version > MaxWriteVersion {
		return nil, fmt.Errorf("format version %d: this kura creates versions %d to %d", version, MinWriteVersion, MaxWriteVersion)
	}
	cfg := Config{Magic: configMagic, Version: version, ID: randomHex(16), ChunkSize: cs,
		Encryption: "none", Compression: compressionOf(version), ChunkID: chunkIDOf(version),
		Created: time.Now().UTC().Truncate(time.Second)}
	if src := opts.CopyOf; src != nil {
		// A copy names its chunks as its source does: they are copied
		// byte for byte.
		if src.cfg.ChunkID != "" && version < 3 {
			return nil, fmt.Errorf("format version %d: %s names its chunks with %s, which needs format version 3 or later",
				version, src.be.Location(), src.cfg.ChunkID)
		}
		cfg.ChunkID = src.cfg.ChunkID
	}
	if opts.Immutable > 0 {
		if _, err := retainer(ctx, be); err != nil {
			return nil, err
		}
		slack := opts.ImmutableSlack
		if slack <= 0 {
			slack = DefaultSlack(opts.Immutable)
		}
		cfg.Immutable = &Immutability{RetainSeconds: int64(opts.Immutable / time.Second), SlackSeconds: int64(slack / time.Second)}
	}
	r := &Repository{be: be, cfg: cfg, log: slog.New(slog.DiscardHandler)}
	if opts.CopyOf != nil {
		cfg.CopyOf, cfg.Encryption = opts.CopyOf.cfg.ID, opts.CopyOf.cfg.Encryption
		if err := r.copyKeys(ctx, opts.CopyOf); err != nil {
			return nil, err
		}
	} else if opts.Encrypt {
		if opts.Password == "" {
			return nil, errors.New("an encrypted repository needs a passphrase")
		}
		cfg.Encryption = "aes-256-gcm"
		mk, err := crypto.NewMasterKey()
		if err != nil {
			return nil, err
		}
		r.mk, r.kdf = mk, opts.KDF
		host, usr := defaultIdentity(opts.Hostname, opts.Username)
		if r.keyID, err = r.putKey(ctx, opts.Password, host, usr); err != nil {
			return nil, err
		}
	}
	cfg.Encrypted = opts.Encrypt
	r.cfg = cfg
	if err := r.setup(OpenOptions{}); err != nil {
		return nil, err
	}
	if err := r.writeConfig(ctx); err != nil {
		return nil, err
	}
	if err := r.syncBackend(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// configMAC is the MAC of the repository's config (keyed when encrypted).
func (r *Repository) configMAC() string {
	d := r.codec.digest(r.cfg.canonical())
	return d.String()
}

// writeConfig stores the config with its MAC.
func (r *Repository) writeConfig(ctx context.Context) error {
	r.cfg.MAC = r.configMAC()
	data, err := json.MarshalIndent(r.cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := r.putMeta(ctx, configName, data); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// checkConfig verifies the config's MAC once the keys are known.
func (r *Repository) checkConfig() error {
	if r.cfg.MAC != "" && r.cfg.MAC != r.configMAC() {
		return fmt.Errorf("%s: %w", r.be.Location(), ErrConfigChanged)
	}
	return nil
}

func (r *Repository) setup(opts OpenOptions) error {
	var keys *crypto.Keys
	if r.mk != nil {
		var err error
		if keys, err = crypto.NewKeys(r.mk); err != nil {
			return err
		}
	}
	ids, err := crypto.NewDigester(r.cfg.IDHash(), r.mk)
	if err != nil {
		return err
	}
	c, err := newCodec(keys, ids, r.cfg.Compression == compressionZstdS2)
	if err != nil {
		return err
	}
	r.codec, r.opts = c, opts
	if opts.Logger != nil {
		r.log = opts.Logger
	} else if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return nil
}

func readConfig(ctx context.Context, be storage.Backend) (Config, error) {
	data, err := be.Get(ctx, configName)
	if errors.Is(err, storage.ErrNotFound) {
		return Config{}, fmt.Errorf("no kura repository at %s: %w", be.Location(), ErrNotRepository)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config of %s: %w", be.Location(), err)
	}
	cfg, err := decodeConfig(data)
	cfg.Encrypted = cfg.encrypted()
	return cfg, err
}

// Open opens the repository in be, unwrapping the master key with password
// (ignored for an unencrypted repository).
func Open(ctx context.Context, be storage.Backend, password string, opts OpenOptions) (*Repository, error) {
	cfg, err := readConfig(ctx, be)
	if err != nil {
		return nil, err
	}
	r := &Repository{be: be, cfg: cfg, log: opts.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Encrypted {
		if err := r.unlock(ctx, password); err != nil {
			return nil, err
		}
	}
	if err := r.setup(opts); err != nil {
		return nil, err
	}
	return r, r.checkConfig()
}

// unlock tries every key file with password.
func (r *Repository) unlock(ctx context.Context, password string) error {
	kfs, bad, err := r.readKeyFiles(ctx)
	if err != nil {
		return err
	}
	if len(kfs) == 0 && len(bad) > 0 {
		var parts []string
		for _, b := range bad {
			parts = append(parts, fmt.Sprintf("%s: %v", b.name, b.err))
		}
		return fmt.Errorf("%s: %w: no key file decodes (%s); restore the keys/ objects from a copy, or open with --master-key-file",
			r.be.Location(), ErrCorrupt, strings.Join(parts, "; "))
	}
	if len(kfs) == 0 {
		return fmt.Errorf("%s: %w: the repository has no key files; open with --master-key-file", r.be.Location(), ErrMissing)
	}
	if len(bad) > 0 {
		r.log.Warn("some key files do not decode; the others are tried", "unreadable", len(bad))
	}
	for _, k := range kfs {
		mk, err := k.kf.Unwrap(password)
		if err == nil {
			r.mk, r.keyID, r.kdf = mk, k.id, k.kf.Params
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return ErrWrongPassword
}

type exportedKey struct {
	Format       string `json:"format"`
	RepositoryID string `json:"repository_id"`
	MasterKey    []byte `json:"master_key"`
}

// ExportMasterKey returns the master key as JSON, for recovery with
// OpenWithMasterKey when every passphrase is lost. Keep it secret.
func (r *Repository) ExportMasterKey(ctx context.Context) ([]byte, error) {
	if r.mk == nil {
		return nil, errors.New("repository is not encrypted: there is no master key")
	}
	return json.MarshalIndent(exportedKey{Format: "kura-master-key-1", RepositoryID: r.cfg.ID, MasterKey: r.mk.Bytes()}, "", "  ")
}

// OpenWithMasterKey opens an encrypted repository with an exported master key.
func OpenWithMasterKey(ctx context.Context, be storage.Backend, data []byte, opts OpenOptions) (*Repository, error) {
	var ek exportedKey
	if err := json.Unmarshal(data, &ek); err != nil || ek.Format != "kura-master-key-1" {
		return nil, errors.New("not a kura master key export")
	}
	cfg, err := readConfig(ctx, be)
	if err != nil {
		return nil, err
	}
	if ek.RepositoryID != cfg.ID && ek.RepositoryID != cfg.CopyOf {
		return nil, fmt.Errorf("master key belongs to repository %s, not %s", ek.RepositoryID, cfg.ID)
	}
	mk, err := crypto.MasterKeyFromBytes(ek.MasterKey)
	if err != nil {
		return nil, err
	}
	r := &Repository{be: be, cfg: cfg, mk: mk}
	if err := r.setup(opts); err != nil {
		return nil, err
	}
	return r, r.checkConfig()
}

func (r *Repository) workers() int {
	if r.opts.Workers > 0 {
		return r.opts.Workers
	}
	n := 2 * maxProcs()
	if c, ok := r.be.(storage.Concurrent); ok {
		n = max(n, min(c.Concurrency(), 16))
	}
	return n
}

// lockOptions are the options of every lock the repository takes.
func (r *Repository) lockOptions() []lock.Option {
	return []lock.Option{lock.WithLogger(r.log)}
}

// writeMin and writeMax are the write range checkWritable enforces (the
// constants; variables so that tests can narrow them).
var writeMin, writeMax = MinWriteVersion, MaxWriteVersion

// checkWritable refuses to change a repository whose format version this
// kura does not write (it may read it).
func (r *Repository) checkWritable() error {
	if v := r.cfg.Version; v < writeMin || v > writeMax {
		return fmt.Errorf("format version %d, this kura writes %d to %d: %w", v, writeMin, writeMax, ErrNotWritable)
	}
	return nil
}
