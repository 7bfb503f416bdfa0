// Package schedule evaluates the schedules of protection groups: when a
// run is due, which runs were missed and why, and when the server next
// needs to wake up.
//
// A Spec is a schedule as configured: a five-field cron expression (or a
// macro such as @daily) in an IANA time zone, or an interval ("every: 4h")
// anchored to the Unix epoch; an optional start window; and a catch-up
// policy for runs missed while the server was down. Spec.Compile validates
// it (errors are *FieldError naming the YAML key) and returns a Schedule,
// whose Next gives the next firing time.
//
// Cron times are wall-clock times. When a DST change repeats an hour, a
// time in it fires once, at its first occurrence; when a DST change skips
// an hour, the times in it fire once, at the end of the gap. Intervals are
// elapsed time and ignore DST. docs/design/scheduling.md has the rules.
//
// A Planner holds many schedules (800 groups × 3 schedules at DPM's
// scale) and, given the time, says what is due, what was missed and when
// to wake. It has no goroutine and no clock of its own: the server's loop
// calls it with its (injectable) clock and records what it acted on in a
// Store it implements over its catalog.
package schedule
