package vnet

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
	FCsum, FGuestCsum, FCtrlGuestOffload, FGuestTSO4, FGuestTSO6, FGuestECN, FGuestUFO,
	FHostTSO4, FHostTSO6, FHostECN, FHostUFO, FMrgRxbuf, FCtrlVQ, FCtrlRx, FCtrlRxExtra,
	FCtrlVLAN, FGuestAnnounce, FMQ, FCtrlMACAddr, FGuestUSO4, FGuestUSO6, FHostUSO)

// guestOffloads are the features VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET may
// toggle (§5.1.6.5.6.1).
var guestOffloads = Features(FGuestCsum, FGuestTSO4, FGuestTSO6, FGuestECN, FGuestUFO, FGuestUSO4, FGuestUSO6)

func has(f uint64, bit uint) bool { return f&(1<<bit) != 0 }
