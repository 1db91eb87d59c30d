// Package netns gives a test network namespaces of its own, built with
// netlink and setns only (no iproute2, which the nested test host lacks):
// a namespace with lo up, veth pairs into it, addresses, and code or
// programs run inside it. With lab.UplinkAttach, a veth's host end joins
// the guests' switch, and the namespace is a host on the guests' network
// that the test itself drives.
//
//	ns := netns.New(t, "client")            // gone at the test's end
//	netns.Veth(t, "up0", ns, "eth0")         // up0 here, eth0 in ns
//	ns.Addr(t, "eth0", "10.0.0.9/24")
//	err := ns.Do(func() error { ... })      // sockets opened here live in ns
//
// Tests that use it run as root.
package netns

import "github.com/hvnet/hvnet/internal/nlns"

// NS is a network namespace the test created (New); its methods add
// links and addresses (Up, Down, Addr, SetMAC, Master, Add) and run code
// (Do) or programs (Start, Run) in it.
type NS = nlns.NS

// Pinger sends ICMP echo requests from a namespace (NS.Pinger).
type Pinger = nlns.Pinger

var (
	// New creates a namespace with lo up; it goes away at the test's
	// cleanup, with its links.
	New = nlns.New
	// Veth creates a veth pair, one end here (deleted at cleanup), the
	// other in a namespace, both up.
	Veth = nlns.Veth
	// VethBetween creates a veth pair between two namespaces.
	VethBetween = nlns.VethBetween
)
