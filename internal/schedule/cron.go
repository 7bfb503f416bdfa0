package schedule

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// cronExpr is a parsed five-field cron expression. Each field is a bit set
// of the values it matches; days of the week use bits 0 (Sunday) to 6.
type cronExpr struct {
	minute, hour, dom, month, dow uint64
	// domStar and dowStar record a field that starts with "*": as in
	// Vixie cron, when both day fields are restricted a day matches
	// either of them, otherwise both (the unrestricted one matches all).
	domStar, dowStar bool
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is the value min+i ("sun" is 0)
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

var cronMacros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// maxCronLen bounds what the parser looks at.
const maxCronLen = 1024

// parseCron parses a five-field cron expression or a macro. Errors name the
// field and the part of it that is wrong.
func parseCron(expr string) (*cronExpr, error) {
	if len(expr) > maxCronLen {
		return nil, fmt.Errorf("longer than %d characters", maxCronLen)
	}
	s := strings.TrimSpace(expr)
	if strings.HasPrefix(s, "@") {
		m, ok := cronMacros[strings.ToLower(s)]
		switch {
		case ok:
			s = m
		case strings.HasPrefix(strings.ToLower(s), "@every"):
			return nil, fmt.Errorf("%q is not a cron expression: write the interval as every: DURATION", s)
		default:
			return nil, fmt.Errorf("unknown macro %q (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", s)
		}
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return nil, fmt.Errorf("%d fields, want 5: minute hour day-of-month month day-of-week (e.g. \"30 2 * * *\")", len(fields))
	}
	var c cronExpr
	masks := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, f := range fields {
		m, err := cronFields[i].parse(f)
		if err != nil {
			return nil, fmt.Errorf("field %d (%s) %q: %w", i+1, cronFields[i].name, f, err)
		}
		*masks[i] = m
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar = strings.HasPrefix(fields[2], "*")
	c.dowStar = strings.HasPrefix(fields[4], "*")
	// A schedule that never fires (day 30 of February) is an error, not a
	// silent never. Nine years from a leap year's start cover every date.
	if _, ok := c.nextCivil(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); !ok {
		return nil, fmt.Errorf("never matches a date (day %s of month %s does not exist)", fields[2], fields[3])
	}
	return &c, nil
}

// parse parses one field: a comma-separated list of "*", "N", "N-M", each
// optionally followed by "/STEP" ("N/STEP" means N to the maximum).
func (f cronField) parse(s string) (uint64, error) {
	var mask uint64
	for _, item := range strings.Split(s, ",") {
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n <= 0 || strings.HasPrefix(stepStr, "+") {
				return 0, fmt.Errorf("step %q is not a positive number", stepStr)
			}
			if n > f.top()-f.min+1 {
				return 0, fmt.Errorf("step %d is larger than the range %d-%d", n, f.min, f.top())
			}
			step = n
		}
		var lo, hi int
		switch {
		case rng == "*":
			lo, hi = f.min, f.top()
		case rng == "":
			return 0, fmt.Errorf("empty list item")
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			hi = lo
			if isRange {
				if hi, err = f.value(b); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("range %s is backwards (write it as two ranges)", rng)
				}
			} else if hasStep {
				hi = f.top()
			}
		}
		for v := lo; v <= hi; v += step {
			mask |= 1 << uint(v)
		}
	}
	return mask, nil
}

// top is the largest value "*" and "N/STEP" reach (Saturday for days of
// the week: 7 is only another name for Sunday).
func (f cronField) top() int {
	if f.max == 7 {
		return 6
	}
	return f.max
}

// value parses a number or a name within the field's range.
func (f cronField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") {
		if f.names != nil {
			return 0, fmt.Errorf("%q is not a number or a name (%s..%s)", s, f.names[0], f.names[len(f.names)-1])
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// nextBit returns the smallest set bit of mask at or above from.
func nextBit(mask uint64, from int) (int, bool) {
	m := mask &^ (1<<uint(from) - 1)
	if m == 0 {
		return 0, false
	}
	return bits.TrailingZeros64(m), true
}

func (c *cronExpr) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// nextCivil returns the first wall-clock minute at or after t that matches,
// with wall-clock times represented in UTC (no gaps, no repeats). It gives
// up after nine years, which means the expression never matches.
func (c *cronExpr) nextCivil(t time.Time) (time.Time, bool) {
	limit := t.Year() + 9
	for t.Year() <= limit {
		y, mo, d := t.Date()
		if c.month&(1<<uint(mo)) == 0 {
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.dayMatches(t) {
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		h, ok := nextBit(c.hour, t.Hour())
		if !ok {
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		from := 0
		if h == t.Hour() {
			from = t.Minute()
		}
		m, ok := nextBit(c.minute, from)
		if !ok {
			t = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
			continue
		}
		return time.Date(y, mo, d, h, m, 0, 0, time.UTC), true
	}
	return time.Time{}, false
}

// next returns the first firing instant after after in loc. Wall-clock
// times repeated by a DST change fire at their first occurrence only;
// wall-clock times skipped by one fire once, at the end of the gap.
func (c *cronExpr) next(after time.Time, loc *time.Location) time.Time {
	la := after.In(loc)
	civil := time.Date(la.Year(), la.Month(), la.Day(), la.Hour(), la.Minute(), 0, 0, time.UTC).Add(time.Minute)
	// A repeated hour holds at most 60 minutes already fired; gaps collapse
	// into one instant. More iterations than that cannot happen.
	for range 200 {
		var ok bool
		if civil, ok = c.nextCivil(civil); !ok {
			return time.Time{}
		}
		if t := wallInstant(civil, loc); t.After(after) {
			return t
		}
		civil = civil.Add(time.Minute)
	}
	return time.Time{}
}

// wallInstant maps a wall-clock time (given in UTC) to an instant in loc:
// the first occurrence when the time is repeated, the end of the gap when
// it is skipped.
func wallInstant(civil time.Time, loc *time.Location) time.Time {
	t := time.Date(civil.Year(), civil.Month(), civil.Day(), civil.Hour(), civil.Minute(), 0, 0, loc)
	got := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
	switch {
	case got.Equal(civil):
		start, _ := t.ZoneBounds()
		if start.IsZero() {
			return t
		}
		_, off := t.Zone()
		_, prev := start.Add(-time.Nanosecond).Zone()
		if delta := time.Duration(prev-off) * time.Second; delta > 0 && t.Sub(start) < delta {
			return t.Add(-delta) // the same wall time in the zone before the change
		}
		return t
	case got.After(civil): // normalized past the gap: the gap ends where t's zone starts
		start, _ := t.ZoneBounds()
		return start
	default: // normalized before the gap: it ends where t's zone ends
		_, end := t.ZoneBounds()
		return end
	}
}
