package vswitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"
)

// The flow cache: what flow export (package ipfix, IPFIX RFC 7011) reads.
// While it is on (EnableFlows) every frame the switch forwards (to a known
// destination or flooded in its VLAN) is counted in a flow keyed by
// ingress port, egress port (none for a flooded frame), MACs, VLAN,
// EtherType and, for IP, the addresses, protocol and ports (ICMP: type and
// code), with packets, bytes, first and last time and the TCP flags seen.
// Frames the switch drops at ingress are not counted (their drop counters
// are); frames dropped after the forwarding decision (an egress ACL or
// security group, a full shaper queue, a port that did not take them) are,
// as the switch decided to send them.
//
// Cost. Off, a batch loads one pointer and each frame tests it (one
// predictable branch). On, each counted frame parses its flow key from the
// switch's own copy of the headers (parseFlow: the head of a two-part
// frame, never the tenant's tail) and updates one entry in its ingress
// port's shard. Shards are per port and touched only under the port's input
// lock, which Input holds anyway: port goroutines never contend, and the
// exporter takes a port's lock only while it scans that port's shard.
//
// Bounds. Entries in all shards together are at most FlowConfig.MaxFlows,
// and one port's at most FlowConfig.MaxFlowsPerPort (a quarter of it by
// default: a tenant that floods new flows fills its own part, and the
// other ports' flows are still counted): a frame of a new flow past either
// is forwarded as always but not counted in any flow (FlowStats.Full
// counts such frames), nothing is evicted. A
// shard is an open-addressing table (linear probing, grown at 3/4 full,
// shrunk when the exporter finds it under 1/8 full) of 112-byte entries,
// keyed by a hash seeded per port so a tenant cannot aim collisions at it
// without knowing the seed (and could only slow its own port's shard).
//
// Sampling. With FlowConfig.Sampling N > 1 each port counts one frame in
// N (systematic count-based sampling, PSAMP RFC 5475 §5.1: the first of
// every N frames the port forwards); the counts are of the sampled frames,
// and the exporter tells collectors N so they scale them.

// Flow cache bounds and defaults.
const (
	// DefaultMaxFlows: 64 Ki flows, about 7 MiB of entries when full
	// (112 bytes each; at most 3/4 of a table is used).
	DefaultMaxFlows = 1 << 16
	// MaxMaxFlows bounds FlowConfig.MaxFlows (4 Mi flows: about 0.6 GiB
	// of tables at worst).
	MaxMaxFlows = 1 << 22
	// MaxSampling bounds FlowConfig.Sampling.
	MaxSampling = 1 << 24
	flowMinCap  = 64
)

// FlowConfig configures the flow cache (EnableFlows).
type FlowConfig struct {
	// MaxFlows bounds the flows cached in the whole switch; 0 means
	// DefaultMaxFlows.
	MaxFlows int
	// MaxFlowsPerPort bounds the flows one port's frames may hold, so
	// that one tenant's flood of new flows (a port scan, random
	// addresses) cannot take the whole cache and blind the export to
	// every other port; 0 means a quarter of MaxFlows.
	MaxFlowsPerPort int
	// Sampling: each port counts one frame in Sampling (0 and 1: every
	// frame).
	Sampling int
}

// Validate checks the configuration's bounds.
func (c FlowConfig) Validate() error {
	switch {
	case c.MaxFlows < 0 || c.MaxFlows > MaxMaxFlows:
		return fmt.Errorf("%w: max flows %d: want 1..%d (0: %d)", errConfig, c.MaxFlows, MaxMaxFlows, DefaultMaxFlows)
	case c.MaxFlowsPerPort < 0 || c.MaxFlowsPerPort > MaxMaxFlows:
		return fmt.Errorf("%w: max flows per port %d: want 1..%d (0: a quarter of max flows)", errConfig, c.MaxFlowsPerPort, MaxMaxFlows)
	case c.Sampling < 0 || c.Sampling > MaxSampling:
		return fmt.Errorf("%w: sampling %d: want 1..%d (one frame in N; 0 or 1: every frame)", errConfig, c.Sampling, MaxSampling)
	}
	return nil
}

// FlowEndReason says why a flow record was exported: IANA's flowEndReason
// (IPFIX Information Element 136, RFC 5102 §5.11.3).
type FlowEndReason uint8

// Flow end reasons.
const (
	FlowEndIdle   FlowEndReason = 1 // idle timeout: no frame for that long
	FlowEndActive FlowEndReason = 2 // active timeout: a long flow reported in slices
	FlowEndForced FlowEndReason = 4 // the cache was flushed (export stopped or reconfigured, the port removed)
)

func (r FlowEndReason) String() string {
	switch r {
	case FlowEndIdle:
		return "idle"
	case FlowEndActive:
		return "active"
	case FlowEndForced:
		return "forced"
	}
	return fmt.Sprintf("FlowEndReason(%d)", uint8(r))
}

// FlowRecord is one flow of the cache, as the exporter and the API see it.
type FlowRecord struct {
	In, Out           string // ingress and egress port names; Out "": flooded
	InIndex, OutIndex uint32 // their interface numbers (PortHandle.IfIndex); OutIndex 0: flooded
	SrcMAC, DstMAC    MAC
	VLAN              uint16
	EtherType         uint16 // after every VLAN tag
	IPVersion         uint8  // 4, 6, or 0 when not IP (or its header is truncated)
	Proto             uint8
	SrcIP, DstIP      netip.Addr // invalid when not IP
	SrcPort, DstPort  uint16     // TCP, UDP, SCTP; 0 otherwise
	ICMPTypeCode      uint16     // ICMP and ICMPv6: type<<8 | code
	TCPFlags          uint16     // every TCP header's flags OR'ed (RFC 7125: the 12 bits after the data offset)
	// Packets are the frames counted (sampled ones only, with sampling),
	// Bytes their lengths as the switch counts them (the whole frame, no
	// FCS), L3Bytes the octets after the Ethernet header and its VLAN
	// tags (for IP, the IP packet: IPFIX's octetDeltaCount).
	Packets, Bytes, L3Bytes uint64
	Start, End              int64 // switch clock (Switch.Now): the first and the last frame counted
	EndReason               FlowEndReason
}

// FlowStats are the flow cache's counters.
type FlowStats struct {
	Enabled  bool
	Active   int64  // flows in the cache
	MaxFlows int    // its bound
	PerPort  int    // the bound of one port's flows
	Sampling int    // one frame in Sampling is counted
	Full     uint64 // frames of new flows not counted: the cache held MaxFlows flows, or their port PerPort
}

// flowCache is one enabled flow cache; EnableFlows makes a new one.
type flowCache struct {
	max      int64
	perPort  int // entries one shard may hold
	sampling uint32
	n        atomic.Int64 // entries in every shard
}

// Packed flow key (flowEntry.k), 8 words. A word-2 bit marks a slot used,
// so an empty slot is all zeros.
const (
	fkL4     = 1 << 44 // ports present
	fkICMP   = 1 << 45 // ICMP type/code in the port bits
	fkUsed   = 1 << 63
	fkVIDOff = 32
)

// flowEntry is one cached flow: 112 bytes.
type flowEntry struct {
	k                       [8]uint64
	first, last             int64
	packets, bytes, l3bytes uint64
	hash                    uint32 // of k, for moves (deletion, growth)
	flags                   uint16
}

// flowShard is a port's part of the flow cache, guarded by the port's
// inMu.
type flowShard struct {
	fc   *flowCache  // the cache its entries count in
	tab  []flowEntry // power-of-two length; nil until the first flow
	n    int
	skip uint32 // sampling: frames to pass before the next one counted
	last int    // slot of the entry the last frame counted in: a train of one flow's frames skips the hash
	gen  uint32 // bumped when the table is replaced (resize)
	// scanGen is gen when the exporter's scan began (expire).
	scanGen uint32
	seed    [9]uint64
	full    atomic.Uint64 // never reset: frames not counted, cache full
}

func (sh *flowShard) reset(fc *flowCache) {
	sh.fc, sh.tab, sh.n, sh.skip = fc, nil, 0, 0
	sh.gen++
	if sh.seed == ([9]uint64{}) {
		for i := range sh.seed {
			sh.seed[i] = rand.Uint64()
		}
	}
}

// mum is wyhash's mixing step: the 128-bit product folded.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash mixes the key with the shard's secret seed (wyhash-style: four
// independent 64x64 products, then one more).
func (sh *flowShard) hash(k *[8]uint64) uint64 {
	s := &sh.seed
	h := mum(k[0]^s[0], k[1]^s[1]) ^ mum(k[2]^s[2], k[3]^s[3]) ^ mum(k[4]^s[4], k[5]^s[5]) ^ mum(k[6]^s[6], k[7]^s[7])
	return mum(h^s[8], 0x9e3779b97f4a7c15)
}

func keyEqual(a, b *[8]uint64) bool {
	return (a[0]^b[0])|(a[1]^b[1])|(a[2]^b[2])|(a[3]^b[3])|(a[4]^b[4])|(a[5]^b[5])|(a[6]^b[6])|(a[7]^b[7]) == 0
}

// flowFields parses what a flow record holds beyond the key's MACs: it
// fills k (parseFlow: the head only, every read bounds-checked) and
// returns the transport ports (ICMP: type and code in dport, icmp true),
// whether there were any, and the TCP flags.
func flowFields(data []byte, l3 int, et uint16, k *flowKey) (sport, dport uint16, ports, icmp bool, flags uint16) {
	parseFlow(data, l3, et, k, true)
	if k.l3 == 0 || k.l4 == 0 {
		return
	}
	l4 := data[k.l4:]
	switch {
	case k.proto == ipProtoTCP:
		if len(l4) >= 14 {
			// RFC 7125: tcpControlBits is the header's 16 bits at offset
			// 12 with the data offset zeroed.
			flags = binary.BigEndian.Uint16(l4[12:]) & 0x0fff
		}
		return k.sport, k.dport, k.hasL4, false, flags
	case k.proto == ipProtoUDP:
		return k.sport, k.dport, k.hasL4, false, 0
	case k.proto == ipProtoSCTP && len(l4) >= 4: // RFC 9260 §3.1: ports first, as TCP and UDP
		return binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]), true, false, 0
	case (k.l3 == 4 && k.proto == ipProtoICMP || k.l3 == 6 && k.proto == ipProtoICMPv6) && len(l4) >= 2:
		// IPFIX icmpTypeCodeIPv4/IPv6 (IE 32, 139): type * 256 + code.
		return 0, uint16(l4[0])<<8 | uint16(l4[1]), false, true, 0
	}
	return
}

const (
	ipProtoICMP   = 1
	ipProtoICMPv6 = 58
	ipProtoSCTP   = 132
)

// account counts frame f (forwarded to out, nil: flooded) in its ingress
// port's shard. It runs under h.inMu, in the batch that loaded fc.
func (h *PortHandle) account(fc *flowCache, p *pkt, data []byte, l3 int, et uint16, total int, out *PortHandle, now int64) {
	sh := &h.flows
	if sh.fc != fc {
		sh.reset(fc)
	}
	if fc.sampling > 1 {
		if sh.skip != 0 {
			sh.skip--
			return
		}
		sh.skip = fc.sampling - 1
	}
	var fk flowKey
	sport, dport, ports, icmp, flags := flowFields(data, l3, et, &fk)
	var k [8]uint64
	k[0] = fk.src | uint64(fk.ether)<<48
	k[1] = fk.dst | uint64(fk.l3)<<48 | uint64(fk.proto)<<56
	k[2] = fkUsed | uint64(p.vid)<<fkVIDOff | uint64(sport)<<16 | uint64(dport)
	if ports {
		k[2] |= fkL4
	}
	if icmp {
		k[2] |= fkICMP
	}
	k[3], k[4], k[5], k[6] = fk.sip[0], fk.sip[1], fk.dip[0], fk.dip[1]
	if out != nil {
		k[7] = uint64(out.ifIndex)
	}
	var e *flowEntry
	if sh.last < len(sh.tab) && keyEqual(&sh.tab[sh.last].k, &k) {
		e = &sh.tab[sh.last] // keys are unique: wherever it moved, this is the flow's entry
	} else {
		hash := sh.hash(&k)
		i := sh.lookup(&k, hash)
		if i < 0 {
			if i = sh.insert(&k, hash); i < 0 {
				sh.full.Add(1)
				return
			}
		}
		sh.last, e = i, &sh.tab[i]
	}
	if e.packets == 0 { // new, or reported at its active timeout since
		e.first = now
	}
	e.last = now
	e.packets++
	e.bytes += uint64(total)
	e.l3bytes += uint64(total - l3)
	e.flags |= flags
}

// lookup returns the slot of k's entry, or -1.
func (sh *flowShard) lookup(k *[8]uint64, hash uint64) int {
	if sh.tab == nil {
		return -1
	}
	mask := uint64(len(sh.tab) - 1)
	for i := hash & mask; ; i = (i + 1) & mask {
		e := &sh.tab[i]
		if e.k[2] == 0 {
			return -1
		}
		if e.hash == uint32(hash) && keyEqual(&e.k, k) {
			return int(i)
		}
	}
}

// insert adds k, which the shard does not hold, and returns its slot; -1
// when the cache or the port's part of it is full.
func (sh *flowShard) insert(k *[8]uint64, hash uint64) int {
	fc := sh.fc
	if sh.n >= fc.perPort {
		return -1
	}
	if fc.n.Add(1) > fc.max {
		fc.n.Add(-1)
		return -1
	}
	if (sh.n+1)*4 > len(sh.tab)*3 {
		sh.resize(max(flowMinCap, 2*len(sh.tab)))
	}
	sh.n++
	mask := uint64(len(sh.tab) - 1)
	i := hash & mask
	for sh.tab[i].k[2] != 0 {
		i = (i + 1) & mask
	}
	sh.tab[i] = flowEntry{k: *k, hash: uint32(hash)}
	return int(i)
}

// resize moves the entries into a table of n slots (a power of two).
func (sh *flowShard) resize(n int) {
	old := sh.tab
	sh.tab = make([]flowEntry, n)
	sh.gen++
	mask := uint32(n - 1)
	for j := range old {
		if e := &old[j]; e.k[2] != 0 {
			i := e.hash & mask
			for sh.tab[i].k[2] != 0 {
				i = (i + 1) & mask
			}
			sh.tab[i] = *e
		}
	}
}

// remove empties slot i by backward-shift deletion (Knuth 6.4 Algorithm
// R): later entries of its cluster that may live there move back, so no
// tombstones lengthen the probes.
func (sh *flowShard) remove(i int) {
	tab := sh.tab
	mask := len(tab) - 1
	for j := (i + 1) & mask; tab[j].k[2] != 0; j = (j + 1) & mask {
		home := int(tab[j].hash) & mask
		// The entry at j stays unless its home is cyclically outside (i, j].
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		tab[i] = tab[j]
		i = j
	}
	tab[i] = flowEntry{}
	sh.n--
	sh.fc.n.Add(-1)
}

// record fills r from entry e of port h's shard.
func (h *PortHandle) record(e *flowEntry, tp *topology, r *FlowRecord) {
	k := &e.k
	*r = FlowRecord{In: h.name, InIndex: h.ifIndex,
		SrcMAC: keyMAC(k[0]), DstMAC: keyMAC(k[1]), VLAN: uint16(k[2]>>fkVIDOff) & 0xfff,
		EtherType: uint16(k[0] >> 48), IPVersion: uint8(k[1] >> 48), Proto: uint8(k[1] >> 56),
		TCPFlags: e.flags, Packets: e.packets, Bytes: e.bytes, L3Bytes: e.l3bytes, Start: e.first, End: e.last}
	if k[2]&fkL4 != 0 {
		r.SrcPort, r.DstPort = uint16(k[2]>>16), uint16(k[2])
	}
	if k[2]&fkICMP != 0 {
		r.ICMPTypeCode = uint16(k[2])
	}
	switch r.IPVersion {
	case 4:
		r.SrcIP, r.DstIP = addr4(k[4]), addr4(k[6])
	case 6:
		r.SrcIP = addr6(k[3], k[4])
		r.DstIP = addr6(k[5], k[6])
	}
	if r.OutIndex = uint32(k[7]); r.OutIndex != 0 {
		r.Out = tp.nameOf(r.OutIndex)
	}
}

func addr4(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func addr6(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// nameOf returns the name of the port numbered i in tp ("" when it is
// gone: a record of a port removed since).
func (tp *topology) nameOf(i uint32) string {
	for _, h := range tp.ports {
		if h.ifIndex == i {
			return h.name
		}
	}
	return ""
}

// IfIndex is the port's interface number in exported flows (IPFIX
// ingressInterface and egressInterface): ports are numbered 1, 2, ... in
// the order they were added to the switch, and a number is never given
// again while the switch lives (a port removed and added again gets a new
// one). 0 stands for no port: a flooded frame's egress.
func (h *PortHandle) IfIndex() uint32 { return h.ifIndex }

// ErrFlowsOff: the flow cache is not enabled.
var ErrFlowsOff = errors.New("flow cache off")

// EnableFlows turns the flow cache on with cfg, or replaces it: flows of
// a cache it replaces are dropped (DrainFlows them first).
func (s *Switch) EnableFlows(cfg FlowConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("enable flows: %w", err)
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxFlowsPerPort == 0 {
		cfg.MaxFlowsPerPort = max(cfg.MaxFlows/4, 1)
	}
	fc := &flowCache{max: int64(cfg.MaxFlows), perPort: cfg.MaxFlowsPerPort, sampling: uint32(max(cfg.Sampling, 1))}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	s.flows.Store(fc)
	return nil
}

// DisableFlows turns the flow cache off and appends its flows to buf
// (FlowEndForced), as DrainFlows.
func (s *Switch) DisableFlows(buf []FlowRecord) []FlowRecord {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	fc := s.flows.Swap(nil)
	if fc == nil {
		return buf
	}
	return s.scanFlows(fc, 0, 0, true, buf)
}

// DrainFlows appends every cached flow to buf (FlowEndForced) and empties
// the cache, which stays on.
func (s *Switch) DrainFlows(buf []FlowRecord) []FlowRecord {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	fc := s.flows.Load()
	if fc == nil {
		return buf
	}
	return s.scanFlows(fc, 0, 0, true, buf)
}

// ExpireFlows appends to buf the flows due at the switch's time (Now):
// those idle for idle or longer (removed, FlowEndIdle), and those whose
// first frame since their last report is active or more ago (reported
// and kept counting from zero, FlowEndActive). Flows of ports removed
// since the last call are all due (FlowEndForced).
func (s *Switch) ExpireFlows(active, idle time.Duration, buf []FlowRecord) []FlowRecord {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	fc := s.flows.Load()
	if fc == nil {
		return buf
	}
	return s.scanFlows(fc, int64(active), int64(idle), false, buf)
}

// scanFlows runs under s.flowMu.
func (s *Switch) scanFlows(fc *flowCache, active, idle int64, force bool, buf []FlowRecord) []FlowRecord {
	tp := s.topo.Load()
	now := s.clock.Now()
	for _, h := range s.goneFlows {
		buf = h.expireFlows(tp, fc, now, 0, 0, true, buf)
	}
	clear(s.goneFlows)
	s.goneFlows = s.goneFlows[:0]
	for _, h := range tp.ports {
		buf = h.expireFlows(tp, fc, now, active, idle, force, buf)
	}
	return buf
}

// flowScanChunk is how many slots a scan looks at per hold of a port's
// input lock: about 50 µs of a 64 Ki-flow shard (BENCHMARKS.md), so the
// port's frames never wait on the exporter longer than that.
const flowScanChunk = 4096

// expireFlows scans h's shard, taking its input lock for a chunk of
// slots at a time.
func (h *PortHandle) expireFlows(tp *topology, fc *flowCache, now, active, idle int64, force bool, buf []FlowRecord) []FlowRecord {
	for i := 0; i >= 0; {
		h.inMu.Lock()
		buf, i = h.flows.expire(h, tp, fc, now, active, idle, force, buf, i)
		h.inMu.Unlock()
	}
	return buf
}

// expire appends the due entries of the shard's next chunk of slots,
// from slot from, to buf (all of them when force) and removes them, or
// resets an active one's counts; it returns where the next chunk starts,
// -1 at the end, where it shrinks a table left mostly empty. Under
// h.inMu, released between chunks: the port may add flows meanwhile
// (into empty slots: nothing moves, and new flows are not due), but a
// table it grew is scanned again from its start (what was due is gone
// or reset, so nothing is reported twice).
func (sh *flowShard) expire(h *PortHandle, tp *topology, fc *flowCache, now, active, idle int64, force bool, buf []FlowRecord, from int) ([]FlowRecord, int) {
	if sh.fc != fc || sh.tab == nil {
		return buf, -1
	}
	if from == 0 || sh.gen != sh.scanGen {
		from, sh.scanGen = 0, sh.gen
	}
	end := from + flowScanChunk
	for i := from; i < len(sh.tab); {
		if i >= end {
			return buf, i
		}
		e := &sh.tab[i]
		if e.k[2] == 0 {
			i++
			continue
		}
		reason := FlowEndReason(0)
		switch {
		case force:
			reason = FlowEndForced
		case now-e.last >= idle:
			reason = FlowEndIdle
		case e.packets != 0 && now-e.first >= active:
			reason = FlowEndActive
		}
		if reason == 0 {
			i++
			continue
		}
		if e.packets != 0 {
			buf = append(buf, FlowRecord{})
			r := &buf[len(buf)-1]
			h.record(e, tp, r)
			r.EndReason = reason
		}
		if reason == FlowEndActive {
			e.packets, e.bytes, e.l3bytes, e.flags = 0, 0, 0, 0
			i++
			continue
		}
		// Removal moves a later entry into slot i: look at it again.
		// One moved from the table's start to its end may be looked at
		// twice, which changes nothing (it was not due).
		sh.remove(i)
	}
	if force && sh.n == 0 {
		sh.tab = nil // every entry went (none came between chunks): free the table
	} else if len(sh.tab) > flowMinCap && sh.n*8 < len(sh.tab) {
		sh.resize(max(flowMinCap, 1<<bits.Len(uint(sh.n*2))))
	}
	return buf, -1
}

// FlowStats returns the flow cache's counters.
func (s *Switch) FlowStats() FlowStats {
	st := FlowStats{Full: s.flowFullGone.Load()}
	for _, h := range s.topo.Load().ports {
		st.Full += h.flows.full.Load()
	}
	if fc := s.flows.Load(); fc != nil {
		st.Enabled, st.Active, st.MaxFlows, st.PerPort, st.Sampling = true, fc.n.Load(), int(fc.max), fc.perPort, int(fc.sampling)
	}
	return st
}

// FlowSort orders Flows' answer.
type FlowSort uint8

// Flow orders.
const (
	FlowsByBytes FlowSort = iota
	FlowsByPackets
)

// Flows returns the cached flows with the most bytes (or packets), at
// most limit of them (0: all), and how many flows the cache holds.
func (s *Switch) Flows(limit int, by FlowSort) ([]FlowRecord, int, error) {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	fc := s.flows.Load()
	if fc == nil {
		return nil, 0, ErrFlowsOff
	}
	tp := s.topo.Load()
	var out []FlowRecord
	for _, h := range tp.ports {
		h.inMu.Lock()
		if sh := &h.flows; sh.fc == fc {
			for i := range sh.tab {
				if e := &sh.tab[i]; e.k[2] != 0 && e.packets != 0 {
					out = append(out, FlowRecord{})
					h.record(e, tp, &out[len(out)-1])
				}
			}
		}
		h.inMu.Unlock()
	}
	key := func(r *FlowRecord) uint64 { return r.Bytes }
	if by == FlowsByPackets {
		key = func(r *FlowRecord) uint64 { return r.Packets }
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := key(&out[i]), key(&out[j]); a != b {
			return a > b
		}
		return out[i].Start < out[j].Start
	})
	n := len(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit:limit]
	}
	return out, n, nil
}

// PortIndex is a port's name and its interface number (IfIndex).
type PortIndex struct {
	Index uint32
	Name  string
}

// PortIndexes lists the ports' interface numbers, in order.
func (s *Switch) PortIndexes() []PortIndex {
	tp := s.topo.Load()
	out := make([]PortIndex, 0, len(tp.ports))
	for _, h := range tp.ports {
		out = append(out, PortIndex{Index: h.ifIndex, Name: h.name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}
