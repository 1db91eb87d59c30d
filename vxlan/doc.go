// Package vxlan is the switch's VXLAN tunnel port (RFC 7348): frames of
// the switch's VLANs leave it encapsulated in UDP towards remote VTEPs,
// each VLAN as the VNI it is mapped to, and VXLAN packets from remote
// VTEPs enter the switch in the VLAN their VNI is mapped to.
//
// To the switch the port is a trunk of the mapped VLANs (the native VLAN
// untagged, if it is mapped). Towards the underlay:
//
//   - A frame's VLAN is its tag's VID, whether the tag is 0x8100 or 0x88a8
//     (the switch tags a frame with the TPID it arrived with, an S-tag
//     for a dot1q-tunnel port's), or the native VLAN for an untagged
//     frame; the tag is stripped. A VNI carries untagged frames only (a
//     received inner tag is dropped, below): a frame that would carry a
//     tag inside the VXLAN packet, a tag behind its VLAN's (a
//     dot1q-tunnel customer's C-tagged frame) or an untagged frame whose
//     EtherType is a tag TPID the switch does not classify on (0x9100,
//     0x9200, 0x9300), is dropped and counted (TxDropInnerTag), never
//     sent: a VTEP that reads the tag would put the frame in the tag's
//     VLAN instead of the VNI's.
//   - Unicast to a MAC the port knows (learned from the packets remote
//     VTEPs send, when learning is on, or set by a control plane such as
//     BGP EVPN with SetRemoteMAC) goes to that MAC's VTEP; broadcast,
//     multicast and unknown unicast go to every VTEP of the VNI's flood
//     list (ingress replication: one copy per VTEP, never back to the
//     VTEP a frame came from, which the switch's split horizon already
//     guarantees: a frame never leaves by the port it came in on).
//   - The underlay is IPv4 or IPv6, the family of Config.Local; the
//     remote VTEPs are of the same family (one family per port: a VTEP
//     of the other, from a control plane, is refused and counted).
//   - Packets are sent through a raw socket of the underlay's family
//     (IPPROTO_UDP, the kernel adds the IP header and routes) so that
//     each flow has its own UDP source port, a hash of the inner frame's
//     addresses and ports in 49152..65535 (RFC 7348 §5: entropy for the
//     underlay's ECMP); a kernel UDP socket would send every packet from
//     one port. Over IPv4 the UDP checksum is zero (RFC 7348 §5 allows
//     it). Over IPv6 (RFC 7348 §5 applies as it is) the kernel computes
//     it as it copies the packet in (IPV6_CHECKSUM), since Linux's vxlan
//     refuses zero checksums by default (udp6zerocsumrx off); zero is
//     sent only with Config.UDP6ZeroCsumTx (RFC 6935 §5, RFC 6936). Each
//     IPv6 packet also carries a flow label of its inner flow (RFC 6438),
//     and is never fragmented (IPV6_DONTFRAG: too long for the route's
//     MTU is a counted send error). The inner
//     frame is not copied: each message's iovecs point at a 28-byte
//     header (UDP, VXLAN, the inner MACs) and at the frame's bytes after
//     its VLAN tag. A flooded frame is one set of buffers sent to each
//     VTEP.
//   - UDP GSO (gso.go; off with Config.NoUDPGSO): Send's batch is grouped
//     by (VTEP, inner flow), a flow's packets kept in order (group.go),
//     and each group of two or more whose packets the next hop's link
//     carries leaves as UDP GSO super-packets of up to 64 packets: one
//     outer Ethernet, IP and UDP header written by the port and handed
//     with a virtio-net header (GSO_UDP_L4, the UDP checksum partial) to
//     the underlay device through an AF_PACKET socket, the next hop's MAC
//     from the kernel's route and neighbour tables (netlink, looked up
//     off the data path every second). The kernel or the NIC cuts it into
//     its datagrams, each with a UDP checksum (over IPv6 too, whatever
//     Config.UDP6ZeroCsumTx says: the kernel computes it). A VTEP not yet
//     resolved and a packet the device refuses go through the raw socket
//     as above; other single packets to a resolved VTEP are written to
//     the device too, in batches (sendmmsg on the AF_PACKET socket), a
//     flow's packets always in their order whichever way each goes.
//   - Packets are received on a UDP socket bound to the local address
//     and port (4789 by default) with recvmmsg and UDP GRO (a run of one
//     sender's datagrams of one size arrives as one, with its segment
//     size, and is cut into them); the inner frame's VLAN
//     tag is written into the VXLAN header's room in front of it, so
//     nothing is copied either. Over IPv6 the kernel checks the UDP
//     checksum and drops, before the port, a wrong one or a zero one
//     (unless Config.UDP6ZeroCsumRx): its Udp6InCsumErrors counts them.
//   - GSO frames are segmented by the switch before they reach the port
//     (its Caps offer no offloads), so every outer packet fits the
//     underlay: a frame whose outer packet would exceed the underlay MTU
//     (the frame plus 36 bytes of IPv4, UDP and VXLAN headers, 50 with
//     the inner Ethernet header, as the overhead is usually quoted; over
//     IPv6 56, and 70) is dropped and counted, never truncated or
//     fragmented.
//
// ARP and neighbour discovery (for a control plane such as BGP EVPN, which
// advertises MAC/IP routes and tells the port of remote ones):
//
//   - With Config.LearnIPs the port learns the local MACs' IP addresses
//     (IPv4 and IPv6) from the ARP packets (requests, replies, gratuitous)
//     and neighbour solicitations and advertisements (with a source or
//     target link-layer address option; not duplicate address detection)
//     the switch sends it: LocalIPs. A packet teaches nothing, and is
//     counted, when it is malformed (lengths, hardware or protocol type,
//     opcode, hop limit, ICMPv6 checksum, options), when its link-layer
//     address is not the frame's source, when the source is a multicast
//     MAC or one of the remote table, or when its address is not a
//     unicast one. A MAC has MaxIPsPerMAC addresses at most (4), the
//     table MaxLocalIPs (65536); what does not fit is counted. An
//     address seen with another MAC moves to it. The port does not age
//     bindings itself: whoever advertises them drops those whose MAC is
//     no longer local (DelLocalIP).
//   - SetRemoteIP fills a table of remote MAC/IP bindings (bounded by
//     MaxRemoteIPs, 65536). With Config.Suppress, a broadcast ARP request
//     or a neighbour solicitation to the solicited-node group of an
//     address in that table is not sent to the VTEPs: the port answers it
//     (an ARP reply, or a solicited neighbour advertisement with the
//     target link-layer address, from the remote MAC to the requester, in
//     the request's VLAN) as if the answer came through the tunnel.
//     Answers are built in Send and queued (64 at most; a request that
//     finds the queue full is flooded instead, and counted); a goroutine
//     of the port hands them to the switch, since Send runs inside the
//     switch's forwarding of another port's frames.
//   - Each ARP or ND frame is copied once (headers and message, 314
//     bytes at most) and read from the copy; nothing is allocated but a map
//     entry for a new binding.
//
// Everything the underlay sends is checked before it reaches the switch,
// each failure a counted drop: a datagram shorter than a VXLAN header and
// an Ethernet header, flags other than the I flag, non-zero reserved
// fields, a VNI that is not mapped, a source that is not a known VTEP
// (unless the port accepts any), an inner frame with a VLAN tag of its
// own. The table of remote MACs is bounded; a full table learns nothing
// more and counts it. So is each VNI's flood list (Config.MaxFloodVTEPs,
// 1024 VTEPs a control plane adds; one more is refused and counted,
// FloodVTEPsFull): a BGP peer's type-3 routes cannot lengthen it, nor the
// copies of a flooded frame, past that. A change to a VNI's list touches
// that list alone, made aside and swapped in: Send never waits on it.
package vxlan
