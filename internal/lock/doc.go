// Package lock implements repository locks on top of a storage.Backend,
// which offers no compare-and-swap.
//
// A lock is an object "locks/<kind>-<16 hex random>" holding JSON (kind,
// host, pid, created, refreshed, data). Five kinds exist:
//
//	Shared    ("backup")    excludes Exclusive only
//	Read      ("read")      excludes Exclusive only (reader leases)
//	Prune     ("prune")     excludes GC and Exclusive
//	GC        ("gc")        excludes GC, Prune and Exclusive
//	Exclusive ("exclusive") excludes every other lock
//
// Versions of kura before reader leases know only backup, gc and exclusive
// and ignore lock objects of other kinds.
//
// # Acquire protocol
//
// Acquire first writes its own lock object, then lists "locks/" and reads
// every other lock. If any non-stale lock conflicts with its kind, it
// deletes its own object and fails with an error wrapping ErrLocked that
// names the holder; with WithWait it retries after a randomised, growing
// delay until the wait time is used up.
//
// Two racing acquirers can never both win: each lists only after its own
// Put returned, and backends guarantee read-after-write for List, so
// whichever of the two lists second sees the other's object. When both
// see each other, both back off (neither wins that round); the random
// retry delay makes a later round succeed. Winning requires having seen no
// conflicting lock, which is why the rule is safe without any ordering
// between hosts.
//
// # Liveness
//
// While held, a lock is rewritten every RefreshInterval (default 5 min)
// with a new "refreshed" time. A lock is stale, and ignored by Acquire,
// when it was not refreshed for StaleAfter (default 30 min), or when it
// was written on this host by a process that no longer exists (checked
// with kill(pid, 0) and /proc/<pid>/stat). Locks written in another PID
// namespace under the same host name would wrongly look stale by the
// second rule; run kura with distinct host names there. Staleness by time
// compares timestamps written by other hosts with the local clock, so
// hosts sharing a repository need roughly synchronised clocks (NTP).
// RemoveStale deletes stale locks. If the lock object disappears (removed as stale by
// someone else) or cannot be refreshed for StaleAfter, the holder sees it
// on Lost and must stop.
package lock
