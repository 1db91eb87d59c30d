package vhost

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// A frontend whose shared memory shrinks under the backend:
// it ftruncates its memfd after SET_MEM_TABLE, then makes the backend
// touch the vanished pages from every goroutine that can: its own TX
// worker (a kick), another port's forwarding goroutine (a frame flooded
// into its RX ring), and its session goroutine (a ring reconfigured).
// Without the fault guard each one kills the process with SIGBUS. With
// it: only that frontend's session ends, the fault is counted, the other
// ports keep forwarding, and the socket takes a new frontend.
func TestMemoryShrinksUnderBackend(t *testing.T) {
	hb := newHostileBed(t)
	for _, tc := range []struct {
		name    string
		prepare func(g *guest) // before the shrink (the frontend faults on its own memory after)
		attack  func(g *guest)
	}{
		{"kick after shrink", func(g *guest) {
			time.Sleep(20 * time.Millisecond) // the TX worker stops polling and sleeps on the kick
			g.tx.Push(g.tx.AddChain(virtiotest.Buf{Data: append(make([]byte, hdrLen), ethFrame(0xff, 3, 1)...)}))
		}, func(g *guest) {
			g.kick[1].Signal()
		}},
		{"frame flooded into its rx ring", func(*guest) {}, func(g *guest) {
			hb.flows(t, "flood into the shrunk port")
		}},
		{"ring reconfigured", func(*guest) {}, func(g *guest) {
			// SET_VRING_ADDR on a running ring re-reads the used index.
			d := g.tx
			g.f.SetVringAddr(proto.VringAddr{Index: 1, Desc: g.mem.UVA(d.Desc), Avail: g.mem.UVA(d.Avail), Used: g.mem.UVA(d.Used)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := dialGuest(t, hb.victim.Socket)
			waitFor(t, hb.ev.up, "session start")
			g.mustNegotiate()
			g.postRx(4)
			tc.prepare(g)
			if err := unix.Ftruncate(g.mem.FD, 0); err != nil {
				t.Fatal(err)
			}
			tc.attack(g)
			waitFor(t, hb.ev.down, "the shrunk frontend's session end")
			st, ok := hb.port.LastStats()
			if !ok || st.MemoryFaults == 0 {
				t.Errorf("session stats %+v (ok %v): want a memory fault counted", st, ok)
			}
			hb.flows(t, "after "+tc.name)
			g.close()
		})
	}
	hb.takesNewFrontend(t, "after the shrinks")
}
