// Package vxlan is the switch's VXLAN tunnel port (RFC 7348): frames of
// the switch's VLANs leave it encapsulated in UDP towards remote VTEPs,
// each VLAN as the VNI it is mapped to, and VXLAN packets from remote
// VTEPs enter the switch in the VLAN their VNI is mapped to.
//
// To the switch the port is a trunk of the mapped VLANs (the native VLAN
// untagged, if it is mapped). Towards the underlay:
//
//   - Unicast to a MAC the port knows (learned from the packets remote
//     VTEPs send, when learning is on, or set by a control plane such as
//     BGP EVPN with SetRemoteMAC) goes to that MAC's VTEP; broadcast,
//     multicast and unknown unicast go to every VTEP of the VNI's flood
//     list (ingress replication: one copy per VTEP, never back to the
//     VTEP a frame came from, which the switch's split horizon already
//     guarantees: a frame never leaves by the port it came in on).
//   - Packets are sent through a raw IPv4 socket (IPPROTO_UDP, the kernel
//     adds the IP header and routes) so that each flow has its own UDP
//     source port, a hash of the inner frame's addresses and ports in
//     49152..65535 (RFC 7348 §5: entropy for the underlay's ECMP); a
//     kernel UDP socket would send every packet from one port. The UDP
//     checksum is zero (RFC 7348 §5 allows it over IPv4). The inner
//     frame is not copied: each message's iovecs point at a 28-byte
//     header (UDP, VXLAN, the inner MACs) and at the frame's bytes after
//     its VLAN tag. A flooded frame is one set of buffers sent to each
//     VTEP.
//   - Packets are received on a UDP socket bound to the local address
//     and port (4789 by default) with recvmmsg; the inner frame's VLAN
//     tag is written into the VXLAN header's room in front of it, so
//     nothing is copied either.
//   - GSO frames are segmented by the switch before they reach the port
//     (its Caps offer no offloads), so every outer packet fits the
//     underlay: a frame whose outer packet would exceed the underlay MTU
//     (the frame plus 36 bytes of IPv4, UDP and VXLAN headers; 50 with
//     the inner Ethernet header, as the overhead is usually quoted) is
//     dropped and counted, never truncated or fragmented.
//
// Everything the underlay sends is checked before it reaches the switch,
// each failure a counted drop: a datagram shorter than a VXLAN header and
// an Ethernet header, flags other than the I flag, non-zero reserved
// fields, a VNI that is not mapped, a source that is not a known VTEP
// (unless the port accepts any), an inner frame with a VLAN tag of its
// own. The table of remote MACs is bounded; a full table learns nothing
// more and counts it.
package vxlan
