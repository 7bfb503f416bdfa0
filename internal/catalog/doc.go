// Package catalog is kura's index of what has been protected: the
// repositories it writes to, the virtual machines it has seen, the recovery
// points stored for them, and the jobs that produced them.
//
// The catalog is a cache, not the source of truth. Every recovery point is
// described by a manifest inside its repository; the catalog only makes
// listing and searching those points fast. It can always be rebuilt from the
// repositories (Rebuild), and after a restore of kura itself it is
// reconciled with the live inventory (MarkMissing flags VMs that no longer
// exist without forgetting their points).
//
// Storage is an embedded SQLite database (modernc.org/sqlite, pure Go) in
// WAL mode: any number of readers run while one writer commits. Inside one
// process all writes go through a single connection, so writers queue
// instead of failing with SQLITE_BUSY; across processes a busy timeout makes
// them wait for each other. Commits use synchronous=NORMAL: a power loss
// may drop the last few commits but never corrupts the file, a fair trade
// for a cache that Rebuild can refill.
//
// The schema is versioned. Open applies, in order and each in its own
// transaction, every migration the file has not seen yet, and refuses a file
// whose schema is newer than this binary knows (ErrSchemaTooNew) rather than
// risk misreading it.
//
// The package depends on nothing else in kura: it has its own record types
// (Repository, VM, Point, PointDisk, Job, JobVM), and the engine maps
// repository manifests to them.
//
// Times are stored as integer Unix nanoseconds in UTC and come back in UTC;
// a zero time.Time is stored as NULL and comes back as the zero time.
package catalog
