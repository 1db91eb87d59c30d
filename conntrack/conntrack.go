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
// New connection with its own rules and stores it with Commit (a switch
// first offers the frame to TrackFast, and does this when it declines):
//
//	conntrack.Parse(data, l3, etherType, dir, &p)
//	switch z.Track(&p, now) {
//	case conntrack.Untracked, conntrack.Established, conntrack.Reply, conntrack.Related:
//		// pass
//	case conntrack.New:
//		if rulesAllow(&p) && z.Commit(&p, now) {
//			// pass
//		}
//	case conntrack.Invalid:
//		// drop
//	}
//
// # Keys
//
// Parse fills Key from the port's side whatever the direction, so the
// table needs one entry per connection. An entry remembers the
// direction of the frame that opened it (Entry.Origin): frames in that
// direction are Established, frames the other way Reply.
//
// # States
//
// TCP follows Linux's nf_conntrack_proto_tcp.c with its defaults
// (nf_conntrack_tcp_loose=1, nf_conntrack_tcp_be_liberal=0): the
// tcp_conntracks state table, tcp_valid_flags, and window tracking after
// Guido van Rooij's "Real Stateful TCP Packet Filtering in IP Filter"
// (tcp.go). UDP, ICMP echo and other protocols are pseudo-connections:
// UNREPLIED until a frame passes in the reply direction, then REPLIED.
// Without an entry, a frame that cannot open a connection is Invalid,
// not New: a TCP SYN/ACK or RST, an ICMP echo reply (as in Linux). An
// ICMP/ICMPv6 error is Related when the connection it quotes exists,
// else Invalid. IPv6 neighbour discovery and MLD are Untracked.
//
// # Fragments
//
// The switch does not reassemble (frag.go). A first fragment is tracked
// by its transport header; when it passes (Track says Untracked,
// Established or Reply, or Commit succeeds) Track/Commit
// themselves remember its (family, direction, addresses, protocol for
// IPv4, identification) in the zone's bounded fragment cache, for
// FragLifetime. A later fragment (KindFragment) gets the first
// fragment's verdict when the cache holds its identification, else it is
// Invalid. Tiny first fragments and IPv4 TCP fragments at offset 8
// (RFC 1858, RFC 3128) and IPv6 first fragments without the transport
// header (RFC 7112) are Invalid. Overlapping fragments are not detected:
// discarding them is the receiving guest's job (RFC 5722 for IPv6; every
// current stack does it for IPv4 too).
//
// # Bounds
//
// A zone holds at most its limit (Config.ZoneLimit, SetLimit) and the
// table at most Config.TableLimit entries; Commit refuses past either
// and never evicts. The fragment cache holds FragCacheSize entries per
// zone; past that a new first fragment replaces the oldest of its set
// (counted). Parse is bounded (at most MaxExtHeaders IPv6 extension
// headers, 40 bytes of TCP options).
//
// # Concurrency and cost
//
// Every zone method is safe for concurrent use. A zone's entries are in
// 64 shards by a seeded hash of the Key, each a mutex, a slab of
// 128-byte entries with a free list and an open-addressing index over it
// (zone.go): tracking a frame of a known connection is one hash, one
// lock, one index probe, the state update, and no allocation. A caller
// that tracks trains of one connection's frames (a switch's batches)
// passes a Hint to TrackHint, which skips the hash and the probe while
// the shard has freed no slot since the hint was taken. The segments of
// established TCP connections over IPv4, nearly all of a switch's
// traffic, have a path of their own (fast.go): TrackFast tracks one from
// the frame's bytes, with a HintCache (a Hint per connection) instead of
// a Packet, and says false for any other frame, which then takes
// ParseHead and TrackHint; the verdicts and entries are the same either
// way. Commit
// allocates only when its shard's slab or index grows (never in steady
// churn); memory grows with a zone's high-water mark, bounded by its
// limit, and is returned by Flush and Close. Expired entries are treated
// as absent, removed lazily by Track and Commit and in bulk by Sweep,
// which holds a shard's lock for one slab chunk (256 entries) at a time.
//
// The caller's clock (now, in nanoseconds) drives every timeout: tests
// use plain numbers.
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
	SAck   uint32 // the highest right edge of the SACK blocks (RFC 2018) after Ack, else Ack
	Win    uint16 // window, unscaled
	WScale int8   // window scale option in a SYN, -1 when absent
	PayLen uint32 // TCP payload bytes (for window tracking); in a first fragment an upper bound (the rest of a 64 KiB datagram)

	EchoReply bool // KindICMPEcho: a reply (else a request)

	// Fragments (IPv4 and IPv6).
	FragID    uint32 // identification
	FragFirst bool   // the first fragment of a fragmented packet (offset 0, more fragments)
	FragOff   uint16 // fragment offset in 8-byte units
}

var kindNames = [...]string{"untracked", "tcp", "udp", "icmp-echo", "icmp-error", "other", "fragment", "malformed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// TCP flags as in Packet.Flags.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
	FlagURG uint8 = 0x20
)

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
