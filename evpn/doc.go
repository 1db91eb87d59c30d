// Package evpn is hvnet's BGP EVPN speaker (RFC 7432, with the VXLAN
// encapsulation of RFC 8365): it advertises the local VTEP's VNIs and MACs
// to BGP neighbors and reports the remote ones to a Handler. It embeds a
// GoBGP v3 server as a library and watches its best paths; it knows
// nothing of the data path, which a VXLAN port builds from the Handler's
// calls (control plane beside, not inside, the dataplane).
//
// # Routes
//
// The routes are those FRR's bgpd sends and expects with advertise-all-vni:
//
//   - Type 3, Inclusive Multicast Ethernet Tag (AddVNI): originating router
//     and PMSI tunnel (ingress replication) = the VTEP, VNI in the PMSI
//     label.
//   - Type 2, MAC/IP Advertisement (AdvertiseMAC): ESI 0, VNI in MPLS
//     Label1, optional IP, MAC mobility extended community when the
//     sequence number is non-zero.
//   - Both: Ethernet tag 0, route distinguisher RouterID:n (type 1, one n
//     per VNI), route target ASN:VNI (two-octet AS specific; FRR's
//     auto-derived RT, the ASN's low 16 bits for 4-octet ASNs), BGP
//     encapsulation extended community with tunnel type VXLAN (8), next
//     hop = the VTEP.
//
// The VTEP and the neighbors may be IPv4 or IPv6. An IPv6 VTEP (an IPv6
// underlay) makes the next hops 16 bytes, the type-3 route's originating
// router's IP 128 bits and its PMSI tunnel identifier 16 bytes (RFC 8365
// §5.1.3 with RFC 7432 §7.3 and RFC 6514 §5), as FRR sends them since
// it supports IPv6 VTEPs (FRR 10.x, its pull request 19721; Debian's 8.4
// has no IPv6 VTEPs); received routes with IPv6 VTEPs are read the same
// way. The router ID and the route
// distinguishers stay IPv4 (4 octets).
//
// Routes lists the RIB for operators: the routes the speaker advertises
// and every path its neighbors sent, with RD, route targets, VTEP, MAC
// mobility sequence, source, and whether the speaker uses it; Neighbors
// lists the sessions, Counts the routes in use.
//
// A received route is mapped to its VNI by its label, or by its route
// target when the label is 0. The Handler hears about every VNI the
// neighbors advertise; filtering is up to it. The speaker is a leaf: it
// advertises only its own routes, never what it learned.
//
// # Hostile neighbors
//
// Nothing a neighbor sends affects another neighbor's session or the
// process. GoBGP never reads a neighbor's socket: a relay (relay.go)
// checks each message with GoBGP's own parser and validator first and
// ends the session of a neighbor that sends anything malformed (GoBGP
// v3.37 crashes the process on some such messages, and its RFC 7606
// repairs keep stale routes). Well-formed routes that make no sense (a
// group MAC, no VNI, no usable VTEP, our own VTEP) are logged and
// ignored. A neighbor that sends more than Config.MaxRoutesPerPeer routes
// has its session reset and held down. Connections from addresses that
// are not neighbors are closed at once.
//
// # Example
//
//	sp, err := evpn.Start(ctx, evpn.Config{
//		ASN:       65000,
//		RouterID:  netip.MustParseAddr("192.0.2.1"),
//		VTEP:      netip.MustParseAddr("192.0.2.1"),
//		Neighbors: []evpn.Neighbor{{Addr: netip.MustParseAddr("192.0.2.2")}},
//		Logger:    log,
//	}, handler) // handler implements evpn.Handler
//	if err != nil {
//		return err
//	}
//	defer sp.Close()
//	if err := sp.AddVNI(100); err != nil {
//		return err
//	}
//	mac := [6]byte{0x02, 0, 0, 0, 0, 1}
//	err = sp.AdvertiseMAC(100, mac, netip.MustParseAddr("10.0.0.1"), 0)
//
// # Limits
//
// GoBGP v3 keeps its route selection options in package variables and
// cannot stop its main loop: use one Speaker per process (tests start two,
// before any route flows), and expect one idle goroutine to stay behind
// after Close. GoBGP and the relay talk over 127.B.0.0/16 (B from 101 to
// 200): lo must be up. At most 254 neighbors; IPv4 router ID; no
// link-local neighbors. A neighbor that proposes hold time 0 gets no
// UPDATE through (GoBGP v3 then sets an immediate write deadline).
package evpn
