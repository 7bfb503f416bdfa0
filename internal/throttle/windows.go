// Package throttle limits the bandwidth of backup reads, with limits that
// follow time windows ("50 MB/s Mon–Fri 08:00–18:00, unlimited otherwise").
//
// A Config (days, hours and limits as written in kura.yaml) compiles into
// a Schedule, which says which rate is in effect at an instant and until
// when. A Limiter is a token bucket with a small burst whose rate follows
// a Schedule as time passes; one Limiter is shared by every reader it
// limits (the limit is per server or per group, not per disk), and
// ReaderAt wraps a disk reader with it. Time comes from an injectable
// Clock.
package throttle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even on hosts without /usr/share/zoneinfo
)

// ErrInvalid is wrapped by every validation error (see FieldError).
var ErrInvalid = errors.New("invalid bandwidth limit")

// FieldError says which field of a Config is wrong ("windows[1].hours").
type FieldError struct {
	Field string
	Value string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s %q: %v", e.Field, e.Value, e.Err) }

// Unwrap returns ErrInvalid and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// Window is a limit that applies on some days during some hours, local
// time: {days: mon-fri, hours: "08:00-18:00", limit: 50MB/s}.
type Window struct {
	// Days: "mon-fri", "sat,sun", "mon,wed-fri", "daily" or "" (every day).
	Days string `yaml:"days,omitempty" json:"days,omitempty"`
	// Hours: "08:00-18:00"; "22:00-06:00" runs past midnight (into the next
	// day, which need not be listed); "" is the whole day.
	Hours string `yaml:"hours,omitempty" json:"hours,omitempty"`
	// Limit is the rate during the window (0: unlimited).
	Limit Rate `yaml:"limit" json:"limit"`
}

// Config is a bandwidth limit and the windows that override it, as a
// group's "bandwidth" in kura.yaml. When windows overlap, the lowest limit
// of those in effect applies.
type Config struct {
	// Limit applies outside every window (0: unlimited).
	Limit   Rate     `yaml:"limit,omitempty" json:"limit,omitempty"`
	Windows []Window `yaml:"windows,omitempty" json:"windows,omitempty"`
	// Timezone of the windows (IANA name; empty: the server's local zone).
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
}

// Schedule is a compiled Config; it is immutable.
type Schedule struct {
	def     Rate
	windows []window
	loc     *time.Location
}

type window struct {
	days     uint8 // bit per time.Weekday
	from, to int   // minutes of the day; to may be 1440, or below from (past midnight)
	limit    Rate
}

// horizon is how far At looks for the next change.
const horizon = 8 * 24 * time.Hour

// Unlimited is a schedule that never limits.
func Unlimited() *Schedule { return &Schedule{loc: time.UTC} }

// Compile checks c and returns its Schedule. Errors are *FieldError.
func (c Config) Compile() (*Schedule, error) {
	s := &Schedule{def: c.Limit, loc: time.Local}
	if c.Limit < 0 {
		return nil, &FieldError{"limit", c.Limit.String(), errors.New("negative")}
	}
	if c.Timezone != "" {
		loc, err := time.LoadLocation(c.Timezone)
		if err != nil {
			return nil, &FieldError{"timezone", c.Timezone, errors.New("unknown time zone: use an IANA name such as Europe/Berlin")}
		}
		s.loc = loc
	}
	for i, w := range c.Windows {
		bad := func(field, value string, err error) (*Schedule, error) {
			return nil, &FieldError{fmt.Sprintf("windows[%d].%s", i, field), value, err}
		}
		days, err := parseDays(w.Days)
		if err != nil {
			return bad("days", w.Days, err)
		}
		from, to, err := parseHours(w.Hours)
		if err != nil {
			return bad("hours", w.Hours, err)
		}
		if w.Limit < 0 {
			return bad("limit", w.Limit.String(), errors.New("negative"))
		}
		s.windows = append(s.windows, window{days: days, from: from, to: to, limit: w.Limit})
	}
	return s, nil
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseDays parses "mon-fri,sun" into a weekday bit set. Ranges may wrap
// ("fri-mon").
func parseDays(s string) (uint8, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "daily" || s == "*" {
		return 0x7f, nil
	}
	day := func(n string) (int, error) {
		for i, d := range dayNames {
			if strings.TrimSpace(n) == d {
				return i, nil
			}
		}
		return 0, fmt.Errorf("%q is not a day (mon, tue, wed, thu, fri, sat, sun)", n)
	}
	var set uint8
	for _, item := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(item, "-")
		lo, err := day(a)
		if err != nil {
			return 0, err
		}
		hi := lo
		if isRange {
			if hi, err = day(b); err != nil {
				return 0, err
			}
		}
		for d := lo; ; d = (d + 1) % 7 {
			set |= 1 << d
			if d == hi {
				break
			}
		}
	}
	return set, nil
}

// parseHours parses "08:00-18:00" into minutes of the day.
func parseHours(s string) (int, int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 24 * 60, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errors.New("write hours as HH:MM-HH:MM (08:00-18:00)")
	}
	from, err := parseClock(a)
	if err != nil {
		return 0, 0, err
	}
	to, err := parseClock(b)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case from == 24*60:
		return 0, 0, errors.New("a window starts at 23:59 at the latest")
	case from == to:
		return 0, 0, errors.New("the window is empty (from equals to)")
	}
	return from, to, nil
}

func parseClock(s string) (int, error) {
	s = strings.TrimSpace(s)
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(mm) != 2 || h < 0 || m < 0 || m > 59 || h > 24 || h == 24 && m != 0 {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 24:00)", s)
	}
	return h*60 + m, nil
}

// At returns the rate in effect at t and the instant it may next change
// (at most eight days ahead).
func (s *Schedule) At(t time.Time) (Rate, time.Time) {
	next := t.Add(horizon)
	if len(s.windows) == 0 {
		return s.def, next
	}
	lt := t.In(s.loc)
	y, mo, d := lt.Date()
	active, rate := false, Rate(0)
	for dd := -1; dd <= 8; dd++ {
		wd := time.Weekday((int(lt.Weekday()) + dd + 7) % 7)
		for _, w := range s.windows {
			if w.days&(1<<wd) == 0 {
				continue
			}
			to := w.to
			if to <= w.from {
				to += 24 * 60
			}
			start := time.Date(y, mo, d+dd, 0, w.from, 0, 0, s.loc)
			end := time.Date(y, mo, d+dd, 0, to, 0, 0, s.loc)
			if !t.Before(start) && t.Before(end) {
				if !active || lower(w.limit, rate) {
					rate = w.limit
				}
				active = true
			}
			for _, b := range []time.Time{start, end} {
				if b.After(t) && b.Before(next) {
					next = b
				}
			}
		}
	}
	if !active {
		rate = s.def
	}
	return rate, next
}

// lower reports whether a limits more than b (0 is unlimited).
func lower(a, b Rate) bool { return a != 0 && (b == 0 || a < b) }
