package conntrack

import (
	"encoding/binary"
	"sync"
	"time"
)

// Fragments. The switch does not reassemble: it cannot afford to hold a
// tenant's fragments, and the receiving guest reassembles anyway. So:
//
//   - A first fragment (offset 0, more fragments) carries the transport
//     header and is tracked like an unfragmented packet. It must hold
//     the whole transport header (RFC 1858 §3.1 for TCP; RFC 7112 §5
//     for IPv6, the whole header chain), else Parse calls it malformed.
//   - When it passes, Track or Commit remember it in the zone's fragment
//     cache: (family, direction, addresses, protocol for IPv4,
//     identification), the reassembly key of RFC 791 §3.2 and RFC 8200
//     §4.5 (IPv6 leaves the protocol out: only the first fragment's Next
//     Header counts), for FragLifetime (the reassembly timeout of Linux,
//     net.ipv4.ipfrag_time = 30 s), with the verdict it got.
//   - A later fragment (KindFragment) gets that verdict when the cache
//     holds its key, else Invalid (counted as FragDropped). So does an
//     IPv4 TCP fragment at offset 1 (8 bytes), which could rewrite the
//     TCP flags of the first (RFC 1858 §4, RFC 3128).
//   - Overlapping fragments are not detected: the receiver must discard
//     them (RFC 5722 for IPv6; Linux and Windows do for IPv4 too), and
//     since a first fragment must hold the whole transport header, an
//     overlap can change only payload and options (RFC 3128 §3).
//   - The last fragment does not remove the cache entry, as fragments
//     may arrive in any order; entries expire or are replaced.
//
// The cache is set-associative, FragCacheSize entries in sets of 4 by a
// hash of the key: no allocation once made, bounded work. A first
// fragment arriving at a full set replaces its oldest entry (counted as
// FragCacheFull): a flood of first fragments can make other datagrams'
// later fragments fail, as a full reassembly queue would, but cannot
// grow anything. It is made on the zone's first fragment (56 KiB).

// FragCacheSize is how many first fragments a zone remembers.
const FragCacheSize = 1024

// FragLifetime is how long a first fragment is remembered.
const FragLifetime = 30 * time.Second

const (
	fragWays = 4
	fragSets = FragCacheSize / fragWays // power of two
)

type fragKey struct {
	local, remote [16]byte
	id            uint32
	proto         uint8 // IPv4 only
	family        uint8
	dir           Dir
}

type fragSlot struct {
	key     fragKey
	expires int64
	verdict Verdict
}

type fragCache struct {
	mu    sync.Mutex
	slots *[FragCacheSize]fragSlot // nil until the first fragment
}

func makeFragKey(p *Packet) fragKey {
	k := fragKey{local: p.Key.Local, remote: p.Key.Remote, id: p.FragID, family: p.Key.Family, dir: p.Dir}
	if k.family == 4 {
		k.proto = p.Key.Proto
	}
	return k
}

func (k *fragKey) set(seed uint64) int {
	le := binary.LittleEndian
	x := uint64(k.id) | uint64(k.proto)<<32 | uint64(k.family)<<40 | uint64(k.dir)<<48
	h := hash5(le.Uint64(k.local[0:8]), le.Uint64(k.local[8:16]),
		le.Uint64(k.remote[0:8]), le.Uint64(k.remote[8:16]), x, seed)
	return int(h) & (fragSets - 1)
}

// add remembers p, a first fragment that passed with verdict v.
func (c *fragCache) add(z *Zone, p *Packet, v Verdict, now int64) {
	k := makeFragKey(p)
	set := k.set(z.t.sec[0]) * fragWays
	exp := now + int64(FragLifetime)
	c.mu.Lock()
	if c.slots == nil {
		c.slots = new([FragCacheSize]fragSlot)
	}
	ways := c.slots[set : set+fragWays]
	victim := 0
	for w := range ways {
		sl := &ways[w]
		if sl.key == k && sl.expires != 0 {
			victim = w
			goto store // the same datagram's first fragment again (a retransmission)
		}
		if sl.expires < ways[victim].expires {
			victim = w
		}
	}
	if now < ways[victim].expires {
		z.ctr.fragCacheFull.Add(1)
	}
store:
	ways[victim] = fragSlot{key: k, expires: exp, verdict: v}
	c.mu.Unlock()
}

// lookup returns the verdict of p's first fragment.
func (c *fragCache) lookup(z *Zone, p *Packet, now int64) (Verdict, bool) {
	k := makeFragKey(p)
	set := k.set(z.t.sec[0]) * fragWays
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slots == nil {
		return Invalid, false
	}
	for _, sl := range c.slots[set : set+fragWays] {
		if sl.key == k && now < sl.expires {
			return sl.verdict, true
		}
	}
	return Invalid, false
}

func (c *fragCache) reset() {
	c.mu.Lock()
	c.slots = nil
	c.mu.Unlock()
}

// trackFragment judges a non-first fragment.
func (z *Zone) trackFragment(p *Packet, now int64) Verdict {
	if p.Key.Family == 4 && p.Key.Proto == protoTCP && p.FragOff == 1 {
		return z.invalid(p) // RFC 1858 §4
	}
	v, ok := z.frags.lookup(z, p, now)
	if !ok {
		return z.invalid(p)
	}
	return v
}
