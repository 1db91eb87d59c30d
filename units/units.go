// Package units parses the quantities several of hvnet's surfaces take
// (the CLI, guest specs, the topology file, the API), so that one value is
// written one way everywhere.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseMiB parses a memory size into MiB: a number of MiB, or a number
// with a K, M, G or T suffix (binary units; "KiB", "MB" and the like are
// accepted too, still binary). The size must be a positive whole number
// of MiB.
func ParseMiB(s string) (uint64, error) {
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	t = strings.TrimSuffix(t, "I")
	mult := uint64(1) << 20
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a size (N MiB, or N with K, M, G or T)", s)
	}
	if v > (1<<63)/mult {
		return 0, fmt.Errorf("%q is too large a size", s)
	}
	b := v * mult
	if b%(1<<20) != 0 {
		return 0, fmt.Errorf("%q is not a whole number of MiB", s)
	}
	return b >> 20, nil
}

// MaxRate is the largest rate accepted, in bytes (or packets) per second:
// the switch's own bound.
const MaxRate = 1 << 40

// ParseRate parses a byte rate: a number of bytes per second, optionally
// with a decimal suffix k, M, G (bytes: "10M" is 10^7 B/s) or a bit rate
// ending in "bit" ("100Mbit", "1gbit", divided by 8).
func ParseByteRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	bits := false
	if l := strings.ToLower(t); strings.HasSuffix(l, "bit") || strings.HasSuffix(l, "bps") {
		bits, t = true, t[:len(t)-3]
	} else {
		t = strings.TrimSuffix(strings.TrimSuffix(t, "B/s"), "B")
	}
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:n-1]
		case 'm', 'M':
			mult, t = 1e6, t[:n-1]
		case 'g', 'G':
			mult, t = 1e9, t[:n-1]
		case 't', 'T':
			mult, t = 1e12, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: want bytes per second, as 1000, 10M or 100Mbit", s)
	}
	r := v * float64(mult)
	if bits {
		r /= 8
	}
	if r < 0 {
		return 0, fmt.Errorf("rate %q is negative", s)
	}
	if r > MaxRate {
		return 0, fmt.Errorf("rate %q above %d bytes/s", s, int64(MaxRate))
	}
	return int64(r), nil
}
