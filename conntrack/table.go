package conntrack

import "time"

// Timeouts are how long an idle entry lives, per state. The defaults are
// Linux's (nf_conntrack_tcp_timeout_*, nf_conntrack_udp_timeout[_stream],
// nf_conntrack_icmp_timeout, nf_conntrack_generic_timeout, as in
// Documentation/networking/nf_conntrack-sysctl.rst).
type Timeouts struct {
	TCPSynSent     time.Duration // 120 s
	TCPSynRecv     time.Duration // 60 s
	TCPEstablished time.Duration // 5 days (432000 s)
	TCPFinWait     time.Duration // 120 s
	TCPCloseWait   time.Duration // 60 s
	TCPLastAck     time.Duration // 30 s
	TCPTimeWait    time.Duration // 120 s
	TCPClose       time.Duration // 10 s
	UDP            time.Duration // 30 s: seen in one direction only
	UDPStream      time.Duration // 120 s: seen in both
	ICMP           time.Duration // 30 s
	Other          time.Duration // 600 s
}

// DefaultTimeouts returns Linux's defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynSent: 120 * time.Second, TCPSynRecv: 60 * time.Second,
		TCPEstablished: 432000 * time.Second, TCPFinWait: 120 * time.Second,
		TCPCloseWait: 60 * time.Second, TCPLastAck: 30 * time.Second,
		TCPTimeWait: 120 * time.Second, TCPClose: 10 * time.Second,
		UDP: 30 * time.Second, UDPStream: 120 * time.Second,
		ICMP: 30 * time.Second, Other: 600 * time.Second,
	}
}

// Default limits.
const (
	DefaultZoneLimit  = 65536   // entries per zone (port)
	DefaultTableLimit = 1 << 20 // entries over all zones
)

// Config configures a Table. Zero values take the defaults.
type Config struct {
	Timeouts   Timeouts // zero fields: DefaultTimeouts' value
	ZoneLimit  int      // per-zone entry limit (DefaultZoneLimit)
	TableLimit int      // global entry limit (DefaultTableLimit)
}

// Counters are a zone's (or, summed, the table's) counters.
type Counters struct {
	Entries     uint64 // live entries now
	New         uint64 // connections committed
	Invalid     uint64 // frames judged Invalid
	ZoneFull    uint64 // commits refused: the zone was at its limit
	TableFull   uint64 // commits refused: the table was at its global limit
	Expired     uint64 // entries removed by their timeout
	Flushed     uint64 // entries removed by Flush
	Related     uint64 // ICMP errors passed as Related
	FragDropped uint64 // fragments refused (no first fragment seen, tiny or overlapping offsets)
}

// Entry is a snapshot of one tracked connection.
type Entry struct {
	Key     Key
	Origin  Dir           // the direction of the frame that opened it
	State   string        // TCP state (SYN_SENT, ESTABLISHED, ...), or "UNREPLIED"/"REPLIED"
	Expires time.Duration // time left before it times out
	Packets [2]uint64     // frames seen per Dir
}

// Table holds every zone's entries and the global limit.
type Table struct{ cfg Config }

// NewTable returns a table.
func NewTable(cfg Config) *Table { return &Table{cfg: cfg} }

// Zone is one port's connection table. Safe for concurrent use: frames
// from the port and frames to it are tracked on different goroutines.
type Zone struct{ t *Table }

// NewZone returns a new, empty zone of t.
func (t *Table) NewZone() *Zone { return &Zone{t: t} }

// Close removes the zone's entries (returning them to the global count).
func (z *Zone) Close() {}

// Track looks p up at time now (nanoseconds) and advances the
// connection's state. New means no entry exists: nothing is stored until
// Commit.
func (z *Zone) Track(p *Packet, now int64) Verdict { return Untracked }

// Commit stores p's connection after Track said New and the caller's
// rules allowed it. It returns false when the zone or the table is full
// (counted): the frame is to be dropped.
func (z *Zone) Commit(p *Packet, now int64) bool { return true }

// Len returns the number of live entries.
func (z *Zone) Len() int { return 0 }

// Flush removes every entry and returns how many there were.
func (z *Zone) Flush() int { return 0 }

// Sweep removes the entries that timed out by now and returns how many.
func (z *Zone) Sweep(now int64) int { return 0 }

// Entries calls fn for each live entry (a snapshot per entry) until it
// returns false.
func (z *Zone) Entries(now int64, fn func(Entry) bool) {}

// Counters returns the zone's counters.
func (z *Zone) Counters() Counters { return Counters{} }

// Parse fills p from a frame. l3 is the offset of the IP header in data
// (after every VLAN tag) and etherType its EtherType; dir is the frame's
// direction relative to the zone's port. It never reads data out of
// bounds and never panics; a truncated or impossible header is
// KindMalformed.
func Parse(data []byte, l3 int, etherType uint16, dir Dir, p *Packet) {
	*p = Packet{Dir: dir, Kind: KindUntracked}
}
