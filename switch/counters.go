package vswitch

import "sync/atomic"

// DropReason says why the switch dropped a frame.
type DropReason int

// Drop reasons. Ingress drops are counted on the ingress port, egress drops
// (DropShaperQueue, DropNoBuffer) on the egress port.
const (
	DropVLAN          DropReason = iota // VLAN ingress filtering, tagged on access, VID 4095
	DropPolicer                         // ingress policer out of tokens
	DropShaperQueue                     // egress shaper class queue full (tail drop)
	DropStorm                           // broadcast/multicast/unknown-unicast storm control
	DropMACLimit                        // port's learned-MAC limit reached
	DropSpoofed                         // source MAC not in the port's allowed list
	DropMalformed                       // short, oversize, bad tags, bad offload metadata
	DropNoBuffer                        // destination Port.Send did not accept the frame
	DropReserved                        // reserved link-local destination (01-80-C2-00-00-0X), never relayed
	DropACL                             // denied by the ingress port's ACL
	DropFDBFull                         // new source MAC while the FDB holds Config.FDBMaxEntries learned entries
	DropMACMove                         // source MAC held by another port (MAC-move hold-down, or that port's own MAC)
	DropSourceFault                     // the frame's payload could not be read: the sending tenant's memory vanished under the copy
	DropSecurityGroup                   // a new connection no rule of the port's security group allows
	DropCTInvalid                       // connection tracking: impossible TCP flags, out of window, a bad fragment, a malformed header
	DropCTFull                          // connection tracking: a new connection while the port's (or the switch's) table is full
	NumDropReasons

	dropNone DropReason = -1
)

var dropNames = [NumDropReasons]string{"vlan", "policer", "shaper_queue", "storm", "mac_limit", "spoofed", "malformed", "no_buffer", "reserved", "acl", "fdb_full", "mac_move", "source_fault", "security_group", "ct_invalid", "ct_full"}

func (r DropReason) String() string {
	if r < 0 || r >= NumDropReasons {
		return "unknown"
	}
	return dropNames[r]
}

// PortCounters is a snapshot of one port's counters.
type PortCounters struct {
	Name               string
	RxPackets, RxBytes uint64 // frames accepted by Input (before drops)
	TxPackets, TxBytes uint64 // frames accepted by Port.Send
	Drops              [NumDropReasons]uint64
	LearnedMACs        int64 // dynamic FDB entries pointing at this port
	ShaperQueued       int   // frames waiting in the egress shaper
}

// SwitchCounters is a snapshot of switch-wide counters.
type SwitchCounters struct {
	FDBEntries     int    // entries in the FDB, static included
	DynamicEntries int    // learned entries: what MaxEntries bounds
	MaxEntries     int    // the bound on learned entries (Config.FDBMaxEntries)
	Learned        uint64 // dynamic entries created
	Moves          uint64 // dynamic entries that moved to another port
	Aged           uint64 // dynamic entries removed by Expire
}

// portCounters are updated atomically, at most once per batch per field.
type portCounters struct {
	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	drops              [NumDropReasons]atomic.Uint64
}

func (c *portCounters) addDrops(d *[NumDropReasons]uint64) {
	for i, n := range d {
		if n != 0 {
			c.drops[i].Add(n)
			d[i] = 0
		}
	}
}
