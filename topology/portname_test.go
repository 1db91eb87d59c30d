package topology

import (
	"strings"
	"testing"

	"github.com/hvnet/hvnet/api"
)

// TestPortNameRule: a topology file's port, uplink and guest names follow
// the API's rule (api.CheckPortName), with the field and line named.
func TestPortNameRule(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"ports:\n  - name: \"a#2\"\n    socket: /run/a.sock\n", `bad.yaml:2: ports[0].name: port name "a#2"`},
		{"ports:\n  - name: \"a?x\"\n    socket: /run/a.sock\n", `ports[0].name: port name "a?x"`},
		{"ports:\n  - name: \"a%20\"\n    socket: /run/a.sock\n", `ports[0].name: port name "a%20"`},
		{"ports:\n  - name: \"a b\"\n    socket: /run/a.sock\n", `ports[0].name: port name "a b"`},
		{"ports:\n  - name: \"a\\x01\"\n    socket: /run/a.sock\n", `ports[0].name: port name "a\x01"`},
		{"ports:\n  - name: " + strings.Repeat("x", 65) + "\n    socket: /run/a.sock\n", "ports[0].name: port name"},
		{"uplink:\n  name: \"u/1\"\n  if: eth0\n", `uplink.name: port name "u/1"`},
		{"guests:\n  - name: \"g#1\"\n", `guests[0].name: port name "g#1"`},
	} {
		_, err := Parse("bad.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), api.PortNameRule) {
			t.Errorf("%q: %v, want %q and the rule", tc.yaml, err, tc.want)
		}
	}
	if _, err := Parse("ok.yaml", []byte("ports:\n  - name: vm-1_eth0.10\n    socket: /run/a.sock\n")); err != nil {
		t.Errorf("a good name: %v", err)
	}
}
