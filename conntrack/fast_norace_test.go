//go:build !race

package conntrack

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestTrackFastBytesChanging: a frame's head rewritten byte by byte by
// another goroutine while it is tracked, as if it were still a tenant's
// memory (the switch gives conntrack a host-side copy; a caller that
// does not must still not corrupt the table). TrackFast reads each
// header byte once, so whatever it decides is a frame that could have
// been sent; the general path it falls back to parses again. No panic,
// and the table stays consistent: every entry well-formed, the counts
// exact, everything gone at the end of time. (Not under -race: the
// rewriting is a data race by design.)
func TestTrackFastBytesChanging(t *testing.T) {
	tb := NewTable(Config{ZoneLimit: 64, TableLimit: 64})
	z := tb.NewZone()
	c := newTCPTest(t, z, false, 1000, 9000)
	c.twin = nil
	c.guest.ws, c.remote.ws = 7, 7
	c.handshake()
	frames := make([][]byte, 0, 4)
	l3s := make([]int, 0, 4)
	for _, s := range []struct {
		e  *tcpEp
		ts bool
	}{{c.guest, true}, {c.remote, true}, {c.guest, false}, {c.remote, false}} {
		f, l3, _ := c.frame(s.e, tcpseg{seq: s.e.nxt, ack: s.e.rcv, flags: FlagACK | FlagPSH, win: s.e.win, wscale: -1, ts: s.ts, paylen: 100})
		frames, l3s = append(frames, f), append(l3s, l3)
	}
	orig := make([][]byte, len(frames))
	for i, f := range frames {
		orig[i] = append([]byte(nil), f...)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for !stop.Load() {
			i := rng.IntN(len(frames))
			f := frames[i]
			if rng.IntN(8) == 0 { // back to a good frame now and then
				copy(f, orig[i])
				continue
			}
			f[l3s[i]+rng.IntN(56)] = byte(rng.Uint32())
		}
	})
	var hc HintCache
	var h Hint
	now := c.now
	fast := 0
	for n := range 200_000 {
		i := n % len(frames)
		dir := Outbound
		if i%2 == 1 {
			dir = Inbound
		}
		f := frames[i]
		if _, ok := z.TrackFast(f, len(f), l3s[i], EtherTypeIPv4, dir, now, &hc); ok {
			fast++
		} else {
			var p Packet
			Parse(f, l3s[i], EtherTypeIPv4, dir, &p)
			if z.TrackHint(&p, now, &h) == New {
				z.Commit(&p, now)
			}
		}
		if n%1000 == 0 {
			now += sec
		}
	}
	stop.Store(true)
	wg.Wait()
	m := zoneEntries(z)
	if len(m) != z.Len() || z.Len() != tb.Len() || z.Len() > 64 {
		t.Fatalf("%d entries, zone counts %d, table %d", len(m), z.Len(), tb.Len())
	}
	for k, e := range m {
		if e.key != k || e.kind != KindTCP && e.kind != KindUDP && e.kind != KindICMPEcho && e.kind != KindOther ||
			e.kind == KindTCP && e.state >= tcpNumStates || e.origin > Inbound {
			t.Fatalf("entry %+v", e)
		}
	}
	t.Logf("%d frames through the fast path; %d entries, counters %+v", fast, len(m), z.Counters())
	if fast < 1000 {
		t.Fatalf("only %d frames through the fast path", fast)
	}
	z.Sweep(now + 1e18)
	if z.Len() != 0 || tb.Len() != 0 {
		t.Fatalf("%d left after the end of time", z.Len())
	}
}
