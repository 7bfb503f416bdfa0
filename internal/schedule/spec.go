package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even on hosts without /usr/share/zoneinfo
)

// ErrInvalid is wrapped by every validation error (see FieldError).
var ErrInvalid = errors.New("invalid schedule")

// FieldError says which field of a Spec is wrong and why. Field is the
// YAML key ("cron", "every", "timezone", "window", "catch_up"), so a
// configuration loader can point at the line.
type FieldError struct {
	Field string
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", e.Field, e.Value, e.Err)
}

// Unwrap returns ErrInvalid and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// CatchUp says what happens to runs missed while the server was down.
type CatchUp string

const (
	// CatchUpOnce runs the newest missed run once at start (the default);
	// older ones are reported as missed.
	CatchUpOnce CatchUp = "once"
	// CatchUpSkip runs none of them and reports them as missed.
	CatchUpSkip CatchUp = "skip"
)

// Spec is a schedule as configured (a group's schedule in kura.yaml, or
// sent to the API). Exactly one of Cron and Every is set. Compile checks
// it and gives the Schedule that is evaluated.
type Spec struct {
	// Cron is a five-field cron expression ("30 2 * * mon-fri") or a
	// macro (@yearly, @monthly, @weekly, @daily, @hourly), evaluated in
	// Timezone.
	Cron string `yaml:"cron,omitempty" json:"cron,omitempty"`
	// Every is an interval (4h, 30m, 24h): runs at every multiple of it
	// since the Unix epoch (1970-01-01 00:00 UTC), whatever the time zone.
	Every time.Duration `yaml:"every,omitempty" json:"every,omitempty"`
	// Timezone is an IANA zone name ("Europe/Berlin"); empty is the
	// server's local zone.
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
	// Window is the start window (2h): a run that cannot start within it
	// after its due time is skipped and reported. 0: no limit.
	Window time.Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// CatchUp is "once" (default) or "skip".
	CatchUp string `yaml:"catch_up,omitempty" json:"catch_up,omitempty"`
}

// Schedule is a compiled Spec. It is immutable and safe for concurrent use.
type Schedule struct {
	spec    Spec
	loc     *time.Location
	cron    *cronExpr // nil for an interval
	every   time.Duration
	window  time.Duration
	catchUp CatchUp
}

// minEvery is the shortest interval accepted.
const minEvery = time.Minute

// Validate reports the first problem of s as a *FieldError, or nil.
func (s Spec) Validate() error {
	_, err := s.Compile()
	return err
}

// Compile checks s and returns its Schedule. Errors are *FieldError.
func (s Spec) Compile() (*Schedule, error) {
	return s.compile(time.LoadLocation)
}

func (s Spec) compile(load func(string) (*time.Location, error)) (*Schedule, error) {
	sc := &Schedule{spec: s, loc: time.Local, catchUp: CatchUpOnce}
	bad := func(field, value string, err error) (*Schedule, error) {
		return nil, &FieldError{Field: field, Value: value, Err: err}
	}
	switch {
	case s.Cron == "" && s.Every == 0:
		return bad("cron", "", errors.New("a schedule needs cron or every"))
	case s.Cron != "" && s.Every != 0:
		return bad("every", s.Every.String(), errors.New("give cron or every, not both"))
	case s.Cron != "":
		c, err := parseCron(s.Cron)
		if err != nil {
			return bad("cron", s.Cron, err)
		}
		sc.cron = c
	case s.Every < minEvery:
		return bad("every", s.Every.String(), fmt.Errorf("shorter than %v", minEvery))
	default:
		sc.every = s.Every
	}
	if s.Timezone != "" {
		loc, err := load(s.Timezone)
		if err != nil {
			return bad("timezone", s.Timezone, errors.New("unknown time zone: use an IANA name such as Europe/Berlin, America/New_York or UTC"))
		}
		sc.loc = loc
	}
	if s.Window < 0 {
		return bad("window", s.Window.String(), errors.New("negative"))
	}
	sc.window = s.Window
	switch CatchUp(s.CatchUp) {
	case "", CatchUpOnce:
	case CatchUpSkip:
		sc.catchUp = CatchUpSkip
	default:
		return bad("catch_up", s.CatchUp, errors.New("use once or skip"))
	}
	return sc, nil
}

// Next returns the first time s fires after after, or the zero time when s
// is invalid. For repeated use, Compile once and call Schedule.Next.
func (s Spec) Next(after time.Time) time.Time {
	sc, err := s.Compile()
	if err != nil {
		return time.Time{}
	}
	return sc.Next(after)
}

// Next returns the first time the schedule fires strictly after after, in
// the schedule's time zone. A cron wall-clock time that a DST change
// repeats fires once, at its first occurrence; times a DST change skips
// fire once, at the end of the gap.
func (sc *Schedule) Next(after time.Time) time.Time {
	if sc.cron != nil {
		return sc.cron.next(after, sc.loc)
	}
	// Floor division so times before 1970 work too.
	ns, d := after.UnixNano(), int64(sc.every)
	k := ns / d
	if ns%d < 0 {
		k--
	}
	return time.Unix(0, (k+1)*d).In(sc.loc)
}

// Spec returns the Spec the schedule was compiled from.
func (sc *Schedule) Spec() Spec { return sc.spec }

// Location returns the schedule's time zone.
func (sc *Schedule) Location() *time.Location { return sc.loc }

// Window returns the start window (0: none).
func (sc *Schedule) Window() time.Duration { return sc.window }

// CatchUp returns the catch-up policy.
func (sc *Schedule) CatchUp() CatchUp { return sc.catchUp }

// String describes the schedule ("cron 30 2 * * * Europe/Berlin").
func (sc *Schedule) String() string {
	var b strings.Builder
	if sc.cron != nil {
		fmt.Fprintf(&b, "cron %s %s", strings.TrimSpace(sc.spec.Cron), sc.loc)
	} else {
		fmt.Fprintf(&b, "every %s", sc.every)
	}
	if sc.window > 0 {
		fmt.Fprintf(&b, ", window %s", sc.window)
	}
	fmt.Fprintf(&b, ", catch-up %s", sc.catchUp)
	return b.String()
}
