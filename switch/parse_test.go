package vswitch

import (
	"errors"
	"strings"
	"testing"
)

func TestParseVID(t *testing.T) {
	for in, want := range map[string]uint16{"1": 1, "10": 10, "4094": 4094} {
		if got, err := ParseVID(in); err != nil || got != want {
			t.Errorf("ParseVID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "4095", "65536", "-1", "", "1e3", " 5", "0x10"} {
		_, err := ParseVID(in)
		var ve *ValueError
		if !errors.As(err, &ve) || ve.Value != in || err.Error() != `"`+in+`" is not a VLAN ID (1..4094)` {
			t.Errorf("ParseVID(%q) = %v; want a ValueError naming it", in, err)
		}
	}
	if got, err := ParseVIDs("10:20:4094"); err != nil || len(got) != 3 || got[0] != 10 || got[2] != 4094 {
		t.Errorf("ParseVIDs = %v, %v", got, err)
	}
	if got, err := ParseVIDs("10+20,30"); err != nil || len(got) != 3 || got[1] != 20 {
		t.Errorf("ParseVIDs(10+20,30) = %v, %v", got, err)
	}
	if _, err := ParseVIDs(":"); err == nil || !strings.Contains(err.Error(), "a list of VLAN IDs (10:20)") {
		t.Errorf("ParseVIDs(:) = %v", err)
	}
	if _, err := ParseVIDs("10+0"); err == nil || err.Error() != `"0" is not a VLAN ID (1..4094)` {
		t.Errorf("ParseVIDs with a bad one = %v; want the bad one named", err)
	}
}

func TestParseMAC(t *testing.T) {
	if m, err := ParseMAC("02:Ab:cd:00:10:ff"); err != nil || m != (MAC{2, 0xab, 0xcd, 0, 0x10, 0xff}) {
		t.Errorf("ParseMAC = %v, %v", m, err)
	}
	for _, in := range []string{"", "02:ab:cd:00:10", "02:ab:cd:00:10:ff:00", "02-ab-cd-00-10-ff", "02ab.cd00.10ff",
		"2:ab:cd:00:10:ff:", "0g:ab:cd:00:10:ff", "+2:ab:cd:00:10:ff", "02:ab:cd:00:10:f"} {
		if _, err := ParseMAC(in); err == nil || err.Error() != `"`+in+`" is not a MAC address (aa:bb:cc:dd:ee:ff)` {
			t.Errorf("ParseMAC(%q) = %v; want it refused by name", in, err)
		}
	}
	if _, err := ParseStationMAC("01:00:5e:00:00:01"); err == nil {
		t.Error("ParseStationMAC took a multicast address")
	}
	if _, err := ParseStationMAC("02:00:00:00:00:01"); err != nil {
		t.Errorf("ParseStationMAC(unicast) = %v", err)
	}
}
