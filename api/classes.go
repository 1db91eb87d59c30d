package api

import (
	"fmt"
	"strconv"
	"strings"

	vswitch "github.com/hvnet/hvnet/switch"
)

// The class map's text forms, one syntax on every surface: the command
// line's pcp-class= and dscp-class=, the topology file's pcp_class and
// dscp_class, the API's pcp_class and dscp_class (package vswitch,
// ClassMap, says what the classes do).

// NumClasses is the number of traffic classes of a shaped egress: 0 (the
// senders share it by their allocations), 1 and 2 (strict priority).
const NumClasses = 3

// ParsePCPClasses parses pcp-class's value: the class (0..2) of each
// 802.1p priority 0..7, colon separated, as "0:0:0:0:1:1:2:2".
func ParsePCPClasses(s string) ([]uint8, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 8 {
		return nil, fmt.Errorf("%q: want the class (0..%d) of each PCP 0..7, colon separated, as 0:0:0:0:1:1:2:2", s, NumClasses-1)
	}
	out := make([]uint8, 8)
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || n >= NumClasses {
			return nil, fmt.Errorf("%q: PCP %d's class %q is not 0..%d", s, i, p, NumClasses-1)
		}
		out[i] = uint8(n)
	}
	return out, nil
}

// CheckPCPClasses checks a PCP class list given as numbers (the API's and
// the topology file's list form): 8 classes, each 0..2. It returns the
// index of the bad one (-1 for a wrong length) with the error.
func CheckPCPClasses(cs []int) ([]uint8, int, error) {
	if len(cs) != 8 {
		return nil, -1, fmt.Errorf("%d classes: want 8, the class (0..%d) of each PCP 0..7", len(cs), NumClasses-1)
	}
	out := make([]uint8, 8)
	for i, c := range cs {
		if c < 0 || c >= NumClasses {
			return nil, i, fmt.Errorf("PCP %d's class %d is not 0..%d", i, c, NumClasses-1)
		}
		out[i] = uint8(c)
	}
	return out, 0, nil
}

// FormatPCPClasses writes PCP classes as pcp-class= takes them ("" for
// none: the default map).
func FormatPCPClasses(cs []uint8) string {
	if cs == nil {
		return ""
	}
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = strconv.Itoa(int(c))
	}
	return strings.Join(s, ":")
}

// ParseDSCPClass parses one dscp-class= value: DSCP[-DSCP]:CLASS, as
// "46:2" or "8-15:0" (DSCP 0..63, RFC 2474 §3; class 0..2).
func ParseDSCPClass(s string) (vswitch.DSCPClass, error) {
	bad := func(why string) (vswitch.DSCPClass, error) {
		return vswitch.DSCPClass{}, fmt.Errorf("%q: %s (want DSCP[-DSCP]:CLASS, as 46:2 or 8-15:0)", s, why)
	}
	rng, cls, ok := strings.Cut(s, ":")
	if !ok {
		return bad("no class")
	}
	from, to, isRange := strings.Cut(rng, "-")
	if !isRange {
		to = from
	}
	f, err1 := strconv.ParseUint(from, 10, 8)
	t, err2 := strconv.ParseUint(to, 10, 8)
	if err1 != nil || err2 != nil || f > 63 || t > 63 {
		return bad("DSCP is 0..63")
	}
	if f > t {
		return bad("the range runs backwards")
	}
	c, err := strconv.ParseUint(cls, 10, 8)
	if err != nil || c >= NumClasses {
		return bad(fmt.Sprintf("class is 0..%d", NumClasses-1))
	}
	return vswitch.DSCPClass{From: uint8(f), To: uint8(t), Class: uint8(c)}, nil
}

// FormatDSCPClass writes a DSCP mapping as dscp-class= takes it.
func FormatDSCPClass(d vswitch.DSCPClass) string {
	if d.From == d.To {
		return fmt.Sprintf("%d:%d", d.From, d.Class)
	}
	return fmt.Sprintf("%d-%d:%d", d.From, d.To, d.Class)
}

// ClassMapStrings writes a class map as the text surfaces take it: the
// pcp-class value ("" when default) and each dscp-class value.
func ClassMapStrings(m vswitch.ClassMap) (pcp string, dscp []string) {
	for _, d := range m.DSCP {
		dscp = append(dscp, FormatDSCPClass(d))
	}
	return FormatPCPClasses(m.PCP), dscp
}
