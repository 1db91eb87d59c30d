package vswitch

import (
	"math/rand/v2"
	"sync/atomic"
)

// Egress ACLs: a port's second rule list, checked for every frame the
// switch is about to send out of that port, after the forwarding decision
// and the egress VLAN filter, once per destination: a flooded frame
// denied on one port still reaches the others. A denied frame is counted
// as an "acl" drop of the egress port and on the deciding rule's hit
// counter. Rules match the frame as it arrived (its innermost EtherType,
// MACs and L3/L4 fields do not change on the way out).
//
// Verdicts are cached like ingress ones (aclcache.go), in a second cache
// in the ingress port's scratch (so no locks): one cache for the egress
// sets of every destination, each entry tagged with the id of the set it
// was decided by (ids are unique per compiled set, never 0, so a replaced
// set's entries simply stop matching). The set id is mixed into the hash,
// so two sets' verdicts for one flow take different sets of the cache.

// aclIDs numbers compiled ACL sets (egress cache tags). 32 bits: an entry
// could be mistaken only after 2^32 SetEgressACL calls while it stayed in
// a cache untouched.
var aclIDs atomic.Uint32

func nextACLID() uint32 {
	for {
		if id := aclIDs.Add(1); id != 0 {
			return id
		}
	}
}

// SetEgressACL replaces the egress ACL of the named port (see SetACL for
// the rules; the default applies to frames no rule matches). The new
// rules apply from the next batch of every ingress port; hit counters
// start at zero.
func (s *Switch) SetEgressACL(port string, a ACL) error {
	return s.setACL(port, a, "egress acl", func(h *PortHandle) *atomic.Pointer[aclSet] { return &h.eacl })
}

// CheckACL reports whether a compiles (what SetACL and SetEgressACL
// would answer), changing nothing.
func CheckACL(a ACL) error {
	_, err := compileACL(a)
	return err
}

// EgressACL returns the port's egress ACL and its hit counters.
func (h *PortHandle) EgressACL() (ACL, ACLHits) { return h.eacl.Load().snapshot() }

// egressDenied checks frame f, about to leave by port d, against d's
// egress set as; a denied frame is counted on d.
func (h *PortHandle) egressDenied(sc *scratch, as *aclSet, d *PortHandle, f *Frame) bool {
	if !sc.fkOK {
		sc.fk = flowKey{} // parseFlow leaves the fields a frame lacks alone
		parseFlow(f.Data, sc.l3, sc.et, &sc.fk, true)
		sc.fkOK = true
	}
	i, act := sc.egressVerdict(as, &sc.fk)
	sc.countEgressHit(as, i)
	if act == ACLDeny {
		d.ctr.drops[DropACL].Add(1)
		return true
	}
	return false
}

// egressVerdict is aclVerdict for an egress set, in the egress cache.
func (sc *scratch) egressVerdict(as *aclSet, k *flowKey) (int, ACLAction) {
	c := sc.ecache
	if c == nil { // once per port
		c = &aclCache{seed: rand.Uint64()}
		sc.ecache = c
	}
	var key aclKey
	k.pack(&as.mask, &key)
	set := &c.sets[key.hash(c.seed^uint64(as.id)*0x9e3779b97f4a7c15)]
	for w := range set {
		if e := &set[w]; e.gen == as.id && e.k.equal(&key) {
			return int(e.rule), e.act
		}
	}
	sc.eaclMisses++
	i, act := as.match(k)
	set[sc.eaclMisses%aclCacheWays] = aclEntry{k: key, gen: as.id, rule: uint16(i), act: act}
	return i, act
}

// countEgressHit counts a hit of rule i of as, run-length like
// countACLHit (a flood alternates sets, and then adds once per frame).
func (sc *scratch) countEgressHit(as *aclSet, i int) {
	if sc.eRun != 0 && (sc.eSet != as || sc.eRule != i) {
		sc.eSet.hits[sc.eRule].Add(sc.eRun)
		sc.eRun = 0
	}
	sc.eSet, sc.eRule = as, i
	sc.eRun++
}

func (sc *scratch) flushEgressHits() {
	if sc.eRun != 0 {
		sc.eSet.hits[sc.eRule].Add(sc.eRun)
		sc.eRun = 0
	}
	sc.eSet = nil
}
