package lab

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
)

type nullPort struct{}

func (nullPort) Send(f []vswitch.Frame) int { return len(f) }
func (nullPort) Caps() vswitch.Caps         { return 0 }

// TestSwitchConfig: Config.Switch reaches the lab's switch: an entry
// learned on it ages out after Config.Switch.AgingTime, not the default
// 300 s. The attach hook stops the run before any guest boots.
func TestSwitchConfig(t *testing.T) {
	clk := vswitch.NewManualClock(1e9)
	errStop := errors.New("stop before booting")
	var gotLive, gotAged int
	attach := func(sw *vswitch.Switch) error {
		h, err := sw.AddPort(vswitch.PortConfig{Name: "p", PVID: 1}, nullPort{})
		if err != nil {
			return err
		}
		f := make([]byte, 60)
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06})
		h.Input([]vswitch.Frame{{Data: f}})
		gotLive = len(sw.FDB())
		clk.Advance(2 * time.Second)
		gotAged = len(sw.FDB())
		return errStop
	}
	_, err := Run(context.Background(), Config{Kernel: "/nonexistent", Initrd: "/nonexistent",
		Guests:  []GuestConfig{{Name: "a", Addr: netip.MustParsePrefix("10.0.0.1/24")}},
		Attach:  attach,
		Switch:  vswitch.Config{AgingTime: time.Second, Clock: clk},
		Console: testWriter{t}})
	if !errors.Is(err, errStop) {
		t.Fatalf("Run = %v, want the attach hook's error", err)
	}
	if gotLive != 1 || gotAged != 0 {
		t.Errorf("FDB entries before / after 2 s = %d / %d, want 1 / 0 (aging time 1 s)", gotLive, gotAged)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// TestSetACLs: a guest's ACLs land on its port, both directions; a guest
// without any leaves the port without.
func TestSetACLs(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	for _, n := range []string{"a", "b"} {
		if _, err := sw.AddPort(vswitch.PortConfig{Name: n, PVID: 1}, nullPort{}); err != nil {
			t.Fatal(err)
		}
	}
	deny := vswitch.ACL{Rules: []vswitch.ACLRule{{Action: vswitch.ACLDeny, Proto: 17}}}
	if err := setACLs(sw, GuestConfig{Name: "a", ACL: deny, EgressACL: vswitch.ACL{Default: vswitch.ACLDeny}}); err != nil {
		t.Fatal(err)
	}
	if err := setACLs(sw, GuestConfig{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	in, _ := sw.Port("a").ACL()
	out, _ := sw.Port("a").EgressACL()
	if len(in.Rules) != 1 || out.Default != vswitch.ACLDeny {
		t.Errorf("a: ingress %+v, egress %+v", in, out)
	}
	if in, _ := sw.Port("b").ACL(); len(in.Rules) != 0 {
		t.Errorf("b got an ACL: %+v", in)
	}
	if err := setACLs(sw, GuestConfig{Name: "nope", ACL: deny}); err == nil {
		t.Error("setACLs on a missing port succeeded")
	}
}

// TestBootRejectsBadACL: a guest whose ACL the switch would refuse is
// refused before any VM or port exists, naming the ACL.
func TestBootRejectsBadACL(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	for _, gc := range []GuestConfig{
		{Name: "a", ACL: vswitch.ACL{Default: 7}},
		{Name: "a", EgressACL: vswitch.ACL{Rules: make([]vswitch.ACLRule, vswitch.MaxACLRules+1)}},
	} {
		_, err := Boot(context.Background(), gc, BootConfig{Kernel: "/nonexistent", Switch: sw})
		if err == nil || !strings.Contains(err.Error(), "ACL") {
			t.Errorf("Boot with %+v / %+v: %v, want an error naming the ACL", gc.ACL, gc.EgressACL, err)
		}
		if sw.Port("a") != nil {
			t.Fatal("a port was left on the switch")
		}
	}
}
