// Package units parses the quantities several of hvnet's surfaces take
// (the CLI, guest specs, the topology file, the API), so that one value is
// written one way everywhere.
package units

import (
	"fmt"
	"math"
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

// MaxBitRate is the largest rate accepted, in bits per second (the
// switch's bound, 2^40 bytes per second).
const MaxBitRate = 8 << 40

// MaxRate is the largest packet rate accepted, in packets per second.
const MaxRate = 1 << 40

// ParseBitRate parses a rate in bits per second, the unit of every rate
// hvnet takes (as tc, OVS and iperf3 use): a number with an optional
// decimal k, M, G or T and an optional bit, bps or bit/s ("10M",
// "100Mbit", "1.5Gbps", "64kbit/s", "1000000"). Bytes are refused with a
// message saying so.
func ParseBitRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	l := strings.ToLower(t)
	for _, u := range []string{"bit/s", "bps", "bit", "b/s"} {
		if strings.HasSuffix(l, u) {
			if u == "b/s" || u == "bps" && strings.HasSuffix(t, "Bps") {
				return 0, fmt.Errorf("rate %q: in bits per second, not bytes (10M, 100Mbit, 1G)", s)
			}
			t, l = t[:len(t)-len(u)], l[:len(l)-len(u)]
			break
		}
	}
	if strings.HasSuffix(t, "B") {
		return 0, fmt.Errorf("rate %q: in bits per second, not bytes (10M, 100Mbit, 1G)", s)
	}
	mult := 1.0
	if n := len(l); n > 0 {
		switch l[n-1] {
		case 'k':
			mult, l = 1e3, l[:n-1]
		case 'm':
			mult, l = 1e6, l[:n-1]
		case 'g':
			mult, l = 1e9, l[:n-1]
		case 't':
			mult, l = 1e12, l[:n-1]
		}
	}
	v, err := strconv.ParseFloat(l, 64)
	if err != nil || v < 0 || l == "" || strings.ContainsAny(l, "eEnNiIxX+") {
		return 0, fmt.Errorf("rate %q: want bits per second, as 1000000, 10M, 100Mbit or 1.5G", s)
	}
	r := v * mult
	if r > MaxBitRate {
		return 0, fmt.Errorf("rate %q: above %s", s, FormatBitRate(MaxBitRate))
	}
	if r > 0 && r < 1 {
		// 0 means no limit: a rate below 1 bit/s may not truncate to it.
		return 0, fmt.Errorf("rate %q: below 1 bit/s (0 means no limit)", s)
	}
	return int64(r), nil
}

// BytesPerSecond converts a bit rate to the byte rate the switch's
// buckets count, rounding up so that a small non-zero rate stays a limit.
func BytesPerSecond(bits int64) int64 { return (bits + 7) / 8 }

// FormatBitRate writes a rate in bits per second for people: "100 Mbit/s",
// "1.5 Gbit/s", "800 bit/s".
func FormatBitRate(bits int64) string {
	return formatDecimal(float64(bits), "bit/s")
}

// FormatPacketRate writes a packet rate for people: "10 kpps".
func FormatPacketRate(pps int64) string {
	return formatDecimal(float64(pps), "pps")
}

func formatDecimal(v float64, unit string) string {
	for _, p := range []struct {
		div    float64
		prefix string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= p.div {
			return strconv.FormatFloat(math.Round(v/p.div*1000)/1000, 'f', -1, 64) + " " + p.prefix + unit
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + " " + unit
}

// ParsePacketRate parses a rate in packets per second: a whole number
// with an optional decimal k, M or G and an optional pps ("10k",
// "2Mpps").
func ParsePacketRate(s string) (int64, error) {
	n, ok := parseCount(s, "pps")
	if !ok {
		return 0, fmt.Errorf("packet rate %q: want packets per second, as 1000, 10k or 2M", s)
	}
	return n, nil
}

// ParseBytes parses a size in bytes (a burst): a whole number with an
// optional decimal k, M or G and an optional B ("64k", "1500", "2MB").
func ParseBytes(s string) (int64, error) {
	n, ok := parseCount(s, "B")
	if !ok {
		return 0, fmt.Errorf("size %q: want bytes, as 1500, 64k or 2M", s)
	}
	return n, nil
}

// parseCount parses a whole number up to MaxRate with an optional
// decimal k, M or G and an optional unit.
func parseCount(s, unit string) (int64, bool) {
	t := strings.TrimSuffix(strings.TrimSpace(s), unit)
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:n-1]
		case 'M':
			mult, t = 1e6, t[:n-1]
		case 'G':
			mult, t = 1e9, t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > MaxRate/mult {
		return 0, false
	}
	return n * mult, true
}
