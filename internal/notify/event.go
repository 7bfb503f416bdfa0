package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// EventKind names what happened. The values are part of the webhook schema
// and of the configuration: they never change meaning.
type EventKind string

// Event kinds.
const (
	// JobSucceeded: a job ended Completed.
	JobSucceeded EventKind = "job-succeeded"
	// JobPartial: a job ended PartiallyFailed (some VMs failed).
	JobPartial EventKind = "job-partial"
	// JobFailed: a job ended Failed (or was interrupted).
	JobFailed EventKind = "job-failed"
	// RPOMissed: a VM's newest good point is older than its group's RPO.
	RPOMissed EventKind = "rpo-missed"
	// VerifyProblem: verification found damaged or missing data.
	VerifyProblem EventKind = "verify-problem"
	// RepositoryFull: a repository is nearly full.
	RepositoryFull EventKind = "repository-full"
	// RunMissed: scheduled runs did not happen (server down, or no start
	// within the window).
	RunMissed EventKind = "run-missed"
	// DailySummary: the once-a-day report.
	DailySummary EventKind = "daily-summary"
	// Test: a test notification ("send test notification").
	Test EventKind = "test"
)

// Kinds lists every event kind, in documentation order.
var Kinds = []EventKind{JobSucceeded, JobPartial, JobFailed, RPOMissed, VerifyProblem, RepositoryFull, RunMissed, DailySummary, Test}

// Valid reports whether k is a known event kind.
func (k EventKind) Valid() bool { return slices.Contains(Kinds, k) }

// Severity is how urgent an event is: "info", "warning" or "error".
type Severity string

// Severities.
const (
	Info    Severity = "info"
	Warning Severity = "warning"
	Error   Severity = "error"
)

// Severity returns the severity events of kind k carry.
func (k EventKind) Severity() Severity {
	switch k {
	case JobFailed, VerifyProblem:
		return Error
	case JobPartial, RPOMissed, RepositoryFull, RunMissed:
		return Warning
	}
	return Info
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// Event is something worth telling an administrator. Kind is required;
// the other fields are optional context. Events about a protection group
// set Group; server-wide events (a repository, the daily summary) may leave
// it empty (see Rule for how that matches).
type Event struct {
	Kind EventKind
	// Time is when it happened; zero means when Notify is called.
	Time time.Time
	// Group, VM, Job and Repository say what it is about.
	Group, VM, Job, Repository string
	// Subject is a one-line summary; empty gives one made from the kind
	// and the context.
	Subject string
	// Text is the human-readable body (plain text, several lines allowed).
	Text string
	// Data holds kind-specific details; values must encode as JSON.
	Data map[string]any
}

// subject returns ev.Subject, or a summary made from the kind and context.
func (ev Event) subject() string {
	if ev.Subject != "" {
		return ev.Subject
	}
	s := strings.ReplaceAll(string(ev.Kind), "-", " ")
	var ctx []string
	for _, f := range []struct{ name, v string }{{"group", ev.Group}, {"VM", ev.VM}, {"job", ev.Job}, {"repository", ev.Repository}} {
		if f.v != "" {
			ctx = append(ctx, f.name+" "+f.v)
		}
	}
	if len(ctx) > 0 {
		s += ": " + strings.Join(ctx, ", ")
	}
	return s
}

func (ev Event) validate() error {
	if !ev.Kind.Valid() {
		return fmt.Errorf("%w: unknown kind %q (known: %s)", ErrInvalidEvent, ev.Kind, kindList())
	}
	return nil
}
