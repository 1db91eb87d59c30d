package soak

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The real-daemon and DPDK paths end at hops whose counters die with them
// (a killed hvnet process, a killed testpmd): what those hops dropped
// since they were last read cannot be counted. So their traffic is
// windowed: a sender keeps at most daemonWindow frames unreceived by its
// partner, which keeps every ring on the way from filling (no drops in
// steady state), and bounds what a dying hop can take with it.
const daemonWindow = 24

// daemonStall: a full window that makes no progress this long is written
// off (its frames were dropped, counted or not, or died with a hop), so a
// lost frame never stops a flow. Liveness only: the accounting does not
// depend on it.
const daemonStall = 500 * time.Millisecond

// daemonGenCounts is one end's traffic in one generation of the hop
// behind it (a daemon incarnation).
type daemonGenCounts struct {
	sent, received, lostInRing, txInFlight uint64
	sessions                               int
}

// daemonEnd is one end of a windowed flow: a frontend session at a time,
// sending to partner while gate allows and the window has room.
type daemonEnd struct {
	name      string
	mac, peer [6]byte
	partner   *daemonEnd
	// connect starts a session (see endpoint.connect).
	connect func(ctx context.Context) (*guest, <-chan struct{}, error)
	// gen is the generation a new session belongs to (nil: always 0).
	gen func() int
	// gate says whether to send now.
	gate func() bool

	c        counts
	pushed   atomic.Uint64 // frames queued, all sessions
	forgiven atomic.Uint64 // frames written off by reset
	live     atomic.Int64  // generation of the current session; -1: none
	hangups  int           // sessions ended by the backend hanging up
	stalls   int           // windows written off after daemonStall without progress

	mu   sync.Mutex
	gens map[int]*daemonGenCounts
}

func newDaemonEnd(name string, mac, peer [6]byte, connect func(context.Context) (*guest, <-chan struct{}, error)) *daemonEnd {
	e := &daemonEnd{name: name, mac: mac, peer: peer, connect: connect, gens: map[int]*daemonGenCounts{}}
	e.live.Store(-1)
	return e
}

// daemonPair makes a and b partners.
func daemonPair(a, b *daemonEnd) { a.partner, b.partner = b, a }

// inFlight is what e sent that its partner has not received (less what
// reset wrote off).
func (e *daemonEnd) inFlight() int64 {
	return int64(e.pushed.Load()) - int64(e.partner.c.received.Load()) - int64(e.forgiven.Load())
}

// reset writes off e's frames in flight (lost in a dead hop) so the window
// opens again.
func (e *daemonEnd) reset() {
	e.forgiven.Store(e.pushed.Load() - e.partner.c.received.Load())
}

// run drives sessions until ctx ends, draining the last one.
func (e *daemonEnd) run(ctx context.Context) {
	var seq uint32
	for ctx.Err() == nil {
		g, hup, err := e.connect(ctx)
		if err != nil {
			continue
		}
		gen := 0
		if e.gen != nil {
			gen = e.gen()
		}
		s0, r0, l0, f0 := e.c.sent.Load(), e.c.received.Load(), e.c.lostInRing.Load(), e.c.txInFlight.Load()
		e.live.Store(int64(gen))
		hungUp := false
		lastRecv, lastProgress := e.partner.c.received.Load(), time.Now()
	session:
		for {
			select {
			case <-ctx.Done():
				break session
			case <-hup:
				hungUp = true
				break session
			default:
			}
			if r := e.partner.c.received.Load(); r != lastRecv || e.inFlight() < daemonWindow {
				lastRecv, lastProgress = r, time.Now()
			} else if time.Since(lastProgress) > daemonStall {
				e.stalls++
				e.reset()
			}
			if e.partner.live.Load() >= 0 && (e.gate == nil || e.gate()) {
				if room := daemonWindow - e.inFlight(); room > 0 {
					n := g.send(e.peer, e.mac, int(min(room, 16)), seq)
					seq += uint32(n)
					e.pushed.Add(uint64(n))
				}
			}
			g.waitCall(1)
			g.poll(&e.c)
		}
		e.live.Store(-1)
		if hungUp {
			e.hangups++
		} else {
			// Drain as endpoint.run does: read until quiet.
			for quiet, i := 0, 0; quiet < 20 && i < 400; i++ {
				before := e.c.received.Load() + e.c.sent.Load()
				g.waitCall(5)
				g.poll(&e.c)
				if e.c.received.Load()+e.c.sent.Load() == before && g.tx.UsedIdx() == g.txPushed {
					quiet++
				} else {
					quiet = 0
				}
			}
		}
		g.kill(&e.c)
		e.mu.Lock()
		gc := e.gens[gen]
		if gc == nil {
			gc = &daemonGenCounts{}
			e.gens[gen] = gc
		}
		gc.sent += e.c.sent.Load() - s0
		gc.received += e.c.received.Load() - r0
		gc.lostInRing += e.c.lostInRing.Load() - l0
		gc.txInFlight += e.c.txInFlight.Load() - f0
		gc.sessions++
		e.mu.Unlock()
	}
}

// genCounts returns e's counts in generation gen (zero if none).
func (e *daemonEnd) genCounts(gen int) daemonGenCounts {
	e.mu.Lock()
	defer e.mu.Unlock()
	if gc := e.gens[gen]; gc != nil {
		return *gc
	}
	return daemonGenCounts{}
}
