package conntrack

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentConnections: TCP connections run to completion on many
// goroutines at once, several per zone and over several zones, while
// Sweep and Entries run.
func TestConcurrentConnections(t *testing.T) {
	tb := NewTable(Config{})
	zones := []*Zone{tb.NewZone(), tb.NewZone(), tb.NewZone()}
	var now atomic.Int64
	now.Store(1000 * sec)
	stop := make(chan struct{})
	var mgmt sync.WaitGroup
	mgmt.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, z := range zones {
				z.Sweep(now.Load())
				z.Entries(now.Load(), func(Entry) bool { return true })
				z.Counters()
			}
			tb.Counters()
		}
	})
	t.Run("group", func(t *testing.T) {
		for g := range 12 {
			t.Run(fmt.Sprint(g), func(t *testing.T) {
				t.Parallel()
				z := zones[g%len(zones)]
				for i := range 10 {
					c := newTCPTest(t, z, g%2 == 0, uint32(g*1000+i), uint32(i*7777))
					c.now = now.Load()
					c.gp = uint16(20000 + g*100 + i)
					c.guest.ws, c.remote.ws = 7, 7
					c.handshake()
					c.guest.win, c.remote.win = 2048, 2048
					c.bulk(c.guest, 200_000, 1448, false)
					c.bulk(c.remote, 200_000, 1448, false)
					c.expect("fin", c.send(c.guest, FlagFIN|FlagACK, 0, true), Established)
					c.expect("fin", c.send(c.remote, FlagFIN|FlagACK, 0, true), Reply)
					c.expect("ack", c.send(c.guest, FlagACK, 0, true), Established)
					c.expectState("TIME_WAIT")
				}
			})
		}
	})
	close(stop)
	mgmt.Wait()
	c := tb.Counters()
	if c.Invalid != 0 || c.New != 120 || tb.Len() != 120 {
		t.Fatalf("counters %+v, len %d", c, tb.Len())
	}
}

// TestConcurrentSameKey: both directions of one UDP flow, and racing
// commits of one new key, from many goroutines.
func TestConcurrentSameKey(t *testing.T) {
	z := newZone(t, Config{})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				var p Packet
				if g%2 == 0 {
					p = udpOut(false, uint16(i%50), 53)
				} else {
					p = udpIn(false, uint16(i%50), 53)
				}
				switch v := z.Track(&p, sec); v {
				case New:
					if !z.Commit(&p, sec) {
						bad.Add(1)
					}
				case Established, Reply:
				default:
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 || z.Len() != 50 || z.Counters().New < 50 {
		t.Fatalf("bad %d, len %d, %+v", bad.Load(), z.Len(), z.Counters())
	}
	z.Entries(sec, func(e Entry) bool {
		if e.Packets[0]+e.Packets[1] == 0 {
			t.Errorf("entry without packets %+v", e)
		}
		return true
	})
}

// TestSYNFlood: a flood of unique SYNs into one zone, from several
// goroutines, while another zone's established connection carries data
// and its own new connections: the other zone's verdicts, entries and
// counters are untouched, and the flooded zone stays at its limit.
func TestSYNFlood(t *testing.T) {
	tb := NewTable(Config{ZoneLimit: 5000, TableLimit: 20000})
	victim, flooded := tb.NewZone(), tb.NewZone()
	c := newTCPTest(t, victim, false, 1000, 2000)
	c.guest.ws, c.remote.ws = 7, 7
	c.handshake()
	c.guest.win, c.remote.win = 2048, 2048
	var wg sync.WaitGroup
	var floods atomic.Int64
	stop := make(chan struct{})
	for g := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := tcpseg{sport: uint16(i), dport: 80, seq: uint32(i), flags: FlagSYN, win: 1000, wscale: 7}
				src := fmt.Sprintf("198.18.%d.%d", g, i>>16&0xff)
				p := parse4(ip4(src, "10.0.0.99", protoTCP, s.bytes(), ip4opts{}), Inbound)
				if flooded.Track(&p, c.now) == New {
					flooded.Commit(&p, c.now)
				}
				floods.Add(1)
			}
		})
	}
	for range 20 {
		c.bulk(c.guest, 100_000, 1448, false)
		c.bulk(c.remote, 100_000, 1448, false)
	}
	// New connections in the victim zone still open.
	for i := range 50 {
		d := newTCPTest(t, victim, false, uint32(i), 1)
		d.now = c.now
		d.gp = uint16(30000 + i)
		d.handshake()
	}
	for floods.Load() < 20000 {
	}
	close(stop)
	wg.Wait()
	vc, fc := victim.Counters(), flooded.Counters()
	if vc.Invalid != 0 || vc.ZoneFull != 0 || vc.TableFull != 0 || victim.Len() != 51 {
		t.Fatalf("victim %+v len %d", vc, victim.Len())
	}
	if flooded.Len() != 5000 || fc.ZoneFull == 0 || fc.New != 5000 {
		t.Fatalf("flooded %+v len %d", fc, flooded.Len())
	}
	c.expectState("ESTABLISHED")
}

// TestConcurrentFlushSweep: commits, lookups, sweeps and flushes race;
// the counts stay exact. Two of the goroutines track through a Hint
// (keys in trains of two, so that it is used), whose entries the others
// remove and reuse under it.
func TestConcurrentFlushSweep(t *testing.T) {
	tb := NewTable(Config{ZoneLimit: 3000, TableLimit: 5000, Timeouts: Timeouts{UDP: 2 * time.Second}})
	zs := []*Zone{tb.NewZone(), tb.NewZone()}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			z := zs[g%2]
			var hint *Hint
			if g >= 2 {
				hint = new(Hint)
			}
			for i := range 20000 {
				p := udpOut(i%3 == 0, uint16(i%4000), uint16(g))
				if hint != nil {
					p = udpOut(i/2%3 == 0, uint16(i/2%4000), uint16(g))
				}
				now := int64(i) * sec / 1000
				if z.TrackHint(&p, now, hint) == New {
					z.Commit(&p, now)
				}
				switch i % 997 {
				case 0:
					z.Sweep(now)
				case 500:
					if g == 0 {
						z.Flush()
					}
				}
			}
		})
	}
	wg.Wait()
	for _, z := range zs {
		n := 0
		z.Entries(0, func(Entry) bool { n++; return true })
		if n != z.Len() || z.Len() > 3000 {
			t.Fatalf("listed %d, counted %d", n, z.Len())
		}
	}
	if tb.Len() != zs[0].Len()+zs[1].Len() {
		t.Fatalf("table %d, zones %d+%d", tb.Len(), zs[0].Len(), zs[1].Len())
	}
	for _, z := range zs {
		z.Close()
	}
	if tb.Len() != 0 {
		t.Fatalf("table %d after close", tb.Len())
	}
}
