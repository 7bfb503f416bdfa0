package throttle

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func berlin(t testing.TB, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestConfigFromYAML(t *testing.T) {
	src := `
timezone: Europe/Berlin
limit: unlimited
windows:
  - {days: mon-fri, hours: "08:00-18:00", limit: 50MB/s}
  - {days: fri, hours: "22:00-06:00", limit: 1GiB/s}
  - {days: "sat,sun", limit: 200000}
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if c.Windows[0].Limit != 50e6 || c.Windows[1].Limit != 1<<30 || c.Windows[2].Limit != 200000 || c.Limit != 0 {
		t.Fatalf("decoded %+v", c)
	}
	s, err := c.Compile()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		at    string
		rate  Rate
		until string
	}{
		{"2026-11-23 07:59", 0, "2026-11-23 08:00"},       // Monday, before the window
		{"2026-11-23 08:00", 50e6, "2026-11-23 18:00"},    // in it
		{"2026-11-23 18:00", 0, "2026-11-24 08:00"},       // after: until Tuesday's
		{"2026-11-27 23:00", 1 << 30, "2026-11-28 00:00"}, // Friday night; Saturday's window starts
		{"2026-11-28 03:00", 200000, "2026-11-28 06:00"},  // both: the lower wins
		{"2026-11-28 06:00", 200000, "2026-11-29 00:00"},  // Saturday, then Sunday's window
		{"2026-11-29 12:00", 200000, "2026-11-30 00:00"},  // Sunday
		{"2026-11-30 00:00", 0, "2026-11-30 08:00"},       // Monday again
		{"2026-10-25 02:30", 200000, "2026-10-26 00:00"},  // a DST day: Sunday 00:00-24:00 lasts 25 h
		{"2026-03-27 21:00", 0, "2026-03-27 22:00"},       // Friday evening, unlimited
		{"2026-03-27 22:00", 1 << 30, "2026-03-28 00:00"}, // the night window
		{"2026-03-28 02:00", 200000, "2026-03-28 06:00"},  // its morning, on Saturday
		{"2026-03-30 07:00", 0, "2026-03-30 08:00"},       // after the spring DST change
		{"2026-03-30 12:00", 50e6, "2026-03-30 18:00"},    // in the window
		{"2026-11-23 12:00", 50e6, "2026-11-23 18:00"},    // the same, in winter
		{"2026-11-25 17:59", 50e6, "2026-11-25 18:00"},    // Wednesday
		{"2026-11-26 09:00", 50e6, "2026-11-26 18:00"},    // Thursday
	}
	for _, c := range cases {
		rate, until := s.At(berlin(t, c.at))
		if rate != c.rate || !until.Equal(berlin(t, c.until)) {
			t.Errorf("at %s: %v until %v, want %v until %s", c.at, rate, until.In(s.loc).Format("2006-01-02 15:04"), c.rate, c.until)
		}
	}
}

func TestConfigJSONAndDefaults(t *testing.T) {
	var c Config
	if err := json.Unmarshal([]byte(`{"limit":"10MB/s","windows":[{"days":"daily","hours":"00:00-06:00","limit":"unlimited"}],"timezone":"UTC"}`), &c); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile()
	if err != nil {
		t.Fatal(err)
	}
	night := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	if r, u := s.At(night); r != 0 || !u.Equal(night.Add(3*time.Hour)) {
		t.Fatalf("night: %v until %v", r, u)
	}
	if r, u := s.At(night.Add(3 * time.Hour)); r != 10e6 || !u.Equal(night.Add(21*time.Hour)) {
		t.Fatalf("day: %v until %v", r, u)
	}
	if r, u := Unlimited().At(night); r != 0 || !u.Equal(night.Add(horizon)) {
		t.Fatalf("unlimited: %v %v", r, u)
	}
	out, _ := json.Marshal(c)
	if !strings.Contains(string(out), `"limit":"10MB/s"`) || !strings.Contains(string(out), `"limit":"unlimited"`) {
		t.Fatalf("json %s", out)
	}
}

func TestConfigErrors(t *testing.T) {
	w := func(days, hours string) Config {
		return Config{Windows: []Window{{Limit: 1e6}, {Days: days, Hours: hours, Limit: 1e6}}}
	}
	cases := []struct {
		c     Config
		field string
		want  string
	}{
		{w("mon-fry", ""), "windows[1].days", `"fry" is not a day`},
		{w("", "8-18"), "windows[1].hours", `"8" is not a time of day`},
		{w("", "08:00"), "windows[1].hours", "HH:MM-HH:MM"},
		{w("", "08:00-25:00"), "windows[1].hours", `"25:00" is not a time of day`},
		{w("", "24:00-06:00"), "windows[1].hours", "starts at 23:59 at the latest"},
		{w("", "08:00-08:00"), "windows[1].hours", "empty"},
		{w("", "08:60-09:00"), "windows[1].hours", "not a time of day"},
		{Config{Windows: []Window{{Limit: -1}}}, "windows[0].limit", "negative"},
		{Config{Limit: -5}, "limit", "negative"},
		{Config{Timezone: "Mars/Olympus"}, "timezone", "unknown time zone"},
	}
	for _, c := range cases {
		_, err := c.c.Compile()
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != c.field || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want field %s and %q", c.c, err, c.field, c.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	good := map[string]Rate{"50MB/s": 50e6, "1GiB/s": 1 << 30, "800KB/s": 800e3, "800 kB/s": 800e3, "1.5MiB": 1572864,
		"123": 123, "unlimited": 0, "0": 0, "2B/s": 2}
	for s, want := range good {
		if got, err := ParseRate(s); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "fast", "-1MB/s", "50Mb/s/s", "1e30GB/s", "NaN", "Inf", "+Inf MB/s"} {
		if r, err := ParseRate(s); err == nil {
			t.Errorf("%q parsed as %v", s, r)
		}
	}
	for r, want := range map[Rate]string{0: "unlimited", 50e6: "50MB/s", 800e3: "800KB/s", 1 << 30: "1073741824B/s"} {
		if r.String() != want {
			t.Errorf("%d: %s, want %s", int64(r), r, want)
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Errorf("%s does not read back: %v %v", r, back, err)
		}
	}
}
