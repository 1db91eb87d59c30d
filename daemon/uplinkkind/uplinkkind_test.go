package uplinkkind

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hvnet/daemon"
	"hvnet/uplink"
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

// rate=link: the capacity is the interface's speed as the kernel shows
// it; an interface without one (down, virtual) is an error naming it.
func TestRateLink(t *testing.T) {
	dir := t.TempDir()
	for ifc, speed := range map[string]string{"eth1": "10000\n", "eth2": "-1\n"} {
		if err := os.MkdirAll(filepath.Join(dir, ifc), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ifc, "speed"), []byte(speed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := sysClassNet
	sysClassNet = dir
	defer func() { sysClassNet = old }()
	p, err := daemon.ParsePort("uplink", []string{"name=u", "if=eth1", "rate=link"})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Port.Egress.Bytes.Rate; r != 10_000_000_000/8 {
		t.Errorf("rate=link on a 10000 Mbit/s link: egress %d bytes/s, want %d", r, 10_000_000_000/8)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=u,if=eth2,rate=link", `field "rate": "link" the speed of eth2 is not known (` + dir + `/eth2/speed says "-1"): give rate=BITS/s`},
		{"name=u,if=eth3,rate=link", `field "rate": "link" the speed of eth3 is not known`},
	} {
		if _, err := daemon.ParsePort("uplink", strings.Split(tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}

}
