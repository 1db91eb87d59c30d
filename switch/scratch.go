package vswitch

import (
	"encoding/binary"

	"github.com/hvnet/hvnet/conntrack"
)

// scratch is an input queue's per-batch working memory for forwarding,
// owned by the goroutine calling Input (under the queue's lock). Rewritten frames
// (tag pushed or popped, checksum completed, GSO segments) are built in
// arena; outF, outIdx and outPCP list what goes where. Both are flushed
// to the destination ports when full and at the end of the batch, then
// reused: nothing is allocated per frame.
type scratch struct {
	sg  *sgSet           // the ingress port's security group, for this batch
	fc  *flowCache       // the flow cache, for this batch; nil: off
	ctp conntrack.Packet // a frame parsed for connection tracking
	// The last connection tracked at this port's ingress (its own
	// zone) and at an egress (a destination's zone): a train of one
	// flow's segments skips the hash and index probe (conntrack.Hint;
	// it holds no pointer, so it may outlive its zone).
	ctOut, ctIn conntrack.Hint
	// The same for the segments of established TCP connections
	// (conntrack.TrackFast), a hint per connection: a batch interleaves
	// tens of them. 16 KiB each, allocated on the first such segment.
	ctOutC, ctInC conntrack.HintCache

	arena []byte
	used  int
	gen   uint32 // bumped on every flush: arena contents are gone

	// The batch's outputs, in the order emitted: frame, destination's
	// index in the batch's topology, priority. one is the destination
	// of them all while there is only one (the common case: flush hands
	// outF on as it is), -1 when there are several.
	outF   []Frame
	outIdx []int32
	outPCP []uint8
	one    int32
	sorted []Frame
	pcps   []uint8
	counts []int32
	touch  []int32

	l2    [16 + 4*maxTags + 2]byte // L2 header of GSO segments
	whole []byte                   // a two-part frame made whole for segmentation
	drops [NumDropReasons]uint64

	// Per-frame copies shared by all destinations that want the same form.
	untag, tag       []byte
	untagGen, tagGen uint32

	// Per-batch caches: the last source learned and the last destination
	// looked up (batches are usually a few flows).
	srcKey uint64
	srcOK  bool
	// The batch's last forwarding decision, for the frames behind it
	// with the same header (a train of one flow's frames); lastOK: the
	// batch may use it.
	last   lastDecision
	lastOK bool
	batch  uint32 // batch number: dcache entries of older batches are void
	dcache [dcacheSize]dcacheEntry

	// The last destination's Caps, asked once a batch (Input forgets
	// capsPort at its end): a port whose guest renegotiates its
	// features meanwhile still gets only frames it can take, as its Send
	// checks them.
	capsPort *PortHandle
	caps     Caps

	tp    *topology // the batch's topology: outIdx indexes it
	now   int64
	steer int32 // the batch's input queue, the destinations' queue hint (QueuePort); -1: none

	// The batch's ACL and a run-length count of its hits: consecutive
	// frames of a flow hit the same rule, so the shared atomic counter is
	// added to once per run rather than once per frame.
	acl     *aclSet
	aclRule int
	aclRun  uint64

	// The ACL flow cache (aclcache.go), its generation and the set it
	// belongs to, and how many lookups missed (for tests).
	acache    *aclCache
	aclGen    uint32
	aclLast   *aclSet
	aclMisses uint64

	// Egress ACLs (aclegress.go): the frame's L3 offset and EtherType,
	// its flow key parsed on the first egress check (fkOK), the egress
	// verdict cache, and the run-length hit count of the last set.
	l3         int
	et         uint16
	fk         flowKey
	fkOK       bool
	ecache     *aclCache
	eaclMisses uint64
	eSet       *aclSet
	eRule      int
	eRun       uint64
}

func (sc *scratch) countACLHit(i int) {
	if sc.aclRun != 0 && sc.aclRule != i {
		sc.acl.hits[sc.aclRule].Add(sc.aclRun)
		sc.aclRun = 0
	}
	sc.aclRule = i
	sc.aclRun++
}

func (sc *scratch) flushACLHits() {
	if sc.aclRun != 0 {
		sc.acl.hits[sc.aclRule].Add(sc.aclRun)
		sc.aclRun = 0
	}
}

// lastDecision is the decision forward took for the last frame of a batch
// that reached one, keyed on that frame's bytes up to its L3 header (its
// MACs, every VLAN tag and the EtherType: all that classification, the
// source checks, learning and the FDB lookup read). A later frame of the
// batch with the same bytes goes where that one went (forwardAgain), as
// Open vSwitch's exact-match cache sends a packet with a known flow key,
// but never older than the batch and never for a port whose decisions
// read more than those bytes or take per-frame tokens (an ingress ACL or
// security group, a policer, storm control, the flow cache: scratch.lastOK
// is false). The key is the switch's own copy of the frame's head, never
// guest memory. The FDB may change under a batch (other ports learn): the
// frames behind a decision then go where the decision said, as a batch's
// destination cache (dcache) already sends them; the next batch decides
// afresh. Learning by this port's own frames cannot go stale: a frame that
// learns another source has another key and replaces the decision.
type lastDecision struct {
	n   int // key length (the frame's L3 offset, >= 14); 0: no decision
	key [12 + 4*maxTags + 2]byte
	// the key's first and last 8 bytes, as match loads them
	k0, k1 uint64
	p      pkt // the classification (its offload fields cleared)
	l3     int
	et     uint16
	out    uint8 // lastNone, lastFlood or lastUnicast
	d      *PortHandle
	i      int32
	// plain: d takes the frames as they came (untagged, no egress ACL,
	// security group, shaper or mirror); caps: its Caps.
	plain bool
	caps  Caps
}

// lastDecision.out.
const (
	lastNone    = iota // the destination is the ingress port: nowhere
	lastFlood          // every other port of the VLAN
	lastUnicast        // d, index i in the batch's topology
)

// match reports whether data's bytes up to L3 are the decision's key:
// two 8-byte compares for a key of up to 16 bytes (an untagged frame's
// 14), the middle bytes too for a longer one.
func (m *lastDecision) match(data []byte) bool {
	n := m.n
	if n == 0 || len(data) < n {
		return false
	}
	if binary.LittleEndian.Uint64(data) != m.k0 || binary.LittleEndian.Uint64(data[n-8:]) != m.k1 {
		return false
	}
	return n <= 16 || string(data[8:n-8]) == string(m.key[8:n-8])
}

// remember records the decision for the frame whose head is data, when
// the batch may reuse decisions (lastOK).
func (sc *scratch) remember(h *PortHandle, data []byte, l3 int, et uint16, p *pkt, out uint8, d *PortHandle, i int32) {
	if !sc.lastOK {
		return
	}
	m := &sc.last
	m.n = copy(m.key[:l3], data[:l3])
	m.k0, m.k1 = binary.LittleEndian.Uint64(data), binary.LittleEndian.Uint64(data[l3-8:])
	m.p = *p
	m.p.l3, m.p.iphl, m.p.tcphl, m.p.ipEnd, m.p.v6 = 0, 0, 0, 0, false
	if out == lastFlood {
		// A VLAN of two ports floods to one: the other.
		d, i, out = nil, 0, lastNone
		for _, j := range sc.tp.members[p.vid] {
			if o := sc.tp.ports[j]; o != h {
				if d != nil {
					d, i, out = nil, 0, lastFlood
					break
				}
				d, i, out = o, j, lastUnicast
			}
		}
	}
	m.l3, m.et, m.out, m.d, m.i = l3, et, out, d, i
	m.plain = false
	if out == lastUnicast {
		// The destination's egress as the batch found it (its egress
		// ACL and security group, like the ingress port's, are the
		// batch's): nothing to check, nothing to rewrite.
		ds := d.state.Load()
		ok, tagged := egressTagged(ds, p.vid)
		m.plain = ok && !tagged && p.strip == 0 && !p.innerTag && d.eacl.Load() == nil && d.sg.Load() == nil &&
			!d.shaper.active.Load() && !ds.mirrorOut
		m.caps = sc.capsOf(d)
	}
}

// dcacheEntry remembers one FDB lookup for the rest of a batch (a tiny
// exact-match flow cache, like Open vSwitch's EMC, but never older than
// one batch).
type dcacheEntry struct {
	key   uint64
	batch uint32
	h     *PortHandle
}

const dcacheSize = 16

func dcacheSlot(key uint64) uint64 { return (key ^ key>>29) % dcacheSize }

const (
	arenaSize = 256 << 10
	maxOuts   = 256
)

func newScratch() scratch {
	return scratch{
		arena:  make([]byte, arenaSize),
		outF:   make([]Frame, 0, maxOuts),
		outIdx: make([]int32, 0, maxOuts),
		outPCP: make([]uint8, 0, maxOuts),
		sorted: make([]Frame, maxOuts),
		pcps:   make([]uint8, maxOuts),
	}
}

// out queues f for the destination of index i with priority pcp; the
// caller checked room.
func (sc *scratch) out(i int32, pcp uint8, f *Frame) {
	switch n := len(sc.outF); {
	case n == 0:
		sc.one = i
	case sc.one != i:
		sc.one = -1
	}
	sc.outF = append(sc.outF, *f)
	sc.outIdx = append(sc.outIdx, i)
	sc.outPCP = append(sc.outPCP, pcp)
}

// capsOf returns d's Caps, asked at most once a batch while d is the
// last destination asked about.
func (sc *scratch) capsOf(d *PortHandle) Caps {
	if sc.capsPort != d {
		sc.capsPort, sc.caps = d, d.port.Caps()
	}
	return sc.caps
}

// room says whether n more outputs with nb more arena bytes fit without a flush.
func (sc *scratch) room(n, nb int) bool {
	return len(sc.outF)+n <= cap(sc.outF) && sc.used+nb <= len(sc.arena)
}

// alloc takes nb bytes of arena; the caller checked room.
func (sc *scratch) alloc(nb int) []byte {
	b := sc.arena[sc.used : sc.used+nb : sc.used+nb]
	sc.used += nb
	return b
}
