package progress

import (
	"fmt"
	"math"
	"time"
)

// FormatBytes formats n with binary (IEC) units and one decimal: "512 B",
// "1.5 KiB", "8.0 GiB".
func FormatBytes(n int64) string {
	if n < 0 {
		if n == math.MinInt64 {
			return "-8.0 EiB"
		}
		return "-" + FormatBytes(-n)
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	const units = "KMGTPE"
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	// Rounding may reach 1024.0: show the next unit instead.
	if v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// FormatRate formats a throughput in bytes per second with decimal (SI)
// units, as disks and networks are rated: "350 MB/s", "12.5 MB/s",
// "1.2 GB/s". Negative, NaN or infinite rates give "-- B/s".
func FormatRate(bps float64) string {
	if bps < 0 || math.IsNaN(bps) || math.IsInf(bps, 0) {
		return "-- B/s"
	}
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	i := 0
	for bps >= 999.5 && i < len(units)-1 {
		bps /= 1000
		i++
	}
	if bps >= 99.95 || i == 0 {
		return fmt.Sprintf("%.0f %s/s", bps, units[i])
	}
	return fmt.Sprintf("%.1f %s/s", bps, units[i])
}

// FormatDuration formats d rounded to the second as m:ss below an hour
// and h:mm:ss from an hour up: "0:19", "12:05", "1:02:03". Negative
// durations format as "0:00".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	h, m, sec := s/3600, s/60%60, s%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%d:%02d", m, sec)
}
