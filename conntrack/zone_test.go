package conntrack

import (
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

// TestShardSpread: keys that differ in one field only spread evenly
// over the shards, whatever the seed.
func TestShardSpread(t *testing.T) {
	for range 20 {
		tb := NewTable(Config{})
		var lport, remote [numShards]int
		const n = 64 * numShards
		for i := range n {
			k := Key{Local: key16(guest4), Remote: key16(remote4), LPort: uint16(i), RPort: 443, Proto: protoTCP, Family: 4}
			lport[hashKey(&k, &tb.sec)>>shardShift]++
			k.LPort = 443
			k.Remote[15] = byte(i)
			k.Remote[14] = byte(i >> 8)
			remote[hashKey(&k, &tb.sec)>>shardShift]++
		}
		for s := range numShards {
			if lport[s] < 25 || lport[s] > 110 || remote[s] < 25 || remote[s] > 110 {
				t.Fatalf("shard %d: %d / %d keys of %d per shard", s, lport[s], remote[s], n/numShards)
			}
		}
	}
}

// TestKeyEq: keys that differ in any one bit of any field are unequal.
func TestKeyEq(t *testing.T) {
	a := Key{Local: key16("2001:db8::2"), Remote: key16("2001:db8::1"), LPort: 40000, RPort: 443, Proto: protoTCP, Family: 6}
	if b := a; !keyEq(&a, &b) {
		t.Fatal("a key differs from its copy")
	}
	raw := (*[unsafe.Sizeof(a)]byte)(unsafe.Pointer(&a))
	for i := range raw {
		for bit := range 8 {
			b := a
			(*[unsafe.Sizeof(b)]byte)(unsafe.Pointer(&b))[i] ^= 1 << bit
			if keyEq(&a, &b) || keyEq(&b, &a) {
				t.Fatalf("byte %d bit %d: equal", i, bit)
			}
		}
	}
}

func TestZoneLimit(t *testing.T) {
	tb := NewTable(Config{ZoneLimit: 100})
	a, b := tb.NewZone(), tb.NewZone()
	now := 10 * sec
	// An established TCP connection in a, before the flood.
	c := newTCPTest(t, a, false, 1000, 2000)
	c.now = now
	c.handshake()
	for i := range 200 {
		p := udpOut(false, uint16(10000+i), 53)
		v := a.Track(&p, now)
		if v != New {
			t.Fatalf("flood %d: %v", i, v)
		}
		ok := a.Commit(&p, now)
		if ok != (i < 99) {
			t.Fatalf("commit %d: %v", i, ok)
		}
	}
	if a.Len() != 100 || a.Counters().ZoneFull != 101 || a.Counters().Entries != 100 {
		t.Fatalf("len %d counters %+v", a.Len(), a.Counters())
	}
	// Nothing was evicted: the established connection goes on.
	c.bulk(c.guest, 10000, 1000, false)
	c.expectState("ESTABLISHED")
	// b is not affected.
	for i := range 100 {
		p := udpOut(false, uint16(10000+i), 53)
		if trackCommit(b, &p, now) != New {
			t.Fatalf("zone b commit %d", i)
		}
	}
	if b.Counters().ZoneFull != 0 || tb.Len() != 200 {
		t.Fatalf("b %+v, table %d", b.Counters(), tb.Len())
	}
	// Raising the limit lets a commit again; lowering evicts nothing.
	a.SetLimit(101)
	p := udpOut(false, 9, 53)
	if trackCommit(a, &p, now) != New || a.Len() != 101 {
		t.Fatal("after SetLimit")
	}
	a.SetLimit(10)
	if a.Len() != 101 || a.Limit() != 10 {
		t.Fatal("lowering the limit evicted")
	}
	// When entries expire, a commit reuses their room.
	a.SetLimit(0)
	if a.Limit() != 100 {
		t.Fatalf("limit %d", a.Limit())
	}
	later := now + 31*sec
	if n := a.Sweep(later); n != 100 { // the UDP ones; the TCP one stays
		t.Fatalf("swept %d", n)
	}
	if a.Len() != 1 || a.Counters().Expired != 100 {
		t.Fatalf("after sweep: %d, %+v", a.Len(), a.Counters())
	}
}

func TestTableLimit(t *testing.T) {
	tb := NewTable(Config{TableLimit: 50, ZoneLimit: 40})
	a, b := tb.NewZone(), tb.NewZone()
	for i := range 40 {
		p := udpOut(false, uint16(i), 53)
		trackCommit(a, &p, 0)
	}
	for i := range 20 {
		p := udpOut(false, uint16(i), 53)
		v := trackCommit(b, &p, 0)
		if (v == New) != (i < 10) {
			t.Fatalf("b commit %d: %v", i, v)
		}
	}
	if tb.Len() != 50 || b.Counters().TableFull != 10 || b.Len() != 10 || a.Len() != 40 {
		t.Fatalf("table %d, a %d, b %d %+v", tb.Len(), a.Len(), b.Len(), b.Counters())
	}
	tc := tb.Counters()
	if tc.Entries != 50 || tc.New != 50 || tc.TableFull != 10 {
		t.Fatalf("table counters %+v", tc)
	}
	// Closing a returns its entries to the table.
	a.Close()
	if tb.Len() != 10 || a.Len() != 0 {
		t.Fatalf("after close: %d %d", tb.Len(), a.Len())
	}
	p := udpOut(false, 999, 53)
	if a.Commit(&p, 0) {
		t.Fatal("commit on a closed zone")
	}
	if trackCommit(b, &p, 0) != New {
		t.Fatal("b commit after a closed")
	}
	tc = tb.Counters()
	if tc.Entries != 11 || tc.New != 51 || tc.Flushed != 40 {
		t.Fatalf("table counters after close %+v", tc)
	}
	a.Close() // twice is fine
}

func TestFlushEntriesSweep(t *testing.T) {
	tb := NewTable(Config{Timeouts: Timeouts{UDP: 5 * time.Second}})
	z := tb.NewZone()
	for i := range 1000 {
		p := udpOut(i%2 == 0, uint16(i), 53)
		trackCommit(z, &p, int64(i)*int64(time.Millisecond))
	}
	n := 0
	z.Entries(sec, func(e Entry) bool {
		if e.State != "UNREPLIED" || e.Origin != Outbound || e.Packets[Outbound] != 1 || e.Expires <= 0 || e.Expires > 5*time.Second {
			t.Fatalf("entry %+v", e)
		}
		n++
		return true
	})
	if n != 1000 {
		t.Fatalf("%d entries", n)
	}
	n = 0
	z.Entries(sec, func(Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("stopped after %d", n)
	}
	// Half have expired at 5.5 s (committed at 0..999 ms, 5 s each).
	if got := z.Sweep(5*sec + 500*int64(time.Millisecond)); got != 501 {
		t.Fatalf("swept %d", got)
	}
	if z.Len() != 499 || tb.Len() != 499 {
		t.Fatalf("len %d %d", z.Len(), tb.Len())
	}
	if got := z.Flush(); got != 499 || z.Len() != 0 || tb.Len() != 0 || z.Counters().Flushed != 499 {
		t.Fatalf("flush %d, %+v", got, z.Counters())
	}
	// The zone works after a flush.
	p := udpOut(false, 1, 53)
	if trackCommit(z, &p, 10*sec) != New || z.Track(&p, 10*sec) != Established {
		t.Fatal("after flush")
	}
	// SetTimeouts applies on the next refresh.
	tb.SetTimeouts(Timeouts{UDP: 60 * time.Second})
	z.Track(&p, 11*sec)
	if e, _ := entryOf(z, p.Key, 11*sec); e.Expires != 60*time.Second {
		t.Fatalf("expires %v", e.Expires)
	}
	if tb.Sweep(72*sec) != 1 {
		t.Fatal("table sweep")
	}
}

// TestSlabReuse: steady churn reuses freed slots without allocating.
func TestSlabReuse(t *testing.T) {
	z := newZone(t, Config{})
	ps := make([]Packet, 512)
	for i := range ps {
		ps[i] = udpOut(false, uint16(i), 53)
	}
	now := int64(0)
	round := func() {
		for i := range ps {
			z.Track(&ps[i], now)
			z.Commit(&ps[i], now)
		}
		now += 31 * sec
		z.Sweep(now)
	}
	for range 5 {
		round() // warm up: maps and slabs at their size
	}
	// The slab never grows again; Go's map may rehash in place now and
	// then to clear deleted slots (amortised: a few per round).
	chunks := 0
	for i := range z.shards {
		chunks += len(z.shards[i].chunks)
	}
	if n := testing.AllocsPerRun(20, round); n > 16 {
		t.Fatalf("%v allocations per round of 512 connections", n)
	}
	after := 0
	for i := range z.shards {
		after += len(z.shards[i].chunks)
	}
	if after != chunks {
		t.Fatalf("slab grew from %d to %d chunks", chunks, after)
	}
}

func TestTrackEstablishedNoAlloc(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, true, 1000, 2000)
	c.handshake()
	p := c.packet(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt, ack: c.guest.rcv, win: c.guest.win, paylen: 1000, ts: true})
	u := udpOut(false, 1, 2)
	trackCommit(z, &u, c.now)
	if n := testing.AllocsPerRun(1000, func() {
		z.Track(&p, c.now)
		z.Track(&u, c.now)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestEntrySize: 256 entries of 128 bytes fill a 32 KiB chunk exactly
// (Go's largest small size class: no rounding up to whole pages).
func TestEntrySize(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s*chunkSize != 32<<10 {
		t.Fatalf("entry is %d bytes", s)
	}
}

// TestShardIndex: the open-addressing index against a Go map, with tags
// from a tiny range so that probe sequences cluster and wrap around.
func TestShardIndex(t *testing.T) {
	for _, tags := range []int{3, 17, 1 << 20} {
		var s shard
		ref := map[uint16]uint32{} // key's LPort -> slab index
		tagOf := func(lp uint16) uint32 { return 1 + uint32(lp)*2654435761%uint32(tags) }
		rng := rand.New(rand.NewPCG(1, uint64(tags)))
		for op := range 60000 {
			lp := uint16(rng.IntN(3000))
			k := Key{LPort: lp, Family: 4}
			pos, i, ok := s.find(&k, tagOf(lp))
			want, inRef := ref[lp]
			if ok != inRef || ok && i != want {
				t.Fatalf("tags %d op %d: find %d = %v %d, want %v %d", tags, op, lp, ok, i, inRef, want)
			}
			if ok {
				if rng.IntN(2) == 0 {
					s.deleteAt(pos)
					s.release(i)
					delete(ref, lp)
				}
			} else if len(ref) < 2000 {
				i, e := s.alloc()
				e.key, e.flags = k, efUsed
				s.insert(tagOf(lp), i)
				ref[lp] = i
			}
			if s.n != len(ref) {
				t.Fatalf("n %d, want %d", s.n, len(ref))
			}
		}
		for lp, i := range ref {
			if got := s.position(tagOf(lp), i); got < 0 {
				t.Fatalf("position of %d: %d", lp, got)
			}
		}
	}
}

// TestHintStale: a Hint whose connection was removed, swept or flushed,
// or whose slot another connection took, is not trusted: the verdicts,
// entries and counters are Track's.
func TestHintStale(t *testing.T) {
	tb := NewTable(Config{Timeouts: Timeouts{UDP: 5 * time.Second}})
	z := tb.NewZone()
	a := udpOut(false, 1000, 53)
	// b: another connection in a's shard, so that it takes a's slot
	// once a is swept.
	sa, _ := z.shardOf(&a.Key)
	b := a
	for p := uint16(1001); ; p++ {
		b = udpOut(false, p, 53)
		if s, _ := z.shardOf(&b.Key); s == sa {
			break
		}
	}
	var h Hint
	now := 10 * sec
	if v := z.TrackHint(&a, now, &h); v != New || !z.Commit(&a, now) {
		t.Fatalf("open a: %v", v)
	}
	if v := z.TrackHint(&a, now, &h); v != Established || h.zone != z.id {
		t.Fatalf("a: %v, hint %+v", v, h)
	}
	// a expires and is swept; b takes its slot.
	now += 6 * sec
	if n := z.Sweep(now); n != 1 {
		t.Fatalf("swept %d", n)
	}
	if v := z.TrackHint(&b, now, nil); v != New || !z.Commit(&b, now) {
		t.Fatalf("open b: %v", v)
	}
	if _, i, _ := sa.find(&b.Key, slotTag(hashKey(&b.Key, &tb.sec))); i != h.i {
		t.Fatalf("b in slot %d, a's hint names %d", i, h.i)
	}
	// The hint names b's slot: a is still absent, and b untouched.
	if v := z.TrackHint(&a, now, &h); v != New {
		t.Fatalf("a after its sweep: %v", v)
	}
	var pkts [2]uint64
	z.Entries(now, func(e Entry) bool { pkts = e.Packets; return true })
	if z.Len() != 1 || pkts != [2]uint64{1, 0} {
		t.Fatalf("%d entries, b's packets %v", z.Len(), pkts)
	}
	// A hint on b, then a flush: b is gone.
	if v := z.TrackHint(&b, now, &h); v != Established {
		t.Fatalf("b: %v", v)
	}
	z.Flush()
	if v := z.TrackHint(&b, now, &h); v != New {
		t.Fatalf("b after the flush: %v", v)
	}
	// Reopened (a new slab): the stale hint finds it again.
	if !z.Commit(&b, now) {
		t.Fatal("reopen b")
	}
	if v := z.TrackHint(&b, now, &h); v != Established {
		t.Fatalf("b reopened: %v", v)
	}
	// Another zone's frame with the same key does not use the hint.
	z2 := tb.NewZone()
	if v := z2.TrackHint(&b, now, &h); v != New {
		t.Fatalf("b in another zone: %v", v)
	}
	if c := z.Counters(); c.New != 3 || c.Expired != 1 || c.Flushed != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestShardLayout: a shard is two cache lines, and what a lookup reads
// is in the first.
func TestShardLayout(t *testing.T) {
	var s shard
	if n := unsafe.Sizeof(s); n != 128 {
		t.Fatalf("shard is %d bytes", n)
	}
	if o := unsafe.Offsetof(s.freed) + unsafe.Sizeof(s.freed); o > 64 {
		t.Fatalf("the lookup's fields end at %d", o)
	}
}
