package vswitch

import (
	"fmt"
	"strconv"
	"strings"
)

// The parsers of values every surface shares (the CLI's port and guest
// specs, the topology file, the API, ctl): one syntax and one error for
// each. An error's text says what is wrong with the value and starts with
// it quoted; callers put the field's name in front.

// ValueError is a value that did not parse: Value is the text, Want what
// was expected.
type ValueError struct {
	Value string
	Want  string
}

func (e *ValueError) Error() string { return fmt.Sprintf("%q is not %s", e.Value, e.Want) }

// ParseVID parses a VLAN ID: 1..4094 (IEEE 802.1Q: 0 is no VLAN, 4095
// reserved).
func ParseVID(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < 1 || n > 4094 {
		return 0, &ValueError{Value: s, Want: "a VLAN ID (1..4094)"}
	}
	return uint16(n), nil
}

// ParseVIDs parses a list of VLAN IDs as every text surface writes it:
// 10:20:30 (a colon does not clash with the comma between KEY=VALUE
// fields); + and , are taken too, as earlier surfaces wrote lists.
func ParseVIDs(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == '+' || r == ',' }) {
		v, err := ParseVID(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, &ValueError{Value: s, Want: "a list of VLAN IDs (10:20)"}
	}
	return out, nil
}

// ParseMAC parses a MAC address written aa:bb:cc:dd:ee:ff (six pairs of
// hex digits, either case).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return m, &ValueError{Value: s, Want: "a MAC address (aa:bb:cc:dd:ee:ff)"}
	}
	for i := range m {
		if i > 0 && s[3*i-1] != ':' {
			return MAC{}, &ValueError{Value: s, Want: "a MAC address (aa:bb:cc:dd:ee:ff)"}
		}
		v, err := strconv.ParseUint(s[3*i:3*i+2], 16, 8)
		if err != nil {
			return MAC{}, &ValueError{Value: s, Want: "a MAC address (aa:bb:cc:dd:ee:ff)"}
		}
		m[i] = byte(v)
	}
	return m, nil
}

// ParseStationMAC is ParseMAC for a port's or guest's own address: a
// group (multicast, broadcast) address is refused.
func ParseStationMAC(s string) (MAC, error) {
	m, err := ParseMAC(s)
	if err == nil && m[0]&1 != 0 {
		return MAC{}, &ValueError{Value: s, Want: "a unicast MAC address (it is a group address)"}
	}
	return m, err
}
