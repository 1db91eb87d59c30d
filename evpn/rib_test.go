package evpn

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"testing"
)

var (
	vtepA = netip.MustParseAddr("192.0.2.1") // ours in these tests
	vtepB = netip.MustParseAddr("192.0.2.2")
	vtepC = netip.MustParseAddr("192.0.2.3")
	mac1  = [6]byte{2, 0, 0, 0, 0, 1}
	ip1   = netip.MustParseAddr("10.0.0.1")
)

func macRoute(key string, vtep netip.Addr, ip netip.Addr, seq uint32) route {
	return route{kind: kindMAC, key: key, vni: 100, mac: mac1, ip: ip, vtep: vtep, seq: seq}
}

func withdrawn(key string) route { return route{kind: kindMAC, key: key, withdraw: true} }

// step applies routes and resolves, as the dispatcher does.
func step(rs *ribState, local localClaim, routes ...route) ([]string, bool) {
	dirty := make(map[macKey]bool)
	var evs []event
	for _, r := range routes {
		evs = rs.apply(r, dirty, evs)
	}
	var moved bool
	for k := range dirty {
		var m bool
		evs, m = rs.resolve(k, local, evs)
		moved = moved || m
	}
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s seq %d withdrawn=%v", e.ip, e.vtep, e.seq, e.withdrawn))
	}
	return out, moved
}

func TestResolveMobility(t *testing.T) {
	none := localClaim{vtep: vtepA}
	mine := func(seq uint32) localClaim { return localClaim{present: true, seq: seq, vtep: vtepA} }
	noIP := netip.Addr{}
	for _, tc := range []struct {
		name      string
		setup     []route
		local     localClaim
		routes    []route
		want      []string
		wantMoved bool
	}{
		{
			name:   "new remote MAC",
			local:  none,
			routes: []route{macRoute("b1", vtepB, noIP, 0)},
			want:   []string{"invalid IP 192.0.2.2 seq 0 withdrawn=false"},
		},
		{
			name:   "MAC and MAC/IP from one VTEP",
			local:  none,
			routes: []route{macRoute("b1", vtepB, noIP, 0), macRoute("b2", vtepB, ip1, 0)},
			want:   []string{"10.0.0.1 192.0.2.2 seq 0 withdrawn=false", "invalid IP 192.0.2.2 seq 0 withdrawn=false"},
		},
		{
			name:   "withdrawn",
			setup:  []route{macRoute("b1", vtepB, noIP, 0)},
			local:  none,
			routes: []route{withdrawn("b1")},
			want:   []string{"invalid IP 192.0.2.2 seq 0 withdrawn=true"},
		},
		{
			name:   "moves to a higher sequence number",
			setup:  []route{macRoute("b1", vtepB, noIP, 1)},
			local:  none,
			routes: []route{macRoute("c1", vtepC, noIP, 2)},
			want:   []string{"invalid IP 192.0.2.2 seq 1 withdrawn=true", "invalid IP 192.0.2.3 seq 2 withdrawn=false"},
		},
		{
			name:   "a lower sequence number does not win",
			setup:  []route{macRoute("c1", vtepC, noIP, 2)},
			local:  none,
			routes: []route{macRoute("b1", vtepB, noIP, 1)},
		},
		{
			name:   "equal sequence numbers: the lower VTEP wins",
			setup:  []route{macRoute("c1", vtepC, noIP, 3)},
			local:  none,
			routes: []route{macRoute("b1", vtepB, noIP, 3)},
			want:   []string{"invalid IP 192.0.2.3 seq 3 withdrawn=true", "invalid IP 192.0.2.2 seq 3 withdrawn=false"},
		},
		{
			name:   "winner withdrawn: the other comes back",
			setup:  []route{macRoute("c1", vtepC, noIP, 2), macRoute("b1", vtepB, noIP, 1)},
			local:  none,
			routes: []route{withdrawn("c1")},
			want:   []string{"invalid IP 192.0.2.3 seq 2 withdrawn=true", "invalid IP 192.0.2.2 seq 1 withdrawn=false"},
		},
		{
			name:   "sequence number update at the same VTEP",
			setup:  []route{macRoute("b1", vtepB, noIP, 1)},
			local:  none,
			routes: []route{macRoute("b1", vtepB, noIP, 4)},
			want:   []string{"invalid IP 192.0.2.2 seq 4 withdrawn=false"},
		},
		{
			name:   "ours wins with a higher sequence number",
			local:  mine(5),
			routes: []route{macRoute("b1", vtepB, noIP, 4)},
		},
		{
			name:   "ours wins a tie with the lower VTEP",
			local:  mine(4),
			routes: []route{macRoute("b1", vtepB, noIP, 4)},
		},
		{
			name:      "a remote wins over ours",
			local:     mine(4),
			routes:    []route{macRoute("b1", vtepB, noIP, 5)},
			want:      []string{"invalid IP 192.0.2.2 seq 5 withdrawn=false"},
			wantMoved: true,
		},
		{
			name:   "ours comes back with a higher sequence number",
			setup:  []route{macRoute("b1", vtepB, noIP, 5)},
			local:  mine(6),
			routes: nil, // the dispatcher resolves the MAC after AdvertiseMAC
			want:   []string{"invalid IP 192.0.2.2 seq 5 withdrawn=true"},
		},
		{
			name:   "a route for another MAC is unrelated",
			local:  none,
			routes: []route{{kind: kindMAC, key: "x", vni: 100, mac: [6]byte{2, 0, 0, 0, 0, 2}, vtep: vtepB}},
			want:   []string{"invalid IP 192.0.2.2 seq 0 withdrawn=false"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRIBState()
			step(&rs, none, tc.setup...)
			routes := tc.routes
			var got []string
			var moved bool
			if routes == nil {
				var evs []event
				evs, moved = rs.resolve(macKey{100, mac1}, tc.local, nil)
				for _, e := range evs {
					got = append(got, fmt.Sprintf("%s %s seq %d withdrawn=%v", e.ip, e.vtep, e.seq, e.withdrawn))
				}
			} else {
				got, moved = step(&rs, tc.local, routes...)
			}
			// Additions for different IPs come in map order; withdrawals
			// come first, so sort each group alone.
			sortGroups(got)
			sortGroups(tc.want)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events = %q; want %q", got, tc.want)
			}
			if moved != tc.wantMoved {
				t.Errorf("moved = %v; want %v", moved, tc.wantMoved)
			}
		})
	}
}

// sortGroups sorts the withdrawals and the additions among themselves,
// keeping withdrawals first.
func sortGroups(evs []string) {
	sort.SliceStable(evs, func(i, j int) bool {
		wi, wj := len(evs[i]) > 4 && evs[i][len(evs[i])-4:] == "true", len(evs[j]) > 4 && evs[j][len(evs[j])-4:] == "true"
		if wi != wj {
			return wi
		}
		return evs[i] < evs[j]
	})
}

func TestIMETRefcount(t *testing.T) {
	rs := newRIBState()
	dirty := make(map[macKey]bool)
	imet := func(key string, vni uint32, vtep netip.Addr) route {
		return route{kind: kindIMET, key: key, vni: vni, vtep: vtep}
	}
	var evs []event
	evs = rs.apply(imet("r1", 100, vtepB), dirty, evs)
	evs = rs.apply(imet("r2", 100, vtepB), dirty, evs) // same VTEP, another RD
	evs = rs.apply(imet("r1", 100, vtepB), dirty, evs) // unchanged
	evs = rs.apply(route{kind: kindIMET, key: "r1", withdraw: true}, dirty, evs)
	if len(evs) != 1 || evs[0].withdrawn || evs[0].vtep != vtepB {
		t.Fatalf("events = %+v; want one addition of %s", evs, vtepB)
	}
	evs = rs.apply(route{kind: kindIMET, key: "r2", withdraw: true}, dirty, nil)
	if len(evs) != 1 || !evs[0].withdrawn {
		t.Fatalf("events = %+v; want the withdrawal", evs)
	}
	// A route that changes its VTEP under the same key.
	rs.apply(imet("r3", 100, vtepB), dirty, nil)
	evs = rs.apply(imet("r3", 100, vtepC), dirty, nil)
	if len(evs) != 2 || !evs[0].withdrawn || evs[0].vtep != vtepB || evs[1].withdrawn || evs[1].vtep != vtepC {
		t.Fatalf("events = %+v; want %s withdrawn then %s added", evs, vtepB, vtepC)
	}
	if len(dirty) != 0 {
		t.Errorf("type-3 routes marked MACs dirty: %v", dirty)
	}
}

// TestOwnRoutesFromEvents: our own routes count as GoBGP reports them, in
// order with the remote ones, with the sequence number GoBGP sent.
func TestOwnRoutesFromEvents(t *testing.T) {
	rs := newRIBState()
	run := func(routes ...route) (evs []event, moved bool) {
		dirty := make(map[macKey]bool)
		for _, r := range routes {
			evs = rs.apply(r, dirty, evs)
		}
		for k := range dirty {
			var m bool
			evs, m = rs.resolve(k, rs.localClaim(k, vtepA), evs)
			moved = moved || m
		}
		return evs, moved
	}
	own := route{kind: kindMAC, key: "a1", local: true, vni: 100, mac: mac1, vtep: vtepA, seq: 4}

	// The remote route comes first: reported, nothing of ours to move.
	evs, moved := run(macRoute("b1", vtepB, netip.Addr{}, 3))
	if len(evs) != 1 || evs[0].withdrawn || moved {
		t.Fatalf("remote first: events %+v, moved %v; want the remote reported", evs, moved)
	}
	// Ours, which GoBGP raised to 4: it wins, the remote is withdrawn.
	evs, moved = run(own)
	if len(evs) != 1 || !evs[0].withdrawn || evs[0].vtep != vtepB || moved {
		t.Fatalf("ours: events %+v, moved %v; want the remote withdrawn, ours kept", evs, moved)
	}
	// Ours withdrawn: the remote is back.
	evs, _ = run(route{kind: kindMAC, key: "a1", withdraw: true})
	if len(evs) != 1 || evs[0].withdrawn || evs[0].vtep != vtepB {
		t.Fatalf("ours withdrawn: events %+v; want the remote reported again", evs)
	}
	if len(rs.own) != 0 || len(rs.ownOf) != 0 {
		t.Errorf("own routes left: %v %v", rs.own, rs.ownOf)
	}
}
