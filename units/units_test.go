package units

import (
	"strings"
	"testing"
)

func TestParseMiB(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"512", 512}, {"512M", 512}, {"512MiB", 512}, {"512mb", 512}, {" 2G ", 2048},
		{"1T", 1 << 20}, {"2048K", 2}, {"3GiB", 3072},
	} {
		if got, err := ParseMiB(c.in); err != nil || got != c.want {
			t.Errorf("ParseMiB(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, why string }{
		{"", "is not a size"}, {"0", "is not a size"}, {"-1G", "is not a size"}, {"1.5G", "is not a size"},
		{"12X", "is not a size"}, {"G", "is not a size"}, {"1000K", "not a whole number of MiB"},
		{"99999999999T", "too large"},
	} {
		_, err := ParseMiB(c.in)
		if err == nil || !strings.Contains(err.Error(), c.why) || !strings.Contains(err.Error(), `"`+c.in+`"`) {
			t.Errorf("ParseMiB(%q) = %v; want an error naming the value: %s", c.in, err, c.why)
		}
	}
}

func TestParseByteRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"1000", 1000}, {"10M", 10_000_000}, {"10MB", 10_000_000}, {"100Mbit", 12_500_000}, {"1gbit", 125_000_000}, {"64k", 64_000}, {"1.5M", 1_500_000}} {
		if got, err := ParseByteRate(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseByteRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "fast", "-1", "10Q", "1e20", "100Tbit"} {
		if _, err := ParseByteRate(bad); err == nil {
			t.Errorf("ParseByteRate(%q) succeeded, want an error", bad)
		}
	}
}
