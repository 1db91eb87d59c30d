package vswitch

import "math/rand/v2"

// The ACL flow cache: a per-port, set-associative exact-match cache of ACL
// verdicts, like Open vSwitch's EMC. A frame's flow key (flow.go) is packed
// into seven words and masked down to the fields the port's rule set reads
// at all (a field no rule checks cannot change the first match), hashed,
// and looked up; a hit gives the first matching rule without scanning the
// list. A miss scans (aclSet.match, the one decision function) and fills
// the entry. The verdict is a pure function of the masked key and the rule
// set, so the cache never changes what is decided, only how fast.
//
// The cache belongs to the port's scratch: only the goroutine calling Input
// (under the port's input lock) touches it, so it takes no locks or atomics.
// Each entry carries the port's ACL generation, bumped when Input sees a
// rule set other than the last one it used: SetACL invalidates every entry
// at once without touching them. Hit counters are counted per frame as
// before (scratch.countACLHit), hit or miss.
//
// 4 ways x 256 sets of 64-byte entries: 64 KiB per port that has ever had
// an ACL, allocated on the first batch that sees one. Four ways, because
// with two, 64 flows in 512 sets put three in one set for about one seed in
// six, and three flows cycling through two ways miss every time; five in
// one set of 256 happens for about one seed in 500. A miss replaces a way
// chosen round-robin; a hit moves nothing, so hits never write. The hash
// is seeded
// per port, so a guest cannot aim its flows at one set of another port;
// aiming at its own only makes its own frames pay the scan.

const (
	aclCacheBits = 8
	aclCacheWays = 4
)

// aclKey is a flowKey packed into words, masked by the rule set's aclMask.
type aclKey [7]uint64

// Word layout of aclKey.
const (
	akSrc   = 0 // source MAC (bits 0-47), EtherType (48-63)
	akDst   = 1 // destination MAC (0-47), l3 (48-55), protocol (56-63)
	akL4    = 2 // destination port (0-15), source port (16-31), has ports (32)
	akSrcIP = 3 // 3, 4: source address
	akDstIP = 5 // 5, 6: destination address
)

const mac48 = 1<<48 - 1

// aclMask returns the key bits a rule set whose rules check the fields in
// need (the union of their fEther... bits) can read. It follows
// aclSet.match field by field: a bit left out here is never read there.
func aclMask(need uint16) aclKey {
	var m aclKey
	if need&fEther != 0 {
		m[akSrc] |= 0xffff << 48
	}
	if need&fSrcMAC != 0 {
		m[akSrc] |= mac48
	}
	if need&fDstMAC != 0 {
		m[akDst] |= mac48
	}
	if need&(fIP4|fIP6|fProto|fL4) != 0 {
		m[akDst] |= 0xff << 48
	}
	if need&fProto != 0 {
		m[akDst] |= 0xff << 56
	}
	if need&fL4 != 0 {
		m[akL4] = 1<<33 - 1
	}
	if need&fSrcIP != 0 {
		m[akSrcIP], m[akSrcIP+1] = ^uint64(0), ^uint64(0)
	}
	if need&fDstIP != 0 {
		m[akDstIP], m[akDstIP+1] = ^uint64(0), ^uint64(0)
	}
	return m
}

// pack writes k's fields into out as an aclKey masked by m.
func (k *flowKey) pack(m, out *aclKey) {
	var l4 uint64
	if k.hasL4 {
		l4 = 1<<32 | uint64(k.sport)<<16 | uint64(k.dport)
	}
	out[0] = (k.src | uint64(k.ether)<<48) & m[0]
	out[1] = (k.dst | uint64(k.l3)<<48 | uint64(k.proto)<<56) & m[1]
	out[2] = l4 & m[2]
	out[3], out[4] = k.sip[0]&m[3], k.sip[1]&m[4]
	out[5], out[6] = k.dip[0]&m[5], k.dip[1]&m[6]
}

// hash mixes the key's words (independent multiplies, so they overlap in
// the CPU) and returns a set index from the top bits of a final multiply.
func (k *aclKey) hash(seed uint64) uint64 {
	h := seed ^ k[0]*0x9e3779b97f4a7c15 ^ k[1]*0xc2b2ae3d27d4eb4f ^ k[2]*0x165667b19e3779f9 ^
		k[3]*0xd6e8feb86659fd93 ^ k[4]*0xff51afd7ed558ccd ^ k[5]*0xc4ceb9fe1a85ec53 ^ k[6]*0x27d4eb2f165667c5
	h ^= h >> 32
	h *= 0x9e3779b97f4a7c15
	return h >> (64 - aclCacheBits)
}

// aclEntry.rule holds any rule index or len(rules).
const _ uint16 = MaxACLRules

// aclEntry is one cached verdict: 64 bytes, one cache line.
type aclEntry struct {
	k    aclKey
	gen  uint32 // the port's ACL generation it was filled in; 0: never
	rule uint16 // first matching rule, or len(rules) for the default
	act  ACLAction
}

type aclCache struct {
	sets [1 << aclCacheBits][aclCacheWays]aclEntry
	seed uint64
}

// useACL makes as the batch's rule set and, when it is not the set the
// previous batch used, starts a new cache generation.
func (sc *scratch) useACL(as *aclSet) {
	sc.acl = as
	if as == sc.aclLast {
		return
	}
	// Holding the last set keeps its address from being reused by a new
	// one while the comparison above relies on it.
	sc.aclLast = as
	if as == nil {
		return
	}
	if sc.acache == nil {
		sc.acache = &aclCache{seed: rand.Uint64()}
	}
	if sc.aclGen++; sc.aclGen == 0 { // wrapped: entries of 2^32 sets ago must go
		clear(sc.acache.sets[:])
		sc.aclGen = 1
	}
}

// aclVerdict returns the first rule of the batch's set matching k (len
// for the default) and its action, from the cache or by scanning.
func (sc *scratch) aclVerdict(k *flowKey) (int, ACLAction) {
	var key aclKey
	k.pack(&sc.acl.mask, &key)
	c := sc.acache
	set := &c.sets[key.hash(c.seed)]
	g := sc.aclGen
	for w := range set {
		if e := &set[w]; e.gen == g && e.k.equal(&key) {
			return int(e.rule), e.act
		}
	}
	return sc.aclMiss(k, &key, set)
}

// aclMiss scans the rule list for a key the cache does not hold and
// caches the verdict in a way of its set chosen round-robin by the miss
// count (one 64-byte write; shifting the set to keep it FIFO cost more).
func (sc *scratch) aclMiss(k *flowKey, key *aclKey, set *[aclCacheWays]aclEntry) (int, ACLAction) {
	sc.aclMisses++
	i, act := sc.acl.match(k)
	set[sc.aclMisses%aclCacheWays] = aclEntry{k: *key, gen: sc.aclGen, rule: uint16(i), act: act}
	return i, act
}

// equal is k == o without a call to the runtime's memequal.
func (k *aclKey) equal(o *aclKey) bool {
	return (k[0]^o[0])|(k[1]^o[1])|(k[2]^o[2])|(k[3]^o[3])|(k[4]^o[4])|(k[5]^o[5])|(k[6]^o[6]) == 0
}
