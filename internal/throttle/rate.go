package throttle

import (
	"fmt"
	"strconv"
	"strings"
)

// Rate is a bandwidth in bytes per second; 0 is unlimited. As text it is
// "50MB/s", "1GiB/s", "800KB/s", a plain number of bytes per second, or
// "unlimited".
type Rate int64

var rateUnits = []struct {
	suffix string
	mult   float64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}}

// ParseRate reads a Rate.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if t == "unlimited" {
		return 0, nil
	}
	mult := 1.0
	for _, u := range rateUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v >= 0 && v*mult <= 1<<62) { // also NaN
		return 0, fmt.Errorf("%q is not a rate (50MB/s, 1GiB/s, unlimited)", s)
	}
	return Rate(v * mult), nil
}

// String formats r ("50MB/s", "unlimited").
func (r Rate) String() string {
	switch {
	case r == 0:
		return "unlimited"
	case r%1e6 == 0:
		return fmt.Sprintf("%dMB/s", r/1e6)
	case r%1e3 == 0:
		return fmt.Sprintf("%dKB/s", r/1e3)
	}
	return fmt.Sprintf("%dB/s", int64(r))
}

// MarshalText writes r as String does.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads r as ParseRate does (YAML and JSON strings).
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
