// Package progress reports the progress of long operations (backup,
// restore, verify, garbage collection, export) as a stream of Events.
//
// Producers (the engine) emit events to a Sink and never care how they are
// shown. Sinks provided here:
//
//   - JSONSink writes one JSON object per line, for scripts (kura --json);
//   - Terminal draws live per-disk lines on a terminal, redrawn in place at
//     most about ten times a second, and prints only start, done and
//     failure lines when the output is not a terminal (logs, pipes);
//   - Multi fans events out to several sinks; Nop drops them.
//
// Every sink is safe for concurrent use: a backup job emits from one
// goroutine per VM or disk.
//
// Rate turns a series of (time, bytes done) samples into a moving-window
// throughput and an ETA; its clock is injectable so tests are exact.
// FormatBytes, FormatRate and FormatDuration give the human forms used in
// the terminal output ("1.5 GiB", "350 MB/s", "0:19").
package progress
