// Package conntrack tracks connections for stateful security groups: one
// Zone per switch port (so tenants with overlapping addresses never see
// each other's entries), all zones under one Table that holds the global
// entry limit, the timeouts and the counters.
//
// Every entry is seen from its port's side: Key.Local is the address of
// the port's guest (or frontend), Key.Remote the other end, whichever way
// the frame goes. A frame leaving the port (Outbound) and its reply
// coming back to it (Inbound) therefore have the same Key, and one map
// lookup serves both directions.
//
// The caller parses a frame once (Parse, from its own copy of the bytes:
// guest memory is never read twice), asks Track for a verdict, decides a
// New connection with its own rules and stores it with Commit.
//
// This file is the API; the implementation is being written.
package conntrack

// Dir is the direction of a frame relative to the zone's port.
type Dir uint8

const (
	Outbound Dir = iota // sent by the port's guest into the switch
	Inbound             // leaving the switch through the port, to its guest
)

func (d Dir) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// Key identifies a connection from its port's side. IPv4 addresses are
// stored IPv4-mapped (::ffff:a.b.c.d). For ICMP echo, LPort is the
// identifier and RPort 0; for protocols without ports both are 0.
type Key struct {
	Local, Remote [16]byte
	LPort, RPort  uint16
	Proto         uint8 // IP protocol / IPv6 next header (after extension headers)
	Family        uint8 // 4 or 6
}

// Kind says how a parsed frame is tracked.
type Kind uint8

const (
	KindUntracked Kind = iota // not IP, or IPv6 neighbour discovery/MLD, ...: not subject to tracking
	KindTCP
	KindUDP
	KindICMPEcho  // ICMP/ICMPv6 echo request or reply (a pseudo-connection keyed by the identifier)
	KindICMPError // an ICMP/ICMPv6 error; Inner holds the packet it quotes
	KindOther     // another protocol: tracked by address pair
	KindFragment  // a non-first fragment: no L4 header
	KindMalformed // a truncated or impossible header: Invalid
)

// Packet is what Parse extracts from a frame: everything tracking decides
// on, copied, so the frame's bytes are not read again.
type Packet struct {
	Key   Key
	Dir   Dir
	Kind  Kind
	Inner Key // KindICMPError: the quoted packet's key, from the port's side

	// TCP
	Flags  uint8  // FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20
	Seq    uint32 // sequence number
	Ack    uint32 // acknowledgement number
	Win    uint16 // window, unscaled
	WScale int8   // window scale option in a SYN, -1 when absent
	PayLen uint32 // TCP payload bytes (for window tracking)

	EchoReply bool // KindICMPEcho: a reply (else a request)

	// Fragments (IPv4 and IPv6).
	FragID    uint32 // identification
	FragFirst bool   // the first fragment of a fragmented packet (offset 0, more fragments)
	FragOff   uint16 // fragment offset in 8-byte units
}

// Verdict is Track's answer.
type Verdict uint8

const (
	Untracked   Verdict = iota // not subject to tracking: pass
	New                        // no entry: decide with rules, then Commit
	Established                // part of a tracked connection, in the direction that opened it
	Reply                      // part of a tracked connection, the other direction
	Related                    // an ICMP error about a tracked connection
	Invalid                    // impossible flags, out of window, a bad fragment, a malformed header
)

var verdictNames = [...]string{"untracked", "new", "established", "reply", "related", "invalid"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}
