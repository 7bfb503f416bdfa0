package s3

import (
	"context"
	"fmt"
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
