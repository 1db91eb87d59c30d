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

func TestParseBitRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"1000", 1000}, {"10M", 10_000_000}, {"10m", 10_000_000}, {"100Mbit", 100_000_000}, {"1gbit", 1e9}, {"1.5G", 1.5e9},
		{"64kbit/s", 64_000}, {"2Mbps", 2e6}, {" 8 ", 8}, {"0", 0}, {"8796093022208", 8 << 40}} {
		if got, err := ParseBitRate(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseBitRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, why string }{
		{"", "want bits per second"}, {"fast", "want bits per second"}, {"-1", "want bits per second"}, {"10Q", "want bits per second"},
		{"1e20", "want bits per second"}, {"NaN", "want bits per second"}, {"Inf", "want bits per second"}, {"100Tbit", "above 8.796 Tbit/s"},
		{"10MB", "not bytes"}, {"10MB/s", "not bytes"}, {"10MBps", "not bytes"}, {"k", "want bits per second"},
		{"0.5", "below 1 bit/s (0 means no limit)"}, {"0.0001k", "below 1 bit/s"}, // not truncated to 0, no limit
	} {
		if _, err := ParseBitRate(tc.in); err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
			t.Errorf("ParseBitRate(%q) = %v, want an error naming the value: %s", tc.in, err, tc.why)
		}
	}
}

func TestFormatRates(t *testing.T) {
	for _, tc := range []struct {
		bits int64
		want string
	}{{0, "0 bit/s"}, {800, "800 bit/s"}, {64_000, "64 kbit/s"}, {12_500_000, "12.5 Mbit/s"}, {100e6, "100 Mbit/s"}, {1_333_333_333, "1.333 Gbit/s"}} {
		if got := FormatBitRate(tc.bits); got != tc.want {
			t.Errorf("FormatBitRate(%d) = %q, want %q", tc.bits, got, tc.want)
		}
	}
	if got := FormatPacketRate(10_000); got != "10 kpps" {
		t.Errorf("FormatPacketRate = %q", got)
	}
	if BytesPerSecond(100e6) != 12_500_000 || BytesPerSecond(1) != 1 || BytesPerSecond(0) != 0 {
		t.Error("BytesPerSecond")
	}
}

func TestParsePacketRateAndBytes(t *testing.T) {
	for in, want := range map[string]int64{"1000": 1000, "10k": 10_000, "2M": 2e6, "3kpps": 3000, "0": 0} {
		if got, err := ParsePacketRate(in); err != nil || got != want {
			t.Errorf("ParsePacketRate(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "1.5k", "-1", "10Mbit", "x"} {
		if _, err := ParsePacketRate(bad); err == nil || !strings.Contains(err.Error(), "packets per second") {
			t.Errorf("ParsePacketRate(%q) = %v", bad, err)
		}
	}
	for in, want := range map[string]int64{"1500": 1500, "64k": 64_000, "2MB": 2e6, "0": 0} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v", in, got, err)
		}
	}
	if _, err := ParseBytes("lots"); err == nil || !strings.Contains(err.Error(), `size "lots": want bytes`) {
		t.Errorf("ParseBytes(lots) = %v", err)
	}
}
