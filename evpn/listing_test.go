package evpn

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// routeString is a route in one line, for comparisons.
func routeString(r Route) string {
	src := "local"
	if !r.Local {
		src = "from " + r.Neighbor.String()
	}
	s := fmt.Sprintf("type %d rd %s vni %d", r.Type, r.RD, r.VNI)
	if r.Type == 2 {
		s += fmt.Sprintf(" mac %s ip %s seq %d", r.MAC, r.IP, r.Seq)
	}
	return s + fmt.Sprintf(" vtep %s rt %s %s best=%v accepted=%v%s", r.VTEP, strings.Join(r.RouteTargets, ","), src, r.Best, r.Accepted,
		map[bool]string{true: " (" + r.Reason + ")", false: ""}[r.Reason != ""])
}

func routeStrings(t *testing.T, s *Speaker, f RouteFilter) []string {
	t.Helper()
	rs, err := s.Routes(f)
	if err != nil {
		t.Fatalf("Routes(%+v): %v", f, err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, routeString(r))
	}
	return out
}

// Routes lists the speaker's own routes and those its neighbors sent,
// with their RD, route targets, VTEP, sequence number and source, and
// filters them; a MAC that moves shows the new sequence at its new VTEP
// and nothing at the old one.
func TestRoutesListing(t *testing.T) {
	p := newPair(t)
	p.start(t)
	a, b := p.a, p.b
	m1 := [6]byte{0x02, 0, 0, 0, 0xb, 1}
	ip1 := netip.MustParseAddr("10.1.0.1")
	for _, s := range []*Speaker{a, b} {
		for _, vni := range []uint32{100, 200} {
			if err := s.AddVNI(vni); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.AdvertiseMAC(100, m1, ip1, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, routeTimeout, "B to learn m1 from A", p.rb.hasMAC(100, m1, ip1, p.vtepA, 0), p.rb)
	waitFor(t, routeTimeout, "A to learn B's VTEP in VNI 200", func() bool { return p.ra.hasVTEP(200, p.vtepB) }, p.ra)

	wantA := []string{
		"type 2 rd 10.0.0.1:1 vni 100 mac 02:00:00:00:0b:01 ip 10.1.0.1 seq 0 vtep 192.0.2.1 rt 65000:100 local best=true accepted=false",
		"type 3 rd 10.0.0.1:1 vni 100 vtep 192.0.2.1 rt 65000:100 local best=true accepted=false",
		"type 3 rd 10.0.0.2:1 vni 100 vtep 192.0.2.2 rt 65000:100 from 127.0.0.2 best=true accepted=true",
		"type 3 rd 10.0.0.1:2 vni 200 vtep 192.0.2.1 rt 65000:200 local best=true accepted=false",
		"type 3 rd 10.0.0.2:2 vni 200 vtep 192.0.2.2 rt 65000:200 from 127.0.0.2 best=true accepted=true",
	}
	if got := routeStrings(t, a, RouteFilter{}); strings.Join(got, "\n") != strings.Join(wantA, "\n") {
		t.Errorf("A's routes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantA, "\n"))
	}
	hw := net.HardwareAddr(m1[:])
	for _, tc := range []struct {
		f    RouteFilter
		want []string
	}{
		{RouteFilter{Type: 2}, wantA[:1]},
		{RouteFilter{VNI: 200}, wantA[3:]},
		{RouteFilter{Type: 3, VNI: 100, Remote: true}, wantA[2:3]},
		{RouteFilter{Local: true, VNI: 100}, wantA[:2]},
		{RouteFilter{MAC: hw}, wantA[:1]},
		{RouteFilter{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}, nil},
	} {
		if got := routeStrings(t, a, tc.f); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("A's routes %+v:\n%s\nwant:\n%s", tc.f, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	if got, want := routeStrings(t, b, RouteFilter{Type: 2}), []string{
		"type 2 rd 10.0.0.1:1 vni 100 mac 02:00:00:00:0b:01 ip 10.1.0.1 seq 0 vtep 192.0.2.1 rt 65000:100 from 127.0.0.1 best=true accepted=true",
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("B's type-2 routes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := a.Counts(); c != (Counts{LocalMACs: 1, LocalVNIs: 2, RemoteVTEPs: 2}) {
		t.Errorf("A's counts = %+v", c)
	}
	if c := b.Counts(); c != (Counts{LocalVNIs: 2, RemoteMACs: 1, RemoteVTEPs: 2}) {
		t.Errorf("B's counts = %+v", c)
	}

	// m1 moves to B: B advertises it with seq 1, A withdraws its own.
	if err := b.AdvertiseMAC(100, m1, ip1, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, routeTimeout, "A to see m1 at B with seq 1", p.ra.hasMAC(100, m1, ip1, p.vtepB, 1), p.ra)
	waitFor(t, routeTimeout, "B to see A withdraw m1", p.rb.noMAC(100, m1, ip1), p.rb)
	want := []string{"type 2 rd 10.0.0.2:1 vni 100 mac 02:00:00:00:0b:01 ip 10.1.0.1 seq 1 vtep 192.0.2.2 rt 65000:100 from 127.0.0.2 best=true accepted=true"}
	if got := routeStrings(t, a, RouteFilter{Type: 2}); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("A's type-2 routes after the move:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want = []string{"type 2 rd 10.0.0.2:1 vni 100 mac 02:00:00:00:0b:01 ip 10.1.0.1 seq 1 vtep 192.0.2.2 rt 65000:100 local best=true accepted=false"}
	if got := routeStrings(t, b, RouteFilter{Type: 2}); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("B's type-2 routes after the move:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := a.Counts(); c.LocalMACs != 0 || c.RemoteMACs != 1 {
		t.Errorf("A's counts after the move = %+v", c)
	}
	a.Close()
	if _, err := a.Routes(RouteFilter{}); err == nil {
		t.Error("Routes after Close: nil error")
	}
}
