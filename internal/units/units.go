// Package units parses and formats the sizes and durations of Spillway's flags.
//
// Sizes are byte counts: a whole or decimal number with an optional unit.
// Every unit is a binary multiple: K, KB and KiB all mean 1024 bytes; M, MB
// and MiB 1024²; G, GB, GiB 1024³; T, TB, TiB 1024⁴ (and P and E likewise,
// so that everything FormatSize prints parses back). Units are not case
// sensitive and a single space may separate them from the number ("10 MiB").
// There are no decimal (SI) units: "10MB" means 10 MiB, as in Docker and in
// Spillway's own output, so one spelling never means two sizes.
//
// Durations are Go durations (time.ParseDuration) plus days: "d" is 24 hours,
// as in "30d" or "1d12h". A day is always 24 hours; calendar arithmetic is
// left to RFC 3339 times, which ParseExpiry accepts.
package units

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

const sizeHint = "use a number with an optional K, M, G or T suffix (e.g. 10M, 1.5GiB)"

var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kb":  1 << 10,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mb":  1 << 20,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gb":  1 << 30,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tb":  1 << 40,
	"tib": 1 << 40,
	"p":   1 << 50,
	"pb":  1 << 50,
	"pib": 1 << 50,
	"e":   1 << 60,
	"eb":  1 << 60,
	"eib": 1 << 60,
}

// ParseSize parses a size such as "123", "10K", "1.5G", "10KiB" or "1GiB"
// into bytes. A decimal number is allowed with a unit of K or more and is
// rounded down to a whole byte ("1.1K" is 1126); a plain byte count must be
// whole. Negative sizes and sizes over math.MaxInt64 are refused.
func ParseSize(s string) (int64, error) {
	bad := func(why string) error {
		if why == "" {
			return fmt.Errorf("invalid size %q: %s", s, sizeHint)
		}
		return fmt.Errorf("invalid size %q: %s", s, why)
	}
	if strings.HasPrefix(s, "-") {
		return 0, bad("must not be negative")
	}
	if len(s) > 64 { // no real size is this long; keeps big.Rat cheap
		return 0, bad("")
	}
	// number: digits [ "." digits ]
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return 0, bad("")
	}
	fracStart, fracEnd := i, i
	if i < len(s) && s[i] == '.' {
		i++
		fracStart = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			return 0, bad("")
		}
	}
	num := s[:i]
	rest := s[i:]
	if strings.HasPrefix(rest, " ") {
		rest = rest[1:]
		if rest == "" {
			return 0, bad("")
		}
	}
	mult, ok := sizeUnits[strings.ToLower(rest)]
	if !ok {
		return 0, bad("")
	}
	if fracEnd > fracStart && mult == 1 {
		return 0, bad("a byte count must be a whole number")
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, bad("")
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // both positive: rounds down
	if !n.IsInt64() {
		return 0, bad("too large (the most is 8 EiB)")
	}
	return n.Int64(), nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

var sizeNames = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// FormatSize formats a byte count for people: "0 B", "512 B", "1.5 KiB",
// "10 MiB". Above 1023 bytes it shows at most one decimal, rounded to the
// nearest, and drops a trailing ".0".
func FormatSize(n int64) string {
	if n < 0 {
		if n == math.MinInt64 {
			return "-8 EiB"
		}
		return "-" + FormatSize(-n)
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	u := 0
	for u < len(sizeNames)-1 && v >= 1024 {
		v /= 1024
		u++
	}
	// Tenths, rounded; carry into the next unit when rounding reaches 1024.
	tenths := math.Round(v * 10)
	if tenths >= 10240 && u < len(sizeNames)-1 {
		tenths = math.Round(v / 1024 * 10)
		u++
	}
	if int64(tenths)%10 == 0 {
		return fmt.Sprintf("%d %s", int64(tenths)/10, sizeNames[u])
	}
	return fmt.Sprintf("%.1f %s", tenths/10, sizeNames[u])
}

const durationHint = "use a number with a unit, e.g. 90s, 30m, 36h or 30d"

var errOverflow = errors.New("overflow")

// ParseDuration parses a Go duration ("90m", "36h", "1h30m") that may also
// use days ("30d", "1d12h", "1.5d"); a day is 24 hours. Zero ("0", "0s") is
// allowed; negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		if errors.Is(err, errOverflow) {
			return 0, fmt.Errorf("invalid duration %q: too long (the most is about 292 years)", s)
		}
		return 0, fmt.Errorf("invalid duration %q: %s", s, err.Error())
	}
	return d, nil
}

func parseDuration(s string) (time.Duration, error) {
	if strings.HasPrefix(s, "-") {
		return 0, errors.New("must not be negative")
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, errors.New(durationHint)
	}
	var total time.Duration
	for rest := s; rest != ""; {
		// one term: number then unit letters
		i := 0
		for i < len(rest) && (isDigit(rest[i]) || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, errors.New(durationHint)
		}
		j := i
		for j < len(rest) && !isDigit(rest[j]) && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if !validNumber(num) {
			return 0, errors.New(durationHint)
		}
		if unit == "" {
			return 0, errors.New("missing unit; " + durationHint)
		}
		if !durationUnits[unit] {
			return 0, fmt.Errorf("unknown unit %q; %s", unit, durationHint)
		}
		var term time.Duration
		if unit == "d" {
			h, err := time.ParseDuration(num + "h")
			if err != nil || h > math.MaxInt64/24 {
				return 0, errOverflow // well formed, so only too large fails
			}
			term = h * 24
		} else {
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, errOverflow
			}
			term = d
		}
		if total > math.MaxInt64-term {
			return 0, errOverflow
		}
		total += term
	}
	return total, nil
}

var durationUnits = map[string]bool{"ns": true, "us": true, "µs": true, "μs": true, "ms": true, "s": true, "m": true, "h": true, "d": true}

// validNumber reports whether s is digits, optionally followed by "." and
// more digits.
func validNumber(s string) bool {
	whole, frac, ok := strings.Cut(s, ".")
	if whole == "" || (ok && frac == "") {
		return false
	}
	return strings.Trim(whole, "0123456789") == "" && strings.Trim(frac, "0123456789") == ""
}

const expiryHint = "use a duration (e.g. 30d, 36h) or an RFC 3339 time (e.g. 2030-01-02T15:04:05Z)"

// ParseExpiry parses the value of --expires: a duration from now (which must
// be more than zero) or an RFC 3339 time, which must be after now.
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("invalid expiry %q: already past (it is now %s)", s, now.Format(time.RFC3339))
		}
		return t, nil
	}
	if looksLikeTime(s) {
		return time.Time{}, fmt.Errorf("invalid expiry %q: %s", s, "an RFC 3339 time needs a date, a time and a zone, e.g. 2030-01-02T15:04:05Z or 2030-01-02T15:04:05+02:00")
	}
	d, err := parseDuration(s)
	if err != nil {
		if errors.Is(err, errOverflow) {
			return time.Time{}, fmt.Errorf("invalid expiry %q: too far away (the most is about 292 years)", s)
		}
		if strings.HasPrefix(s, "-") {
			return time.Time{}, fmt.Errorf("invalid expiry %q: already past; %s", s, expiryHint)
		}
		return time.Time{}, fmt.Errorf("invalid expiry %q: %s", s, expiryHint)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("invalid expiry %q: must be more than zero", s)
	}
	return now.Add(d), nil
}

// looksLikeTime reports whether s is plainly meant as a date ("2030-01-02…").
func looksLikeTime(s string) bool {
	return len(s) >= 10 && isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2]) && isDigit(s[3]) && s[4] == '-'
}
