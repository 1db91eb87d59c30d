package vswitch

import "github.com/hvnet/hvnet/conntrack"

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
