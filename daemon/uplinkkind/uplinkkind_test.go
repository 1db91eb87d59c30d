package uplinkkind

import (
	"strings"
	"testing"

	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/uplink"
)

func TestParse(t *testing.T) {
	p, err := daemon.ParsePort("uplink", []string{"name=u", "if=eth1", "tx=sendmmsg", "trunk=10:20"})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec().(*spec)
	if s.iface != "eth1" || s.tx != uplink.TXSendmmsg || len(s.Claims()) != 1 || s.Claims()[0] != "interface eth1" {
		t.Errorf("spec = %+v, claims %v", s, s.Claims())
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=u", `field "if": missing (a uplink port needs if=IFACE)`},
		{"name=u,if=eth1,tx=fast", `field "tx": "fast" is not ring or sendmmsg`},
		{"name=u,if=eth1,socket=/x", `field "socket": unknown for kind uplink`},
	} {
		if _, err := daemon.ParsePort("uplink", strings.Split(tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}

func TestCounters(t *testing.T) {
	u := Counters(uplink.Stats{RxBad: 1, RxKernelDrops: 2, RxSocketErrors: 3, TxErrors: 4, Attaches: 5, RxFrames: 99})
	if u.RxDropBad != 1 || u.RxDropKernel != 2 || u.RxSocketErrors != 3 || u.TxErrors != 4 || u.Attaches != 5 {
		t.Errorf("Counters = %+v", *u)
	}
}

// rate=link reads the interface's speed when the port is parsed: lo has
// none, which is an error naming it (uplink: TestLinkSpeed covers the
// reading).
func TestRateLink(t *testing.T) {
	_, err := daemon.ParsePort("uplink", []string{"name=u", "if=lo", "rate=link"})
	if err == nil || !strings.Contains(err.Error(), `field "rate": "link" the speed of lo is not known`) {
		t.Errorf("rate=link on lo: %v", err)
	}
}
