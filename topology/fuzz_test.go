package topology

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the topology parser. It must never
// panic; every error must start with the file name and every *Error in it
// must carry a line inside the file (1 .. lines+1) and a field; a
// topology it accepts must convert to switch port configurations the
// switch accepts. Seeds: testdata/lab.yaml, each TestBadTopologies case
// (testdata/fuzz/FuzzParse) and a few below.
func FuzzParse(f *testing.F) {
	lab, err := os.ReadFile("testdata/lab.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(lab)
	for _, s := range []string{
		"", "ports: [\n", "switch: {}\n", "ports:\n  - name: a\n    socket: /s\n    vlan: 3\n",
		"guests:\n  - name: g\n    vlan: 5000\n", "uplink:\n  if: x\n  vlan_mode: trunk\n", "uplink:\n  if: x\n  trunk: 10:20\n  rate: 1M\n",
		"ports:\n  - name: a\n    socket: /s\n    pvid: 3\n",
		"&a [*a]\n", "ports: !!binary AAAA\n", "---\n---\n", "ports:\n  - <<: {name: a}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		top, err := Parse(name, data)
		if err == nil {
			checkAccepted(t, data, top)
			return
		}
		if !strings.HasPrefix(err.Error(), name+":") {
			t.Fatalf("Parse(%q) = %q: does not start with the file name", data, err)
		}
		// YAML breaks lines at \n, \r\n and a lone \r (YAML 1.2 §5.4).
		lines := strings.Count(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") +
			strings.Count(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r") + 1
		var joined interface{ Unwrap() []error }
		errs := []error{err}
		if errors.As(err, &joined) {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			var te *Error
			if !errors.As(e, &te) {
				continue // yaml's own syntax errors: "fuzz.yaml: yaml: line N: ..."
			}
			if te.File != name || te.Line < 1 || te.Line > lines+1 || te.Field == "" || te.Msg == "" {
				t.Fatalf("Parse(%q): error %#v: want file %s, line 1..%d, a field and a message", data, te, name, lines+1)
			}
		}
	})
}

// checkAccepted: every port of an accepted topology is one the switch takes.
func checkAccepted(t *testing.T, data []byte, top *Topology) {
	t.Helper()
	if top == nil {
		t.Fatalf("Parse(%q) returned neither a topology nor an error", data)
	}
	// Validate, not AddPort: a port's buffers (megabytes) per fuzz input
	// would stall the fuzzer.
	if u := top.Uplink; u != nil {
		n := u.Name
		if n == "" {
			n = "uplink"
		}
		if cfg := u.PortSettings.Config(n); cfg.Validate() != nil {
			err := cfg.Validate()
			t.Fatalf("Parse(%q) accepted an uplink that the switch refuses: %v", data, err)
		}
	}
	for _, p := range top.Ports {
		c := p.PortSettings.Config(p.Name)
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted port %q that the switch refuses: %v", data, p.Name, err)
		}
	}
	for _, g := range top.Guests {
		if err := g.Config().Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted guest %q that the switch refuses: %v", data, g.Name, err)
		}
	}
}
