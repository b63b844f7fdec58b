package units

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"123", 123},
		{"123B", 123},
		{"10K", 10 << 10},
		{"10k", 10 << 10},
		{"10KB", 10 << 10},
		{"10KiB", 10 << 10},
		{"10kib", 10 << 10},
		{"10M", 10 << 20},
		{"10MB", 10 << 20},
		{"10 MiB", 10 << 20},
		{"1.5G", 3 << 29},
		{"1GiB", 1 << 30},
		{"2T", 2 << 40},
		{"3PiB", 3 << 50},
		{"7.5E", 15 << 59},
		{"0.5K", 512},
		{"1.1K", 1126}, // 1126.4 rounded down
		{"007", 7},
		{"8388607T", 8388607 << 40},
		{"9223372036854775807", math.MaxInt64},
	} {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `invalid size "": use a number with an optional K, M, G or T suffix (e.g. 10M, 1.5GiB)`},
		{"abc", `invalid size "abc": use a number with an optional K, M, G or T suffix (e.g. 10M, 1.5GiB)`},
		{"-1", `invalid size "-1": must not be negative`},
		{"-1K", "must not be negative"},
		{"10X", "use a number"},
		{"10 ", "use a number"},
		{"10  M", "use a number"},
		{" 10M", "use a number"},
		{"1.5", "whole number"},
		{"1.5B", "whole number"},
		{"1.", "use a number"},
		{".5K", "use a number"},
		{"+5", "use a number"},
		{"1e3", "use a number"},
		{"0x10", "use a number"},
		{"1/2K", "use a number"},
		{"10Q", "use a number"},
		{"8E", "too large"},
		{"8388608T", "too large"},
		{"9223372036854775808", "too large"},
		{"99999999999999999999999999G", "too large"},
		{"1." + strings.Repeat("0", 70) + "K", "use a number"},
	} {
		_, err := ParseSize(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseSize(%q) error = %v; want it to contain %q", c.in, err, c.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{512, "512 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{1126, "1.1 KiB"},
		{10 << 20, "10 MiB"},
		{256 << 20, "256 MiB"},
		{1 << 30, "1 GiB"},
		{1<<20 - 1, "1 MiB"}, // 1023.999 KiB rounds up into the next unit
		{3 << 40, "3 TiB"},
		{math.MaxInt64, "8 EiB"},
		{-512, "-512 B"},
		{-1536, "-1.5 KiB"},
		{math.MinInt64, "-8 EiB"},
	} {
		if got := FormatSize(c.in); got != c.want {
			t.Errorf("FormatSize(%d) = %q; want %q", c.in, got, c.want)
		}
	}
}

func TestFormatParsesBack(t *testing.T) {
	for _, n := range []int64{0, 512, 1 << 10, 3 << 19, 10 << 20, 1 << 30, 5 << 40} {
		got, err := ParseSize(strings.ReplaceAll(FormatSize(n), " ", ""))
		if err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, got, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"30s", 30 * time.Second},
		{"90m", 90 * time.Minute},
		{"36h", 36 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"30d", 30 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"12h1d", 36 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"500ms", 500 * time.Millisecond},
		{"2µs", 2 * time.Microsecond},
		{"106751d", 106751 * 24 * time.Hour},
	} {
		got, err := ParseDuration(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `invalid duration "": use a number with a unit, e.g. 90s, 30m, 36h or 30d`},
		{"abc", "use a number with a unit"},
		{"30", "missing unit"},
		{"1d2", "missing unit"},
		{"5x", `unknown unit "x"`},
		{"5w", `unknown unit "w"`},
		{"-5s", "must not be negative"},
		{"1..5h", "use a number"},
		{".5h", "use a number"},
		{"d", "use a number"},
		{"1 d", "unknown unit"},
		{"106752d", "too long"},
		{"106751d24h", "too long"},
		{"99999999999999999999h", "too long"},
	} {
		_, err := ParseDuration(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseDuration(%q) error = %v; want it to contain %q", c.in, err, c.want)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"30d", now.Add(30 * 24 * time.Hour)},
		{"90m", now.Add(90 * time.Minute)},
		{"1d12h", now.Add(36 * time.Hour)},
		{"2030-06-01T12:00:01Z", now.Add(time.Second)},
		{"2031-01-02T15:04:05+02:00", time.Date(2031, 1, 2, 13, 4, 5, 0, time.UTC)},
		{"2031-01-02T15:04:05.5Z", time.Date(2031, 1, 2, 15, 4, 5, 5e8, time.UTC)},
	} {
		got, err := ParseExpiry(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseExpiry(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseExpiryErrors(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ in, want string }{
		{"0s", "must be more than zero"},
		{"0", "must be more than zero"},
		{"-1h", "already past"},
		{"2030-06-01T12:00:00Z", "already past"},
		{"2020-01-01T00:00:00Z", `invalid expiry "2020-01-01T00:00:00Z": already past`},
		{"2031-01-01", "needs a date, a time and a zone"},
		{"2031-01-01T00:00:00", "needs a date, a time and a zone"},
		{"tomorrow", `invalid expiry "tomorrow": use a duration (e.g. 30d, 36h) or an RFC 3339 time`},
		{"", "use a duration"},
		{"999999d", "too far away"},
	} {
		_, err := ParseExpiry(c.in, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseExpiry(%q) error = %v; want it to contain %q", c.in, err, c.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "123", "10K", "10M", "1.5G", "10KiB", "1GiB", "10 MB", "1.1k",
		"-1", "abc", "9223372036854775807", "9223372036854775808", "8388608T", "1.", ".5K", "1e9", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid size ") {
				t.Fatalf("ParseSize(%q) error %q lacks prefix", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		// A formatted size parses back (except when rounding reaches 8 EiB)
		// and is within 5% of the size.
		m, err := ParseSize(strings.ReplaceAll(FormatSize(n), " ", ""))
		if err != nil && !(n > 7<<60 && strings.Contains(err.Error(), "too large")) {
			t.Fatalf("FormatSize(%d) = %q does not parse: %v", n, FormatSize(n), err)
		}
		if err == nil && math.Abs(float64(m)-float64(n)) > float64(n)/20 {
			t.Fatalf("FormatSize(%d) = %q parses as %d", n, FormatSize(n), m)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "30s", "1d12h", "1.5d", "-1h", "5x", "106752d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
	})
}
