package s3

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// RetentionSupported reports whether the bucket has Object Lock enabled.
// A bucket with a default retention rule is refused: kura sets every
// object's retention itself, and a default rule would lock its lock files
// and gc markers too.
func (b *Backend) RetentionSupported(ctx context.Context) (bool, error) {
	var enabled string
	var mode *minio.RetentionMode
	var validity *uint
	err := b.lim.do(ctx, opGet, func(ctx context.Context) (err error) {
		enabled, mode, validity, _, err = b.core.GetObjectLockConfig(ctx, b.cfg.Bucket)
		return err
	})
	if err != nil {
		code := minio.ToErrorResponse(err).Code
		if code == "ObjectLockConfigurationNotFoundError" || code == "NoSuchObjectLockConfiguration" {
			return false, nil
		}
		return false, fmt.Errorf("s3: object lock configuration of %s: %w", b.cfg.Bucket, explain(err))
	}
	if enabled != "Enabled" {
		return false, nil
	}
	if mode != nil && *mode != "" && validity != nil && *validity > 0 {
		return false, fmt.Errorf("s3: bucket %s has a default retention rule (%s, %d): remove it, kura sets each object's retention itself", b.cfg.Bucket, *mode, *validity)
	}
	return true, nil
}

// PutRetained stores data locked in compliance mode until until.
func (b *Backend) PutRetained(ctx context.Context, name string, data []byte, until time.Time) error {
	if until.IsZero() {
		return fmt.Errorf("s3: put %q: zero retention date", name)
	}
	return b.put(ctx, name, data, until)
}

// ExtendRetention sets the object's compliance retention to until unless
// it is already later. The caller usually knows the current date from
// Stat; when it does not, the store refuses a shortening anyway.
func (b *Backend) ExtendRetention(ctx context.Context, name string, until time.Time) error {
	key, err := b.key(ctx, "extend retention", name)
	if err != nil {
		return err
	}
	u := until.UTC().Truncate(time.Second)
	if !until.Equal(u) {
		u = u.Add(time.Second) // never round a retention down
	}
	mode := minio.Compliance
	err = b.lim.do(ctx, opRetention, func(ctx context.Context) error {
		return b.core.PutObjectRetention(ctx, b.cfg.Bucket, key, minio.PutObjectRetentionOptions{Mode: &mode, RetainUntilDate: &u})
	})
	if err == nil {
		return nil
	}
	if minio.ToErrorResponse(err).Code == "AccessDenied" {
		// Refused as a shortening: fine if the date already covers until.
		if oi, serr := b.Stat(ctx, name); serr == nil && !oi.RetainUntil.Before(u) {
			return nil
		}
	}
	return mapErr("extend retention", name, err)
}

// retained reports whether the object's retention is in the future.
func (b *Backend) retained(ctx context.Context, name string) bool {
	oi, err := b.Stat(ctx, name)
	return err == nil && oi.RetainUntil.After(time.Now())
}

// Unhide brings back locked versions hidden by later versions or delete
// markers (see storage.Unhider). It lists every version under the prefix
// once, remembering only the keys that have a delete marker or an older
// version (stores need not list a key's versions together), then lists
// each of those keys' versions and HEADs them.
func (b *Backend) Unhide(ctx context.Context) ([]string, error) {
	if !b.versioned {
		return nil, nil
	}
	suspects := map[string]bool{}
	err := b.lim.do(ctx, opList, func(actx context.Context) error {
		opts := minio.ListObjectsOptions{Prefix: b.cfg.Prefix, WithVersions: true, Recursive: true}
		for oi := range b.core.Client.ListObjects(ctx, b.cfg.Bucket, opts) {
			if oi.Err != nil {
				return oi.Err
			}
			if oi.IsDeleteMarker || !oi.IsLatest {
				suspects[oi.Key] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("s3: unhide: list versions: %w", explain(err))
	}
	keys := make([]string, 0, len(suspects))
	for k := range suspects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var restored []string
	for _, key := range keys {
		ok, err := b.unhideKey(ctx, key)
		if err != nil {
			return restored, err
		}
		if ok {
			restored = append(restored, strings.TrimPrefix(key, b.cfg.Prefix))
		}
	}
	return restored, nil
}

// lockedNames are the prefixes of the objects an immutable repository
// stores locked; Unhide touches no other key.
var lockedNames = []string{"chunks/", "indexes/", "points/", "keys/", "config"}

// unhideKey removes, newest first, the versions and delete markers of key
// until the store refuses to remove one (it is locked: the newest locked
// version, now current again). It never removes the oldest version, so an
// object whose locks all expired keeps its first content. It reports
// whether it removed something.
func (b *Backend) unhideKey(ctx context.Context, key string) (bool, error) {
	name := strings.TrimPrefix(key, b.cfg.Prefix)
	if !slices.ContainsFunc(lockedNames, func(p string) bool { return strings.HasPrefix(name, p) }) {
		return false, nil
	}
	type version struct {
		id     string
		marker bool
	}
	var vers []version
	err := b.lim.do(ctx, opList, func(actx context.Context) error {
		vers = vers[:0]
		for oi := range b.core.Client.ListObjects(actx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true, Recursive: true}) {
			if oi.Err != nil {
				return oi.Err
			}
			if oi.Key == key {
				vers = append(vers, version{oi.VersionID, oi.IsDeleteMarker})
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("s3: unhide %s: %w", key, explain(err))
	}
	// S3 lists a key's versions newest first (modification times are not
	// precise enough to order them: versitygw rounds some to seconds). The
	// store itself says which version is locked, by refusing its removal:
	// a HEAD of an older version may not show its retention (versitygw).
	oldest := -1
	for i, v := range vers {
		if !v.marker {
			oldest = i
		}
	}
	removed := false
	for i, v := range vers {
		if i == oldest {
			break
		}
		err := b.lim.do(ctx, opDelete, func(ctx context.Context) error {
			return b.core.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{VersionID: v.id})
		})
		if minio.ToErrorResponse(err).Code == "AccessDenied" {
			break // locked: this version stays current
		}
		if err != nil {
			return removed, fmt.Errorf("s3: unhide %s: %w", name, explain(err))
		}
		removed = true
	}
	return removed && oldest >= 0, nil
}
