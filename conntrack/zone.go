package conntrack

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

const (
	numShards  = 64 // power of two
	shardShift = 64 - 6

	// Entries live in chunks of a shard's slab, so that an index stays
	// valid while the slab grows and growing never copies entries.
	// Sweep and Entries hold a shard's lock for one chunk at a time.
	chunkShift = 8
	chunkSize  = 1 << chunkShift
)

// entry flags.
const (
	efUsed      = 1 << iota // the slot holds a connection (else it is free)
	efSeenReply             // a frame passed in the reply direction (IPS_SEEN_REPLY)
	efAssured               // TCP: a valid answer was seen after SYN_RECV or a pickup (IPS_ASSURED)
)

// Pseudo-connection states (UDP, ICMP echo, other protocols).
const (
	pseudoUnreplied = 0
	pseudoReplied   = 1
)

// entry is one connection. It lives in a shard's slab and is only
// touched under the shard's lock; it holds no pointer, so neither the
// slab nor the index is scanned by the garbage collector.
type entry struct {
	expires int64     // nanoseconds, the caller's clock; in a free slot, 1 + the next free slot's index (0 at the end)
	pkts    [2]uint64 // frames per Dir
	key     Key
	kind    Kind
	origin  Dir
	state   uint8 // tcpState, or pseudoUnreplied/pseudoReplied
	flags   uint8 // ef*
	tcp     tcpConn
}

// shard is one of a zone's numShards tables: a slab of entries (in
// chunks, so that an index stays valid while it grows and growing never
// copies an entry) and an open-addressing index over it.
//
// The index is linear probing (Knuth, TAOCP vol. 3, §6.4, algorithm L),
// each slot a 32-bit tag from the key's hash (never 0: 0 is an empty
// slot) and the entry's slab index; a slot's home is its tag modulo the
// index size. It is at most 3/4 full, doubles when it would be fuller,
// and deletion shifts the following slots back (algorithm R), so there
// are no tombstones and steady churn never rehashes. A lookup reads one
// slot (usually) and the entry it names: two cache lines.
type shard struct {
	// The first cache line: what a lookup reads (the lock, the index,
	// the slab, and freed for a Hint), so that a frame of a connection
	// whose shard is not in L1 misses one line of it, not two.
	mu    sync.Mutex
	index []uint64 // tag<<32 | slab index; 0: empty
	// chunk0 is chunks[0] (nil while the slab is empty): the entries of
	// a shard of fewer than chunkSize, reached without reading the
	// chunk list.
	chunk0 *[chunkSize]entry
	// freed counts slots released (and is bumped by Flush): a Hint
	// taken when it had the same value still names its entry.
	freed uint64

	chunks [][]entry
	n      int                           // slots in use
	used   uint32                        // slab slots ever handed out
	free   uint32                        // 1 + the first free index, 0 when none
	gen    uint32                        // bumped by Flush: a Sweep in progress stops
	_      [128 - 48 - 24 - 8 - 3*4]byte // 128 bytes: two lines, shared with no other shard
}

func (s *shard) at(i uint32) *entry {
	if i < chunkSize {
		return &s.chunk0[i]
	}
	return &s.chunks[i>>chunkShift][i&(chunkSize-1)]
}

// slotTag is the index tag of a key's hash. The shard is chosen by the
// hash's top 6 bits, the tag is the 32 above the low half (so a tag's
// home, its low bits, is independent of the shard).
func slotTag(h uint64) uint32 {
	if t := uint32(h >> 32); t != 0 {
		return t
	}
	return 1
}

// find returns the index position and slab index of k (tag its tag).
func (s *shard) find(k *Key, tag uint32) (pos int, i uint32, ok bool) {
	pos, i, e := s.lookup(k, tag)
	return pos, i, e != nil
}

// lookup is find that also returns the entry (nil: not found), so that
// the caller does not index the slab again.
func (s *shard) lookup(k *Key, tag uint32) (pos int, i uint32, e *entry) {
	if len(s.index) == 0 { // (not n, on the second line: the probe stops at an empty slot)
		return 0, 0, nil
	}
	mask := len(s.index) - 1
	for pos = int(tag) & mask; ; pos = (pos + 1) & mask {
		v := s.index[pos]
		if v == 0 {
			return pos, 0, nil
		}
		if uint32(v>>32) == tag {
			i = uint32(v)
			if e = s.at(i); keyEq(&e.key, k) {
				return pos, i, e
			}
		}
	}
}

// keyEq is a == b, as five word compares folded into one branch (the
// compiler's == on the 38-byte struct calls memequal). In Go, ^ and |
// bind equally tight: every xor is parenthesised.
func keyEq(a, b *Key) bool {
	le := binary.LittleEndian
	x := (le.Uint64(a.Local[0:8]) ^ le.Uint64(b.Local[0:8])) |
		(le.Uint64(a.Local[8:16]) ^ le.Uint64(b.Local[8:16])) |
		(le.Uint64(a.Remote[0:8]) ^ le.Uint64(b.Remote[0:8])) |
		(le.Uint64(a.Remote[8:16]) ^ le.Uint64(b.Remote[8:16]))
	y := uint64(a.LPort^b.LPort) | uint64(a.RPort^b.RPort)<<16 |
		uint64(a.Proto^b.Proto)<<32 | uint64(a.Family^b.Family)<<40
	return x|y == 0
}

// insert adds slab index i with tag to the index, growing it first
// when it would be more than 3/4 full.
func (s *shard) insert(tag uint32, i uint32) {
	if (s.n+1)*4 > len(s.index)*3 {
		s.grow()
	}
	s.put(uint64(tag)<<32 | uint64(i))
	s.n++
}

func (s *shard) put(v uint64) {
	mask := len(s.index) - 1
	pos := int(v>>32) & mask
	for s.index[pos] != 0 {
		pos = (pos + 1) & mask
	}
	s.index[pos] = v
}

func (s *shard) grow() {
	old := s.index
	s.index = make([]uint64, max(2*len(old), 8))
	for _, v := range old {
		if v != 0 {
			s.put(v)
		}
	}
}

// deleteAt empties index position pos and moves back the slots after
// it that would no longer be found (Knuth's algorithm R).
func (s *shard) deleteAt(pos int) {
	mask := len(s.index) - 1
	for j := pos; ; {
		j = (j + 1) & mask
		v := s.index[j]
		if v == 0 {
			break
		}
		// The slot at j may fill the hole at pos unless its home lies
		// cyclically in (pos, j].
		home := int(v>>32) & mask
		if (j-home)&mask >= (j-pos)&mask {
			s.index[pos] = v
			pos = j
		}
	}
	s.index[pos] = 0
	s.n--
}

// position finds the index position of slab index i (its key's tag),
// or -1 (not reached: an entry in use is always in the index).
func (s *shard) position(tag uint32, i uint32) int {
	mask := len(s.index) - 1
	want := uint64(tag)<<32 | uint64(i)
	for n, pos := 0, int(tag)&mask; n < len(s.index); n, pos = n+1, (pos+1)&mask {
		switch s.index[pos] {
		case want:
			return pos
		case 0:
			return -1
		}
	}
	return -1
}

// alloc takes a slot from the free list, or the slab's next one (a new
// chunk every chunkSize slots: steady churn allocates nothing).
func (s *shard) alloc() (uint32, *entry) {
	if s.free != 0 {
		i := s.free - 1
		e := s.at(i)
		s.free = uint32(e.expires)
		*e = entry{}
		return i, e
	}
	i := s.used
	if int(i>>chunkShift) == len(s.chunks) {
		c := new([chunkSize]entry)
		s.chunks = append(s.chunks, c[:])
		if len(s.chunks) == 1 {
			s.chunk0 = c
		}
	}
	s.used++
	e := s.at(i)
	*e = entry{}
	return i, e
}

func (s *shard) release(i uint32) {
	s.freed++
	e := s.at(i)
	e.flags = 0
	e.expires = int64(s.free) // the free list runs through expires: 128-byte entries
	s.free = i + 1
}

type zoneCounters struct {
	new, invalid, zoneFull, tableFull, expired, flushed, related atomic.Uint64
	fragDropped, fragCacheFull                                   atomic.Uint64
}

// Zone is one port's connection table. Safe for concurrent use: frames
// from the port and frames to it are tracked on different goroutines.
type Zone struct {
	t      *Table
	id     uint64 // unique in the process (zoneIDs): what a Hint names
	limit  atomic.Int64
	count  atomic.Int64
	closed atomic.Bool
	ctr    zoneCounters
	frags  fragCache
	shards [numShards]shard
}

// zoneIDs numbers zones, from 1 (a Hint's 0 is empty).
var zoneIDs atomic.Uint64

// mix is the multiply-fold of wyhash: a 64x64->128 multiply, halves
// xor-ed.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

const (
	wy0 = 0xa0761d6478bd642f
	wy1 = 0xe7037ed1a0b428db
	wy2 = 0x8ebc6af09c88c6e3
	wy3 = 0x589965cc75374cc3
)

// fmix64 is MurmurHash3's finalizer: every input bit affects every
// output bit, so any slice of the hash's bits (the shard, a fragment
// cache set) is evenly spread.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// hash5 hashes five 64-bit words with a seed.
func hash5(a, b, c, d, x, seed uint64) uint64 {
	h := mix(a^wy0, b^seed)
	h = mix(c^wy1, d^h)
	return fmix64(mix(x^wy2, h^wy3))
}

// hashKey is a seeded hash of every field of k: cheap, allocation-free,
// and tenants who choose their keys cannot aim them at one shard (or one
// index run) without knowing the table's secrets.
//
// An IPv4 key (Family 4, addresses IPv4-mapped as Parse stores them)
// holds 13 bytes that vary: they pack without loss into two words,
// hashed as wyhash (Wang Yi, wyhash final version 4) hashes 16 bytes:
// one 64x64->128 multiply of the words each xor-ed with a secret, then
// a multiply-fold of the two halves xor-ed with two more. Unlike
// wyhash, whose secrets are public constants, all four are random per
// table: a word equal to its secret zeroes the first product whatever
// the other word ("blinding"), and a tenant who cannot know the secret
// cannot choose it. Keys of other families (IPv6, or a hand-made key)
// take hash5 over all five words.
func hashKey(k *Key, sec *[4]uint64) uint64 {
	le := binary.LittleEndian
	if k.Family == 4 {
		a := uint64(le.Uint32(k.Local[12:16])) | uint64(le.Uint32(k.Remote[12:16]))<<32
		b := uint64(k.LPort) | uint64(k.RPort)<<16 | uint64(k.Proto)<<32 |
			// The mapped prefixes of a hand-made key (never
			// Parse's) fold in, so that every field counts.
			(le.Uint64(k.Local[0:8])^le.Uint64(k.Local[8:16])^le.Uint64(k.Remote[0:8])^le.Uint64(k.Remote[8:16]))<<40
		return hash16(a, b, sec)
	}
	x := uint64(k.LPort) | uint64(k.RPort)<<16 | uint64(k.Proto)<<32 | uint64(k.Family)<<40
	return hash5(le.Uint64(k.Local[0:8]), le.Uint64(k.Local[8:16]),
		le.Uint64(k.Remote[0:8]), le.Uint64(k.Remote[8:16]), x, sec[0])
}

// hash16 is hashKey's step for an IPv4 key packed into two words.
func hash16(a, b uint64, sec *[4]uint64) uint64 {
	hi, lo := bits.Mul64(a^sec[0], b^sec[1])
	return mix(lo^sec[2], hi^sec[3])
}

// shardOf returns k's shard and index tag: the one hash of a lookup.
func (z *Zone) shardOf(k *Key) (*shard, uint32) {
	h := hashKey(k, &z.t.sec)
	return &z.shards[h>>shardShift], slotTag(h)
}

// removeLocked deletes the entry at index position pos, slab index i,
// from s, whose lock is held.
func (z *Zone) removeLocked(s *shard, pos int, i uint32) {
	s.deleteAt(pos)
	s.release(i)
	z.count.Add(-1)
	z.t.count.Add(-1)
}

// removeAt is removeLocked for an entry whose index position may be
// unknown (pos -1: found through a Hint), looked up from its key.
func (z *Zone) removeAt(s *shard, pos int, i uint32) {
	if pos < 0 {
		if pos = s.position(slotTag(hashKey(&s.at(i).key, &z.t.sec)), i); pos < 0 {
			return // not reached: an entry in use is always in the index
		}
	}
	z.removeLocked(s, pos, i)
}

// reserve takes one entry of the zone's and the table's limits. Counts
// are checked and raised with compare-and-swap, so no number of
// concurrent commits takes either past its limit, even for a moment.
func (z *Zone) reserve() bool {
	for {
		n := z.count.Load()
		if n >= z.limit.Load() {
			z.ctr.zoneFull.Add(1)
			return false
		}
		if z.count.CompareAndSwap(n, n+1) {
			break
		}
	}
	if !z.t.reserve() {
		z.count.Add(-1)
		z.ctr.tableFull.Add(1)
		return false
	}
	return true
}

// dirIndex is 0 for a frame in the direction that opened e (Linux's
// IP_CT_DIR_ORIGINAL), 1 for the other (IP_CT_DIR_REPLY).
func dirIndex(e *entry, d Dir) int {
	if d == e.origin {
		return 0
	}
	return 1
}

func passVerdict(d int) Verdict {
	if d == 0 {
		return Established
	}
	return Reply
}

// Track looks p up at time now (nanoseconds) and advances the
// connection's state. New means no entry exists: nothing is stored until
// Commit. An entry whose timeout passed is absent (and removed).
//
// A first fragment that passes (Untracked, Established, Reply) is
// remembered for its later fragments; see Commit for one that is New.
func (z *Zone) Track(p *Packet, now int64) Verdict { return z.TrackHint(p, now, nil) }

// Hint remembers where the connection a caller last tracked lives (its
// zone, shard and slab slot), so that the next segment of the same
// connection, the common case in a batch of frames, skips the hash and
// the index probe. The zero value is empty. A Hint is the caller's
// scratch: not safe for concurrent use (one per goroutine). It holds no
// pointer (a zone is named by a number never reused), so it keeps no
// zone alive and storing it costs no write barrier.
//
// A hint is only ever a guess: TrackHint trusts it only when the frame's
// key is the hint's and, under the shard's lock, the shard has freed no
// slot since the hint was taken (shard.freed: a slot changes connection
// only after it is freed, by a removal or a Flush; Commit reusing an
// expired entry keeps its key). Any removal in the shard meanwhile (an
// expiry, a sweep, a flush, another connection's close) voids the hint
// and the frame takes the full lookup, so a stale hint costs time, never
// a wrong verdict.
type Hint struct {
	zone  uint64    // Zone.id; 0: empty
	freed uint64    // the shard's freed when the hint was taken
	key   [5]uint64 // the connection's key (keyWords)
	shard uint32    // index in Zone.shards
	i     uint32    // slab index
}

// Reset empties h.
func (h *Hint) Reset() { *h = Hint{} }

// keyWords returns k as five words, each read with the width Parse
// wrote it (setV4's and setAddrs6's stores, the ports and protocol
// one by one), so that a key parsed a moment ago is read from the store
// buffer without a stall; and a Hint holds no copy of the Key struct,
// whose 16-byte moves would straddle those stores.
func keyWords(k *Key) [5]uint64 {
	le := binary.LittleEndian
	return [5]uint64{
		le.Uint64(k.Local[0:8]), le.Uint64(k.Local[8:16]),
		le.Uint64(k.Remote[0:8]), le.Uint64(k.Remote[8:16]),
		uint64(k.LPort) | uint64(k.RPort)<<16 | uint64(k.Proto)<<32 | uint64(k.Family)<<40,
	}
}

// TrackHint is Track, using and updating h (nil: none); the verdict,
// counters and entry updates are Track's whatever h holds.
func (z *Zone) TrackHint(p *Packet, now int64, h *Hint) Verdict {
	switch p.Kind {
	case KindTCP, KindUDP, KindICMPEcho, KindOther:
	case KindUntracked:
		if p.FragFirst {
			z.frags.add(z, p, Untracked, now)
		}
		return Untracked
	case KindFragment:
		return z.trackFragment(p, now)
	case KindICMPError:
		return z.trackRelated(p, now)
	default:
		return z.invalid(p)
	}
	if p.Kind == KindTCP && !tcpValidFlags(p.Flags) {
		return z.invalid(p)
	}
	var (
		s   *shard
		e   *entry
		i   uint32
		pos = -1 // the entry's index position; -1: not looked up (a hint hit)
	)
	var kw [5]uint64
	if h != nil {
		kw = keyWords(&p.Key)
	}
	if h != nil && h.zone == z.id && (h.key[0]^kw[0])|(h.key[1]^kw[1])|(h.key[2]^kw[2])|(h.key[3]^kw[3])|(h.key[4]^kw[4]) == 0 {
		// The key's shard is h.shard whatever became of the slot: the
		// shard is a function of the key and the table's secrets.
		s = &z.shards[h.shard&(numShards-1)]
		s.mu.Lock()
		if s.freed == h.freed {
			e, i = s.at(h.i), h.i
		} else {
			pos, i, e = s.lookup(&p.Key, slotTag(hashKey(&p.Key, &z.t.sec)))
			if e != nil {
				h.i, h.freed = i, s.freed
			}
		}
	} else {
		hv := hashKey(&p.Key, &z.t.sec)
		sh := uint32(hv >> shardShift)
		s = &z.shards[sh]
		s.mu.Lock()
		pos, i, e = s.lookup(&p.Key, slotTag(hv))
		if e != nil && h != nil {
			h.zone, h.freed, h.key, h.shard, h.i = z.id, s.freed, kw, sh, i
		}
	}
	if e == nil {
		s.mu.Unlock()
		return z.absent(p)
	}
	if now >= e.expires {
		z.removeAt(s, pos, i)
		s.mu.Unlock()
		z.ctr.expired.Add(1)
		return z.absent(p)
	}
	if e.kind != p.Kind {
		// An ICMP echo with identifier 0 and another ICMP message share
		// a key: neither is the other's reply. Rules decide.
		s.mu.Unlock()
		return New
	}
	d := dirIndex(e, p.Dir)
	v := passVerdict(d)
	if p.Kind == KindTCP {
		seg := p.tcpSeg()
		switch z.tcpPacket(e, &seg, d, now) {
		case tcpInvalid:
			v = Invalid
		case tcpReopen:
			// A new SYN on a closed connection (RFC 1122 §4.2.2.13):
			// the old entry goes, the new connection is New.
			z.removeAt(s, pos, i)
			v = New
		case tcpKill:
			// The only answer was a RST: nothing to keep (Linux's
			// nf_ct_kill_acct in nf_conntrack_tcp_packet).
			e.pkts[p.Dir]++
			z.removeAt(s, pos, i)
		default:
			e.pkts[p.Dir]++
			if d == 1 {
				e.flags |= efSeenReply
			}
		}
	} else {
		v = z.pseudoPacket(e, p, d, now)
	}
	s.mu.Unlock()
	switch v {
	case Invalid:
		z.ctr.invalid.Add(1)
	case Established, Reply:
		if p.FragFirst {
			z.frags.add(z, p, v, now)
		}
	}
	return v
}

// pseudoPacket advances a UDP, ICMP echo or other entry: every frame
// refreshes it, the first in the reply direction makes it REPLIED.
func (z *Zone) pseudoPacket(e *entry, p *Packet, d int, now int64) Verdict {
	if p.Kind == KindICMPEcho && p.EchoReply != (d == 1) {
		// A request where the reply is expected, or the reverse: the
		// other side's own echo with the same identifier, not part of
		// this exchange (Linux keys echo by type too). Rules decide.
		return New
	}
	e.pkts[p.Dir]++
	if d == 1 {
		e.flags |= efSeenReply
		e.state = pseudoReplied
	}
	e.expires = now + z.pseudoTimeout(e)
	return passVerdict(d)
}

func (z *Zone) pseudoTimeout(e *entry) int64 {
	to := z.t.to.Load()
	switch e.kind {
	case KindUDP:
		if e.state == pseudoReplied {
			return to.udpStream
		}
		return to.udp
	case KindICMPEcho:
		return to.icmp
	}
	return to.other
}

// absent is the verdict for a frame without a live entry: New when it
// may open a connection, Invalid when it cannot (Linux's tcp_new and
// icmp_new: only a SYN or a loose pickup opens TCP, only a request opens
// an echo exchange).
func (z *Zone) absent(p *Packet) Verdict {
	switch p.Kind {
	case KindTCP:
		if !tcpCanOpen(p.Flags) {
			return z.invalid(p)
		}
	case KindICMPEcho:
		if p.EchoReply {
			return z.invalid(p)
		}
	}
	return New
}

func (z *Zone) invalid(p *Packet) Verdict {
	z.ctr.invalid.Add(1)
	if p.FragFirst || p.Kind == KindFragment {
		z.ctr.fragDropped.Add(1)
	}
	return Invalid
}

// trackRelated passes an ICMP error whose quoted packet belongs to a live
// entry; it does not refresh the entry (Linux's nf_conntrack_inet_error).
func (z *Zone) trackRelated(p *Packet, now int64) Verdict {
	s, tag := z.shardOf(&p.Inner)
	s.mu.Lock()
	_, i, ok := s.find(&p.Inner, tag)
	live := ok && now < s.at(i).expires
	s.mu.Unlock()
	if !live {
		return z.invalid(p)
	}
	z.ctr.related.Add(1)
	return Related
}

// Commit stores p's connection after Track said New and the caller's
// rules allowed it. It returns false when the zone or the table is full
// (counted): the frame is to be dropped. It also returns false for a
// frame that cannot open a connection (an ICMP error, a fragment, a
// malformed frame, a TCP segment other than SYN or a pickup, an echo
// reply) and after Close; true without storing anything for an
// untracked frame, and true when another goroutine stored the same key
// first.
//
// When p is a first fragment, Commit remembers it for the later
// fragments.
func (z *Zone) Commit(p *Packet, now int64) bool {
	switch p.Kind {
	case KindUntracked:
		return true
	case KindTCP:
		if !tcpValidFlags(p.Flags) || !tcpCanOpen(p.Flags) {
			return false
		}
	case KindICMPEcho:
		if p.EchoReply {
			return false
		}
	case KindUDP, KindOther:
	default:
		return false
	}
	s, tag := z.shardOf(&p.Key)
	s.mu.Lock()
	if z.closed.Load() {
		s.mu.Unlock()
		return false
	}
	pos, i, e := s.lookup(&p.Key, tag)
	if e != nil {
		if now < e.expires {
			v := passVerdict(dirIndex(e, p.Dir))
			s.mu.Unlock()
			if p.FragFirst {
				z.frags.add(z, p, v, now)
			}
			return true
		}
		// Expired: the slot is reused for the new connection.
		*e = entry{}
		z.ctr.expired.Add(1)
	} else {
		if !z.reserve() {
			s.mu.Unlock()
			return false
		}
		i, e = s.alloc()
		s.insert(tag, i)
		pos = -1 // unknown after insert; found again if needed
	}
	e.key = p.Key
	e.flags = efUsed
	e.kind = p.Kind
	e.origin = p.Dir
	e.pkts[p.Dir] = 1
	if p.Kind == KindTCP {
		seg := p.tcpSeg()
		tcpNew(e, &seg)
		if z.tcpPacket(e, &seg, 0, now) != tcpAccept {
			// Not reached for a segment tcpCanOpen accepts; kept so
			// that a bug cannot leave a half-made entry.
			if pos < 0 {
				pos = s.position(tag, i)
			}
			if pos >= 0 {
				z.removeLocked(s, pos, i)
			}
			s.mu.Unlock()
			return false
		}
	} else {
		e.state = pseudoUnreplied
		e.expires = now + z.pseudoTimeout(e)
	}
	s.mu.Unlock()
	z.ctr.new.Add(1)
	if p.FragFirst {
		z.frags.add(z, p, Established, now)
	}
	return true
}

// Close removes the zone's entries (returning them to the global count).
// Commit fails afterwards; its counters move to the table's retired sum.
func (z *Zone) Close() {
	if z.closed.Swap(true) {
		return
	}
	z.Flush()
	t := z.t
	t.mu.Lock()
	delete(t.zones, z)
	t.retired.add(z.Counters())
	t.mu.Unlock()
}

// Len returns the number of live entries (expired ones not yet swept
// included).
func (z *Zone) Len() int { return int(z.count.Load()) }

// Limit returns the zone's entry limit.
func (z *Zone) Limit() int { return int(z.limit.Load()) }

// SetLimit sets the zone's entry limit (n <= 0: the table's ZoneLimit).
// Lowering it below Len evicts nothing: Commit refuses until entries
// expire.
func (z *Zone) SetLimit(n int) {
	if n <= 0 {
		n = z.t.cfg.ZoneLimit
	}
	z.limit.Store(int64(n))
}

// Flush removes every entry and returns how many there were. It also
// forgets the fragment cache and releases the zone's memory.
func (z *Zone) Flush() int {
	n := 0
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		c := s.n
		n += c
		s.index = nil
		s.n = 0
		s.chunks, s.chunk0 = nil, nil
		s.used, s.free = 0, 0
		s.gen++
		s.freed++
		z.count.Add(int64(-c))
		z.t.count.Add(int64(-c))
		s.mu.Unlock()
	}
	z.frags.reset()
	z.ctr.flushed.Add(uint64(n))
	return n
}

// Sweep removes the entries that timed out by now and returns how many.
// It goes shard by shard and slab chunk by chunk, and holds a shard's
// lock for one chunk (chunkSize entries) at a time, so frames of the
// zone wait microseconds even with a million entries.
func (z *Zone) Sweep(now int64) int {
	n := 0
	z.eachChunk(func(s *shard, chunk []entry, base uint32) {
		for o := range chunk {
			e := &chunk[o]
			if e.flags&efUsed != 0 && now >= e.expires {
				i := base + uint32(o)
				if pos := s.position(slotTag(hashKey(&e.key, &z.t.sec)), i); pos >= 0 {
					z.removeLocked(s, pos, i)
					n++
				}
			}
		}
	})
	z.ctr.expired.Add(uint64(n))
	return n
}

// eachChunk calls fn for each chunk of each shard's slab with the
// shard's lock held, releasing it between chunks.
func (z *Zone) eachChunk(fn func(s *shard, chunk []entry, base uint32)) {
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		gen := s.gen
		for c := 0; c < len(s.chunks); c++ {
			fn(s, s.chunks[c], uint32(c)<<chunkShift)
			s.mu.Unlock()
			s.mu.Lock() // let waiting frames in
			if s.gen != gen {
				break // flushed meanwhile: nothing left to visit
			}
		}
		s.mu.Unlock()
	}
}

// Entries calls fn for each live entry (a snapshot per entry) until it
// returns false. fn runs without any lock held; entries that come and
// go meanwhile may or may not be seen.
func (z *Zone) Entries(now int64, fn func(Entry) bool) {
	var buf []Entry
	stop := false
	z.eachChunk(func(s *shard, chunk []entry, base uint32) {
		if stop {
			return
		}
		buf = buf[:0]
		for o := range chunk {
			e := &chunk[o]
			if e.flags&efUsed != 0 && now < e.expires {
				buf = append(buf, Entry{
					Key:     e.key,
					Origin:  e.origin,
					State:   e.stateName(),
					Expires: time.Duration(e.expires - now),
					Packets: e.pkts,
				})
			}
		}
		// fn must not run under the lock: it may be slow, or call
		// back into the zone.
		s.mu.Unlock()
		for _, en := range buf {
			if !fn(en) {
				stop = true
				break
			}
		}
		s.mu.Lock()
	})
}

func (e *entry) stateName() string {
	if e.kind == KindTCP {
		return tcpStateNames[e.state]
	}
	if e.state == pseudoReplied {
		return "REPLIED"
	}
	return "UNREPLIED"
}

// Counters returns the zone's counters.
func (z *Zone) Counters() Counters {
	c := &z.ctr
	return Counters{
		Entries:       uint64(max(z.count.Load(), 0)),
		New:           c.new.Load(),
		Invalid:       c.invalid.Load(),
		ZoneFull:      c.zoneFull.Load(),
		TableFull:     c.tableFull.Load(),
		Expired:       c.expired.Load(),
		Flushed:       c.flushed.Load(),
		Related:       c.related.Load(),
		FragDropped:   c.fragDropped.Load(),
		FragCacheFull: c.fragCacheFull.Load(),
	}
}
