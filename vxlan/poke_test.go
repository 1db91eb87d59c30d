package vxlan

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
)

// A neighbour whose resolution failed (the peer was not there yet) is
// resolved again by the next poke once the peer answers: the kernel
// keeps a FAILED entry, and a poke that only creates entries would leave
// it so, and the port's next hop unresolved, until something else sends
// to it.
func TestPokeFailedNeighbour(t *testing.T) {
	netnstest.Need(t)
	ns := netnstest.New(t, "vxpk")
	netnstest.Veth(t, "vxpk0", ns, "vxpk1")
	netnstest.Run(t, "ip", "addr", "add", "fd00:13::1/64", "dev", "vxpk0", "nodad")
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	l, err := nl.LinkByName("vxpk0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gsoTx{nl: nl}
	peer := net.ParseIP("fd00:13::2")
	state := func() int {
		ns, err := nl.NeighList(l.Attrs().Index, unix.AF_INET6)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.IP.Equal(peer) {
				return n.State
			}
		}
		return -1
	}
	g.poke(l.Attrs().Index, unix.AF_INET6, peer)
	if !waitFor(20*time.Second, func() bool { return state() == unix.NUD_FAILED }) {
		t.Fatalf("no FAILED entry for the absent peer: state %#x", state())
	}
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "fd00:13::2/64", "dev", "vxpk1", "nodad")
	g.poke(l.Attrs().Index, unix.AF_INET6, peer)
	if !waitFor(10*time.Second, func() bool { return state()&(unix.NUD_REACHABLE|unix.NUD_STALE|unix.NUD_DELAY|unix.NUD_PROBE) != 0 }) {
		out := netnstest.Run(t, "ip", "-6", "neigh", "show", "dev", "vxpk0")
		t.Fatalf("the peer answers, yet after the poke its entry is %#x:\n%s", state(), strings.TrimSpace(out))
	}
}
