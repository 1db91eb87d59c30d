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
