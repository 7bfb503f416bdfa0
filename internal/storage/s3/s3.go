// Package s3 is the storage.Backend for S3-compatible object stores
// (AWS S3, MinIO, Ceph RGW, versitygw, ...), registered as the "s3:"
// location scheme: s3:https://host[:port]/bucket[/prefix].
//
// Object "a/b" is the key <prefix>a/b, written with one PUT (atomic on
// S3: a reader sees the whole object or the previous state) whose payload
// hash the server checks. The store must give strong read-after-write
// consistency for PUT, DELETE and LIST, as AWS S3 has since 2020 and the
// other stores named above do; the repository's lock and gc protocols
// rely on it and on nothing else (no rename, no conditional writes).
//
// In a bucket with versioning (every Object Lock bucket), Delete removes
// every version of the key, so that gc and prune free space rather than
// stack delete markers; a version under retention makes it fail with
// storage.ErrRetained. The backend implements storage.Retainer (Object
// Lock in compliance mode) and storage.Counter.
//
// Every request is retried on transient errors with full-jitter
// exponential back-off, bounded per attempt by a timeout, and limited in
// rate and in parallelism (Config).
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kurabackup/kura/internal/storage"
)

func init() {
	storage.Register("s3", func(ctx context.Context, rest string, _ storage.OpenOptions) (storage.Backend, error) {
		cfg, err := ParseLocation(rest)
		if err != nil {
			return nil, err
		}
		return Open(ctx, cfg)
	})
}

// Backend stores objects in one bucket under one prefix.
type Backend struct {
	cfg       Config
	core      *minio.Core
	lim       *limits
	versioned bool
}

var (
	_ storage.Backend    = (*Backend)(nil)
	_ storage.Retainer   = (*Backend)(nil)
	_ storage.Counter    = (*Backend)(nil)
	_ storage.Concurrent = (*Backend)(nil)
)

// Open connects to the store and checks that the bucket exists.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Retries < 1 {
		cfg.Retries = 1
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = cfg.RetryBase
	}
	if cfg.creds == nil {
		cfg.creds = credentialsFromEnv()
	}
	tr, err := cfg.transport()
	if err != nil {
		return nil, err
	}
	core, err := minio.NewCore(cfg.Endpoint, &minio.Options{Creds: cfg.creds, Secure: cfg.Secure, Transport: tr,
		Region: cfg.Region, BucketLookup: cfg.Lookup, MaxRetries: 1})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	b := &Backend{cfg: cfg, core: core, lim: newLimits(&cfg)}
	// A wrong host or port fails in seconds, not after every retry.
	probeCfg := cfg
	probeCfg.Retries = min(cfg.Retries, 3)
	probe := newLimits(&probeCfg)
	var exists bool
	err = probe.do(ctx, opHead, func(ctx context.Context) (err error) {
		exists, err = core.BucketExists(ctx, cfg.Bucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("s3: open %s: %w", b.Location(), explain(err))
	}
	if !exists {
		return nil, fmt.Errorf("s3: bucket %q does not exist on %s: create it first (with Object Lock enabled for --immutable)", cfg.Bucket, cfg.Endpoint)
	}
	var vc minio.BucketVersioningConfiguration
	err = b.lim.do(ctx, opGet, func(ctx context.Context) (err error) {
		vc, err = core.GetBucketVersioning(ctx, cfg.Bucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("s3: versioning state of %s: %w", cfg.Bucket, explain(err))
	}
	b.versioned = vc.Status != ""
	return b, nil
}

// Location returns "s3:http[s]://host/bucket[/prefix]".
func (b *Backend) Location() string {
	scheme := "http"
	if b.cfg.Secure {
		scheme = "https"
	}
	loc := "s3:" + scheme + "://" + b.cfg.Endpoint + "/" + b.cfg.Bucket
	if b.cfg.Prefix != "" {
		loc += "/" + strings.TrimSuffix(b.cfg.Prefix, "/")
	}
	return loc
}

// Close releases idle connections.
func (b *Backend) Close() error { return nil }

// Concurrency is the number of requests allowed in flight when set with
// parallel=, else 0 (the repository's default applies).
func (b *Backend) Concurrency() int {
	if !b.cfg.parallelSet {
		return 0
	}
	return b.cfg.Parallel
}

// Requests returns the requests made since Open.
func (b *Backend) Requests() storage.RequestStats { return b.lim.stats() }

func (b *Backend) key(ctx context.Context, op, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("s3: %s %q: %w", op, name, err)
	}
	if err := storage.ValidName(name); err != nil {
		return "", fmt.Errorf("s3: %s: %w", op, err)
	}
	return b.cfg.Prefix + name, nil
}

// mapErr wraps err with the storage sentinel it corresponds to.
func mapErr(op, name string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3: %s %q: %w", op, name, err)
	}
	er := minio.ToErrorResponse(err)
	switch {
	case er.Code == "NoSuchKey" || er.Code == "NoSuchVersion" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket"):
		return fmt.Errorf("s3: %s %q: %w", op, name, storage.ErrNotFound)
	case er.Code == "InvalidRange" || er.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("s3: %s %q: %w", op, name, storage.ErrRange)
	case er.Code == "EntityTooLarge" || er.Code == "QuotaExceeded" || er.StatusCode == http.StatusInsufficientStorage:
		return fmt.Errorf("s3: %s %q: %w: %w", op, name, storage.ErrNoSpace, err)
	}
	return fmt.Errorf("s3: %s %q: %w", op, name, explain(err))
}

// explain adds advice to errors a user can fix.
func explain(err error) error {
	er := minio.ToErrorResponse(err)
	switch er.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("%w (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the credentials file)", err)
	case "AccessDenied":
		return fmt.Errorf("%w (the credentials lack a permission, or an object is locked)", err)
	}
	return err
}

// Put stores data with one PUT request.
func (b *Backend) Put(ctx context.Context, name string, data []byte) error {
	return b.put(ctx, name, data, time.Time{})
}

func (b *Backend) put(ctx context.Context, name string, data []byte, until time.Time) error {
	key, err := b.key(ctx, "put", name)
	if err != nil {
		return err
	}
	// The store checks the body against a CRC32C sent in a trailer (cheap
	// on both sides), rather than a SHA-256 in the signature.
	opts := minio.PutObjectOptions{DisableMultipart: true, ContentType: "application/octet-stream",
		DisableContentSha256: true, Checksum: minio.ChecksumCRC32C}
	if !until.IsZero() {
		opts.Mode, opts.RetainUntilDate = minio.Compliance, until.UTC()
	}
	err = b.lim.do(ctx, opPut, func(ctx context.Context) error {
		_, err := b.core.PutObject(ctx, b.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), "", "", opts)
		return err
	})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "AccessDenied" && b.retained(ctx, name) {
			return fmt.Errorf("s3: put %q: %w", name, storage.ErrRetained)
		}
		return mapErr("put", name, err)
	}
	b.lim.up.Add(int64(len(data)))
	return nil
}

// Get returns the whole object.
func (b *Backend) Get(ctx context.Context, name string) ([]byte, error) {
	key, err := b.key(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	var data []byte
	err = b.lim.do(ctx, opGet, func(ctx context.Context) error {
		data, err = b.read(ctx, key, minio.GetObjectOptions{}, -1)
		return err
	})
	if err != nil {
		return nil, mapErr("get", name, err)
	}
	return data, nil
}

// read fetches an object (or a range of it) and checks that the body is as
// long as announced (want, or the object's size when want < 0).
func (b *Backend) read(ctx context.Context, key string, opts minio.GetObjectOptions, want int64) ([]byte, error) {
	body, oi, _, err := b.core.GetObject(ctx, b.cfg.Bucket, key, opts)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	n := oi.Size
	if want >= 0 {
		if oi.Size >= 0 && oi.Size < want {
			// The store clips a range that runs past the end.
			return nil, errPastEnd
		}
		n = want
	}
	if n < 0 || n > 1<<30 {
		return nil, fmt.Errorf("object size %d out of bounds", n)
	}
	data := make([]byte, n)
	got, err := io.ReadFull(body, data)
	b.lim.down.Add(int64(got))
	if err != nil {
		return nil, fmt.Errorf("read body (%d of %d bytes): %w: %w", got, n, errShort, err)
	}
	return data, nil
}

// GetRange returns length bytes at offset.
func (b *Backend) GetRange(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	key, err := b.key(ctx, "getrange", name)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 || offset > 1<<62 || length > 1<<62 {
		return nil, fmt.Errorf("s3: getrange %q [%d,+%d): %w", name, offset, length, storage.ErrRange)
	}
	if length == 0 {
		// Nothing to fetch, but the object must exist and reach offset.
		oi, err := b.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		if offset > oi.Size {
			return nil, fmt.Errorf("s3: getrange %q [%d,+0) of %d bytes: %w", name, offset, oi.Size, storage.ErrRange)
		}
		return []byte{}, nil
	}
	var data []byte
	err = b.lim.do(ctx, opGet, func(ctx context.Context) error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(offset, offset+length-1); err != nil {
			return err
		}
		data, err = b.read(ctx, key, opts, length)
		return err
	})
	if errors.Is(err, errPastEnd) {
		return nil, fmt.Errorf("s3: getrange %q [%d,+%d): %w", name, offset, length, storage.ErrRange)
	}
	if err != nil {
		return nil, mapErr("getrange", name, err)
	}
	return data, nil
}

// errPastEnd is a range that the object does not cover entirely.
var errPastEnd = errors.New("range past the end of the object")

// Stat returns size, modification time and retention date.
func (b *Backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	key, err := b.key(ctx, "stat", name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	var oi minio.ObjectInfo
	err = b.lim.do(ctx, opHead, func(ctx context.Context) (err error) {
		oi, err = b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return storage.ObjectInfo{}, mapErr("stat", name, err)
	}
	info := storage.ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}
	if v := oi.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			info.RetainUntil = t
		}
	}
	return info, nil
}

// List pages through the keys under prefix, a thousand at a time, calling
// fn as they arrive: memory stays bounded whatever the number of objects.
// A listing broken by a transient error resumes after the last key
// delivered (S3 lists keys in order), so fn never sees a name twice.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: list %q: %w", prefix, err)
	}
	if err := storage.ValidPrefix(prefix); err != nil {
		return fmt.Errorf("s3: list: %w", err)
	}
	after := ""
	var fnErr error
	err := b.lim.do(ctx, opList, func(context.Context) error {
		// The listing as a whole is not bound by the attempt timeout (a
		// million keys take longer); a stuck page is, by the transport's
		// response header timeout.
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		opts := minio.ListObjectsOptions{Prefix: b.cfg.Prefix + prefix, Recursive: true, StartAfter: after, MaxKeys: 1000}
		for oi := range b.core.Client.ListObjects(lctx, b.cfg.Bucket, opts) {
			if oi.Err != nil {
				return oi.Err
			}
			name := strings.TrimPrefix(oi.Key, b.cfg.Prefix)
			after = oi.Key
			if storage.ValidName(name) != nil {
				continue // not an object of ours (a directory marker, a foreign key)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(storage.ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
				fnErr = err
				return errStopped
			}
		}
		return ctx.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return mapErr("list", prefix, err)
	}
	return nil
}

// errStopped ends a listing whose fn failed; it is never retried.
var errStopped = errors.New("listing stopped by its caller")

// Delete removes the object (every version of it in a versioned bucket).
func (b *Backend) Delete(ctx context.Context, name string) error {
	key, err := b.key(ctx, "delete", name)
	if err != nil {
		return err
	}
	if b.versioned {
		return b.deleteVersions(ctx, name, key)
	}
	if _, err := b.Stat(ctx, name); err != nil {
		return err
	}
	return b.removeVersion(ctx, name, key, "")
}

func (b *Backend) removeVersion(ctx context.Context, name, key, version string) error {
	err := b.lim.do(ctx, opDelete, func(ctx context.Context) error {
		return b.core.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{VersionID: version})
	})
	if err == nil {
		return nil
	}
	if minio.ToErrorResponse(err).Code == "AccessDenied" && b.retained(ctx, name) {
		return fmt.Errorf("s3: delete %q: %w", name, storage.ErrRetained)
	}
	return mapErr("delete", name, err)
}

// deleteVersions deletes every version of key, newest first. An object
// whose latest version is a delete marker (or that has none) is missing.
func (b *Backend) deleteVersions(ctx context.Context, name, key string) error {
	type ver struct {
		id     string
		marker bool
	}
	var vers []ver
	latestMarker := false
	err := b.lim.do(ctx, opList, func(actx context.Context) error {
		vers = vers[:0]
		opts := minio.ListObjectsOptions{Prefix: key, WithVersions: true, Recursive: true}
		for oi := range b.core.Client.ListObjects(actx, b.cfg.Bucket, opts) {
			if oi.Err != nil {
				return oi.Err
			}
			if oi.Key != key {
				continue
			}
			if oi.IsLatest {
				latestMarker = oi.IsDeleteMarker
			}
			vers = append(vers, ver{oi.VersionID, oi.IsDeleteMarker})
		}
		return nil
	})
	if err != nil {
		return mapErr("delete", name, err)
	}
	if len(vers) == 0 || latestMarker {
		return fmt.Errorf("s3: delete %q: %w", name, storage.ErrNotFound)
	}
	for _, v := range vers {
		if err := b.removeVersion(ctx, name, key, v.id); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return nil
}
