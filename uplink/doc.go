// Package uplink connects the built-in switch (package vswitch) to a host
// interface through AF_PACKET raw sockets (packet(7)): the hypervisor's
// uplink to the physical network, usually a VLAN trunk toward a
// top-of-rack switch.
//
//	p, err := uplink.Open("eth1", uplink.Config{Logger: log})
//	h, err := sw.AddPort(vswitch.PortConfig{Name: "uplink", Mode: vswitch.ModeTrunk,
//		AllowedVLANs: []uint16{10, 20}, NativeVLAN: 1}, p)
//	p.Start(h) // RX workers and the link watcher run until p.Close()
//
// The Port is an ordinary vswitch.Port: VLAN modes, rate limits, counters and
// mirroring are the switch's.
//
// # Data path
//
// Receive uses a TPACKET_V3 memory-mapped ring (block based; a block is
// handed to user space when full or after Config.BlockTimeout), one socket
// per RX worker, joined in a PACKET_FANOUT group when there are several.
// Frames are passed to the switch straight out of the ring, without copies,
// in batches, and the block is returned to the kernel after Input returns.
//
// Transmit goes through a txPath, one of two implementations behind a
// three-method interface (as gVisor's link/fdbased dispatchers): a
// TPACKET_V2 TX ring (TXRing, the default) or sendmmsg(2) with an iovec
// per frame (TXSendmmsg). Both batch: one system call per Send.
//
// Every socket has PACKET_VNET_HDR: each frame carries a 10-byte
// struct virtio_net_hdr (virtio 1.2 §5.1.6), so GSO frames and partial
// checksums cross in both directions without software segmentation. In an
// RX ring slot the header sits right before the frame (at tp_mac-10); in a
// TX ring slot and in sendmmsg it is the first 10 bytes of the data.
//
// The kernel strips the outer VLAN tag of received frames before packet
// sockets see them (__netif_receive_skb_core, skb_vlan_untag) and reports
// it in tp_vlan_tci / tp_vlan_tpid (TP_STATUS_VLAN_VALID,
// TP_STATUS_VLAN_TPID_VALID; PACKET_AUXDATA is the recvmsg equivalent).
// The RX path puts the tag back in place in the ring slot, with its TPID
// (0x8100, or 0x88a8 for 802.1ad), so the switch sees the frame as it was
// on the wire.
//
// RX sockets join the interface in promiscuous mode (PACKET_MR_PROMISC) and
// set PACKET_IGNORE_OUTGOING, so frames the host (or this port) sends are not
// echoed back. Config.QdiscBypass sets PACKET_QDISC_BYPASS on the TX socket.
//
// # Link state
//
// A link that goes down and up needs nothing: the kernel unhooks and
// rehooks the bound sockets; while it is down Send fails (counted as drops)
// and nothing is received. An interface that is deleted and created again
// under the same name is re-attached: a watcher follows netlink link
// updates (with a slow periodic check as a fallback) and reopens the
// sockets on the new ifindex. Open fails with ErrNoInterface when the
// interface does not exist.
//
// Unsafe code (ring status words, sendmmsg) lives in *_unsafe.go.
package uplink
