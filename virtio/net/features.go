package vnet

import "fmt"

// Feature bits of the network device, virtio 1.2 §5.1.3 (bit numbers).
const (
	FCsum             = 0  // device handles packets with partial checksum (TX offload)
	FGuestCsum        = 1  // driver handles packets with partial checksum (RX)
	FCtrlGuestOffload = 2  // control channel offloads reconfiguration
	FMTU              = 3  // device maximum MTU reporting
	FMAC              = 5  // device has a given MAC address
	FGuestTSO4        = 7  // driver can receive TSOv4
	FGuestTSO6        = 8  // driver can receive TSOv6
	FGuestECN         = 9  // driver can receive TSO with ECN
	FGuestUFO         = 10 // driver can receive UFO
	FHostTSO4         = 11 // device can receive TSOv4 (guest TX)
	FHostTSO6         = 12 // device can receive TSOv6
	FHostECN          = 13 // device can receive TSO with ECN
	FHostUFO          = 14 // device can receive UFO
	FMrgRxbuf         = 15 // driver can merge receive buffers
	FStatus           = 16 // configuration status field is available
	FCtrlVQ           = 17 // control channel is available
	FCtrlRx           = 18 // control channel RX mode support
	FCtrlVLAN         = 19 // control channel VLAN filtering
	FCtrlRxExtra      = 20 // control channel extra RX modes
	FGuestAnnounce    = 21 // driver can send gratuitous packets
	FMQ               = 22 // device supports multiqueue with automatic receive steering
	FCtrlMACAddr      = 23 // set MAC address through control channel
	FGuestUSO4        = 54 // driver can receive USOv4
	FGuestUSO6        = 55 // driver can receive USOv6
	FHostUSO          = 56 // device can receive USO
)

// Features returns the mask of the given bit numbers.
func Features(bits ...uint) uint64 {
	var m uint64
	for _, b := range bits {
		m |= 1 << b
	}
	return m
}

// Supported is the set of virtio-net and ring features this dataplane
// implements (the transport adds FMAC, FMTU, FStatus as it serves the config
// space, and offers what it wants of these).
var Supported = Features(32 /* VIRTIO_F_VERSION_1 */, 28 /* INDIRECT_DESC */, 29, /* EVENT_IDX */
	35, /* IN_ORDER: chains used in the order made available, a transmit batch's with one entry */
	FCsum, FGuestCsum, FCtrlGuestOffload, FGuestTSO4, FGuestTSO6, FGuestECN, FGuestUFO,
	FHostTSO4, FHostTSO6, FHostECN, FHostUFO, FMrgRxbuf, FCtrlVQ, FCtrlRx, FCtrlRxExtra,
	FCtrlVLAN, FGuestAnnounce, FMQ, FCtrlMACAddr, FGuestUSO4, FGuestUSO6, FHostUSO)

// guestOffloads are the features VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET may
// toggle (§5.1.6.5.6.1).
var guestOffloads = Features(FGuestCsum, FGuestTSO4, FGuestTSO6, FGuestECN, FGuestUFO, FGuestUSO4, FGuestUSO6)

func has(f uint64, bit uint) bool { return f&(1<<bit) != 0 }

// featureNames are the spec's names of the features a driver negotiates
// with this device (virtio 1.2, 5.1.3 and 6).
var featureNames = map[uint]string{
	FCsum: "CSUM", FGuestCsum: "GUEST_CSUM", FCtrlGuestOffload: "CTRL_GUEST_OFFLOADS", FMTU: "MTU", FMAC: "MAC",
	FGuestTSO4: "GUEST_TSO4", FGuestTSO6: "GUEST_TSO6", FGuestECN: "GUEST_ECN", FGuestUFO: "GUEST_UFO",
	FHostTSO4: "HOST_TSO4", FHostTSO6: "HOST_TSO6", FHostECN: "HOST_ECN", FHostUFO: "HOST_UFO",
	FMrgRxbuf: "MRG_RXBUF", FStatus: "STATUS", FCtrlVQ: "CTRL_VQ", FCtrlRx: "CTRL_RX", FCtrlVLAN: "CTRL_VLAN",
	FCtrlRxExtra: "CTRL_RX_EXTRA", FGuestAnnounce: "GUEST_ANNOUNCE", FMQ: "MQ", FCtrlMACAddr: "CTRL_MAC_ADDR",
	FGuestUSO4: "GUEST_USO4", FGuestUSO6: "GUEST_USO6", FHostUSO: "HOST_USO",
	28: "RING_INDIRECT_DESC", 29: "RING_EVENT_IDX", 30: "PROTOCOL_FEATURES", 32: "VERSION_1", 33: "ACCESS_PLATFORM",
	34: "RING_PACKED", 35: "IN_ORDER", 36: "ORDER_PLATFORM", 37: "SR_IOV", 38: "NOTIFICATION_DATA",
}

// FeatureNames lists the names of the features set in f, lowest bit
// first; a bit without a name is written as its number.
func FeatureNames(f uint64) []string {
	var out []string
	for b := uint(0); b < 64; b++ {
		if f&(1<<b) == 0 {
			continue
		}
		if n, ok := featureNames[b]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("bit%d", b))
		}
	}
	return out
}
