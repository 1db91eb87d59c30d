package conntrack

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts are how long an idle entry lives, per state. The defaults are
// Linux's (nf_conntrack_tcp_timeout_*, nf_conntrack_udp_timeout[_stream],
// nf_conntrack_icmp_timeout, nf_conntrack_generic_timeout, as in
// Documentation/networking/nf_conntrack-sysctl.rst).
type Timeouts struct {
	TCPSynSent     time.Duration // 120 s (also SYN_SENT2, a simultaneous open)
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

	// TCPUnack caps the timeout while data is unacknowledged and for a
	// picked-up connection not yet answered (nf_conntrack_tcp_timeout_unacknowledged).
	TCPUnack time.Duration // 300 s
	// TCPRetrans caps it after 3 retransmissions of a segment or while a
	// window is zero (nf_conntrack_tcp_timeout_max_retrans).
	TCPRetrans time.Duration // 300 s
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
		TCPUnack: 300 * time.Second, TCPRetrans: 300 * time.Second,
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
	Entries       uint64 // entries held now (expired ones not yet removed included)
	New           uint64 // connections committed
	Invalid       uint64 // frames judged Invalid
	ZoneFull      uint64 // commits refused: the zone was at its limit
	TableFull     uint64 // commits refused: the table was at its global limit
	Expired       uint64 // entries removed by their timeout
	Flushed       uint64 // entries removed by Flush
	Related       uint64 // ICMP errors passed as Related
	FragDropped   uint64 // fragments refused (no first fragment seen, tiny or at offset 8)
	FragCacheFull uint64 // first fragments remembered in place of a live one (the cache was full)
}

func (c *Counters) add(o Counters) {
	c.Entries += o.Entries
	c.New += o.New
	c.Invalid += o.Invalid
	c.ZoneFull += o.ZoneFull
	c.TableFull += o.TableFull
	c.Expired += o.Expired
	c.Flushed += o.Flushed
	c.Related += o.Related
	c.FragDropped += o.FragDropped
	c.FragCacheFull += o.FragCacheFull
}

// Entry is a snapshot of one tracked connection.
type Entry struct {
	Key     Key
	Origin  Dir           // the direction of the frame that opened it
	State   string        // TCP state (SYN_SENT, ESTABLISHED, ...), or "UNREPLIED"/"REPLIED"
	Expires time.Duration // time left before it times out
	Packets [2]uint64     // frames seen per Dir
}

// timeouts are Timeouts in nanoseconds, indexed for the data path.
type timeouts struct {
	tcp                                         [tcpNumStates]int64 // by TCP state
	unack, retrans, udp, udpStream, icmp, other int64
}

func makeTimeouts(t Timeouts) *timeouts {
	d := DefaultTimeouts()
	pick := func(v, def time.Duration) int64 {
		if v <= 0 {
			return int64(def)
		}
		return int64(v)
	}
	to := &timeouts{
		unack:     pick(t.TCPUnack, d.TCPUnack),
		retrans:   pick(t.TCPRetrans, d.TCPRetrans),
		udp:       pick(t.UDP, d.UDP),
		udpStream: pick(t.UDPStream, d.UDPStream),
		icmp:      pick(t.ICMP, d.ICMP),
		other:     pick(t.Other, d.Other),
	}
	to.tcp[tcpSynSent] = pick(t.TCPSynSent, d.TCPSynSent)
	to.tcp[tcpSynSent2] = to.tcp[tcpSynSent]
	to.tcp[tcpSynRecv] = pick(t.TCPSynRecv, d.TCPSynRecv)
	to.tcp[tcpEstablished] = pick(t.TCPEstablished, d.TCPEstablished)
	to.tcp[tcpFinWait] = pick(t.TCPFinWait, d.TCPFinWait)
	to.tcp[tcpCloseWait] = pick(t.TCPCloseWait, d.TCPCloseWait)
	to.tcp[tcpLastAck] = pick(t.TCPLastAck, d.TCPLastAck)
	to.tcp[tcpTimeWait] = pick(t.TCPTimeWait, d.TCPTimeWait)
	to.tcp[tcpClose] = pick(t.TCPClose, d.TCPClose)
	return to
}

// Table holds every zone's entries and the global limit.
type Table struct {
	cfg   Config
	to    atomic.Pointer[timeouts]
	sec   [4]uint64    // hash secrets (hashKey), random per table
	count atomic.Int64 // entries over all zones
	limit int64

	mu      sync.Mutex
	zones   map[*Zone]struct{}
	retired Counters // counters of closed zones, so that the sums only grow
}

// NewTable returns a table.
func NewTable(cfg Config) *Table {
	if cfg.ZoneLimit <= 0 {
		cfg.ZoneLimit = DefaultZoneLimit
	}
	if cfg.TableLimit <= 0 {
		cfg.TableLimit = DefaultTableLimit
	}
	t := &Table{
		cfg:   cfg,
		limit: int64(cfg.TableLimit),
		zones: make(map[*Zone]struct{}),
	}
	for i := range t.sec {
		t.sec[i] = rand.Uint64() // ChaCha8: the shard a key lands in is not predictable
	}
	t.to.Store(makeTimeouts(cfg.Timeouts))
	return t
}

// SetTimeouts replaces the timeouts (zero fields: the defaults). An entry
// takes the new ones when a frame next refreshes it.
func (t *Table) SetTimeouts(to Timeouts) {
	t.to.Store(makeTimeouts(to))
}

// Len returns the number of entries over all zones.
func (t *Table) Len() int { return int(t.count.Load()) }

// Limit returns the global entry limit.
func (t *Table) Limit() int { return int(t.limit) }

// ZoneLimit returns the entry limit new zones get (Config.ZoneLimit, or
// its default).
func (t *Table) ZoneLimit() int { return t.cfg.ZoneLimit }

// Counters returns the sum of every zone's counters, closed zones
// included (their Entries are 0).
func (t *Table) Counters() Counters {
	t.mu.Lock()
	c := t.retired
	zs := make([]*Zone, 0, len(t.zones))
	for z := range t.zones {
		zs = append(zs, z)
	}
	t.mu.Unlock()
	for _, z := range zs {
		c.add(z.Counters())
	}
	return c
}

// Sweep sweeps every zone (Zone.Sweep) and returns how many entries it
// removed.
func (t *Table) Sweep(now int64) int {
	t.mu.Lock()
	zs := make([]*Zone, 0, len(t.zones))
	for z := range t.zones {
		zs = append(zs, z)
	}
	t.mu.Unlock()
	n := 0
	for _, z := range zs {
		n += z.Sweep(now)
	}
	return n
}

// reserve takes one entry of the global limit.
func (t *Table) reserve() bool {
	for {
		n := t.count.Load()
		if n >= t.limit {
			return false
		}
		if t.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// NewZone returns a new, empty zone of t, with the table's zone limit.
func (t *Table) NewZone() *Zone {
	z := &Zone{t: t, id: zoneIDs.Add(1)}
	z.limit.Store(int64(t.cfg.ZoneLimit))
	t.mu.Lock()
	t.zones[z] = struct{}{}
	t.mu.Unlock()
	return z
}
