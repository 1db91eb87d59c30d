package api

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxPortNameLen is the longest port name, in bytes.
const MaxPortNameLen = 64

// PortNameRule says in words which port names CheckPortName accepts.
const PortNameRule = "1..64 bytes of UTF-8, no '/', '#', '?', '%', spaces or control characters"

// CheckPortName is the one rule for a port's name on every surface (the
// API, the topology file, the command line): a name must survive as one
// URL path segment of /v1/ports/NAME unescaped by accident, and print on
// one line. The error names the name and the rule.
func CheckPortName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("port name %q: %s (want %s)", name, why, PortNameRule)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxPortNameLen:
		return bad(fmt.Sprintf("%d bytes long", len(name)))
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '#' || r == '?' || r == '%':
			return bad(fmt.Sprintf("contains %q", r))
		case unicode.IsSpace(r):
			return bad("contains a space")
		case unicode.IsControl(r) || !unicode.IsPrint(r):
			return bad(fmt.Sprintf("contains control or non-printing character %U", r))
		}
	}
	return nil
}
