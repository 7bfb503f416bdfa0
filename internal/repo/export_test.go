package repo

import (
	"context"
	"encoding/json"

	"github.com/kurabackup/kura/internal/lock"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func lockAcquireGC(ctx context.Context, r *Repository) (*lock.Lock, error) {
	return lock.Acquire(ctx, r.be, lock.GC, nil)
}
