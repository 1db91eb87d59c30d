package soak

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "hvnet/switch"
	"hvnet/vhost"
)

func durationFromEnv(t *testing.T) time.Duration {
	if s := os.Getenv("HVNET_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("HVNET_SOAK_DURATION: %v", err)
		}
		return d
	}
	return 5 * time.Second
}

func fdCount() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

func rssKiB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// endpoint is one vhost-user port with a frontend that is killed and
// restarted: it sends to peer and counts what it receives.
type endpoint struct {
	name      string
	port      *vhost.Port
	sock      string
	mac, peer [6]byte
	c         counts
	kills     int
	sessions  int
}

// run drives sessions until ctx ends; kill ends the current one early.
func (e *endpoint) run(ctx context.Context, t *testing.T, kill <-chan struct{}) {
	var seq uint32
	for ctx.Err() == nil {
		g, err := dial(e.sock)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the port is between sessions
			continue
		}
		e.sessions++
	session:
		for {
			select {
			case <-ctx.Done():
				break session
			case <-kill:
				e.kills++
				g.kill(&e.c)
				g = nil
				break session
			default:
			}
			seq += uint32(g.send(e.peer, e.mac, 16, seq))
			g.waitCall(1)
			g.poll(&e.c)
		}
		if g != nil {
			// Drain: stop sending, read until the backend has used every
			// transmitted chain and nothing more arrives.
			for quiet := 0; quiet < 20; {
				before := e.c.received.Load() + e.c.sent.Load()
				g.waitCall(5)
				g.poll(&e.c)
				if e.c.received.Load()+e.c.sent.Load() == before && g.tx.UsedIdx() == g.txPushed {
					quiet++
				} else {
					quiet = 0
				}
			}
			g.kill(&e.c)
		}
	}
}

// TestSoak: two vhost-user ports exchange unicast traffic through the
// switch while their frontends are killed (with rings full) and restarted
// at random intervals. Every frame is accounted for, and fds, goroutines
// and RSS return near their starting values.
func TestSoak(t *testing.T) {
	dur := durationFromEnv(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HVNET_SOAK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("soak: duration %v seed %d (HVNET_SOAK_SEED=%d repeats the fault schedule)", dur, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	runtime.GC()
	fd0, g0, rss0 := fdCount(), runtime.NumGoroutine(), rssKiB()

	func() {
		sw := vswitch.New(vswitch.Config{})
		dir := t.TempDir()
		eps := []*endpoint{
			{name: "a", mac: [6]byte{2, 0, 0, 0, 0, 1}, peer: [6]byte{2, 0, 0, 0, 0, 2}},
			{name: "b", mac: [6]byte{2, 0, 0, 0, 0, 2}, peer: [6]byte{2, 0, 0, 0, 0, 1}},
		}
		ctx, cancel := context.WithCancel(context.Background())
		var portsWG sync.WaitGroup
		for _, e := range eps {
			e.sock = filepath.Join(dir, e.name+".sock")
			p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: e.name, PVID: 1},
				Socket: e.sock, Logger: hclog.New(&hclog.LoggerOptions{Name: e.name, Level: hclog.Error})})
			if err != nil {
				t.Fatal(err)
			}
			e.port = p
			if err := sw.AddStatic(e.name, 1, vswitch.MAC(e.mac)); err != nil {
				t.Fatal(err)
			}
			portsWG.Add(1)
			go func() { defer portsWG.Done(); p.Run(ctx) }()
		}
		trafficCtx, stopTraffic := context.WithCancel(ctx)
		kills := make([]chan struct{}, len(eps))
		var wg sync.WaitGroup
		for i, e := range eps {
			kills[i] = make(chan struct{})
			wg.Add(1)
			go func() { defer wg.Done(); e.run(trafficCtx, t, kills[i]) }()
		}
		// Faults: a random frontend killed every 50..500 ms.
		deadline := time.Now().Add(dur)
		faults := 0
		for time.Now().Before(deadline) {
			time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
			select {
			case kills[rng.IntN(len(eps))] <- struct{}{}:
				faults++
			case <-time.After(time.Second):
			}
		}
		stopTraffic()
		wg.Wait()

		// Accounting (per port, from the frontend's and the switch's counters).
		var sent, delivered, drops, lost, unaccounted uint64
		rx := map[string]vswitch.PortCounters{}
		for _, c := range sw.Counters() {
			rx[c.Name] = c
			for _, d := range c.Drops {
				drops += d
			}
		}
		for _, e := range eps {
			c := rx[e.name]
			s, r, l, inflight := e.c.sent.Load(), e.c.received.Load(), e.c.lostInRing.Load(), e.c.txInFlight.Load()
			// Into the switch: the port's RxPackets is what left the
			// frontend. The frontend saw every chain used except those the
			// backend took from a killed frontend's ring after its last
			// look: at most what was queued at the kill.
			sent += c.RxPackets
			if c.RxPackets < s || c.RxPackets > s+inflight {
				t.Errorf("%s: frontend saw %d sent (+%d queued at kills), switch received %d", e.name, s, inflight, c.RxPackets)
				unaccounted += max(s, c.RxPackets) - min(s, c.RxPackets)
			}
			// Out of the switch: what the switch gave the device either was
			// read by the frontend or died in its ring with a kill (at most
			// one ring, qSize frames, per kill).
			delivered += r
			gap := int64(c.TxPackets) - int64(r)
			if gap < 0 || uint64(gap) > uint64(e.kills+1)*qSize {
				t.Errorf("%s: switch sent %d, frontend received %d (lost in rings %d, %d kills)", e.name, c.TxPackets, r, l, e.kills)
				unaccounted += uint64(max(gap, -gap))
			} else {
				// Read as lost at the kill (l), or written into the ring
				// after it: lost with the frontend either way.
				lost += uint64(gap)
			}
			t.Logf("%s: sessions %d kills %d sent %d received %d lost in ring %d switch rx %d tx %d drops %v", e.name, e.sessions, e.kills, s, r, uint64(max(gap, 0)), c.RxPackets, c.TxPackets, c.Drops)
		}
		// Through the switch: every frame in is out, or a counted drop.
		if sent != delivered+lost+drops {
			d := int64(sent) - int64(delivered+lost+drops)
			t.Errorf("switch: %d in, %d delivered + %d lost in rings + %d dropped", sent, delivered, lost, drops)
			unaccounted += uint64(max(d, -d))
		}
		t.Logf("SOAK RESULT: duration %v seed %d faults %d (frontend kills) frames sent %d delivered %d counted drops %d lost in killed rings %d frames lost unaccounted %d (%.0f frames/s)",
			dur, seed, faults, sent, delivered, drops, lost, unaccounted, float64(sent)/dur.Seconds())
		if unaccounted != 0 {
			t.Errorf("frames lost unaccounted: %d", unaccounted)
		}
		cancel()
		portsWG.Wait()
		for _, e := range eps {
			e.port.Remove()
		}
	}()

	// Leaks: give finished goroutines a moment to exit.
	var fd1, g1, rss1 int
	for range 50 {
		runtime.GC()
		fd1, g1, rss1 = fdCount(), runtime.NumGoroutine(), rssKiB()
		if fd1 <= fd0+2 && g1 <= g0+2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("SOAK RESOURCES: fds %d -> %d, goroutines %d -> %d, RSS %d -> %d KiB", fd0, fd1, g0, g1, rss0, rss1)
	if fd1 > fd0+2 || g1 > g0+2 {
		t.Errorf("leak: fds %d -> %d, goroutines %d -> %d", fd0, fd1, g0, g1)
	}
	if rss1 > rss0+64<<10 {
		t.Errorf("RSS grew %d -> %d KiB", rss0, rss1)
	}
}
