package soak

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
	"github.com/hvnet/hvnet/vhost"
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

// endpoint is one vhost-user port with a frontend whose sessions end by
// kills (the frontend crashes) or hang-ups (the backend restarts): it sends
// to peer and counts what it receives.
type endpoint struct {
	name      string
	port      *vhost.Port // server mode
	daemon    *daemon     // client mode
	sock      string
	mac, peer [6]byte
	c         counts
	kills     int
	restarts  int // sessions ended by the backend hanging up
	sessions  int
	// connect starts a session; the channel (nil: never) closes when the
	// backend hangs up.
	connect func(ctx context.Context) (*guest, <-chan struct{}, error)
}

func dialer(sock string) func(context.Context) (*guest, <-chan struct{}, error) {
	return func(context.Context) (*guest, <-chan struct{}, error) {
		g, err := dial(sock)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the port is between sessions
		}
		return g, nil, err
	}
}

// run drives sessions until ctx ends; kill ends the current one early.
func (e *endpoint) run(ctx context.Context, kill <-chan struct{}) {
	var seq uint32
	for ctx.Err() == nil {
		g, hup, err := e.connect(ctx)
		if err != nil {
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
			case <-hup:
				e.restarts++
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
			// transmitted chain and nothing more arrives (at most ~2 s; what
			// is left then counts as at a kill).
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
			g.kill(&e.c)
		}
	}
}

// TestSoak: vhost-user ports and an uplink exchange unicast traffic
// through the switch while faults hit at seeded random intervals: a
// server-mode port's frontend is killed (rings full) and restarted, a
// client-mode port's backend is closed and re-created (daemon restart;
// its frontend reconnects), and the uplink's link is flapped. Every frame
// is accounted for, and fds, goroutines and RSS return near their
// starting values.
//
// Traffic: a <-> b (server mode, frontend kills); c (client mode, daemon
// restarts) <-> the uplink's peer, an AF_PACKET socket in its own network
// namespace at the far end of a veth pair (as root; otherwise there is no
// uplink and c sends to a); d <-> e through a real hvnet process
// (daemon_test.go); f <-> g through testpmd between ports x and y (as
// root; dpdk_test.go).
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
		peerMAC := [6]byte{2, 0, 0, 0, 1, 0}
		eps := []*endpoint{
			{name: "a", mac: [6]byte{2, 0, 0, 0, 0, 1}, peer: [6]byte{2, 0, 0, 0, 0, 2}},
			{name: "b", mac: [6]byte{2, 0, 0, 0, 0, 2}, peer: [6]byte{2, 0, 0, 0, 0, 1}},
			{name: "c", mac: [6]byte{2, 0, 0, 0, 0, 3}, peer: peerMAC},
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var portsWG sync.WaitGroup
		for _, e := range eps[:2] {
			e.sock = filepath.Join(dir, e.name+".sock")
			p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: e.name, PVID: 1},
				Socket: e.sock, Logger: hclog.New(&hclog.LoggerOptions{Name: e.name, Level: hclog.Error})})
			if err != nil {
				t.Fatal(err)
			}
			e.port, e.connect = p, dialer(e.sock)
			portsWG.Add(1)
			go func() { defer portsWG.Done(); p.Run(ctx) }()
		}
		// c: the frontend listens, the port (client mode) connects.
		c := eps[2]
		c.sock = filepath.Join(dir, "c.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: c.sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c.connect = listener(ln)
		if c.daemon, err = newDaemon(sw, "c", c.sock); err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			if err := sw.AddStatic(e.name, 1, vswitch.MAC(e.mac)); err != nil {
				t.Fatal(err)
			}
		}

		// The uplink and its peer.
		var pr *peer
		var up *uplink.Port
		if netnstest.Private() {
			if pr, err = newPeer(peerMAC, etherTyp); err != nil {
				t.Fatal(err)
			}
			defer pr.close()
			if up, err = uplink.Open(uplinkIf, uplink.Config{TX: uplink.TXSendmmsg, WatchInterval: 20 * time.Millisecond,
				Logger: hclog.New(&hclog.LoggerOptions{Name: "up", Level: hclog.Error})}); err != nil {
				t.Fatal(err)
			}
			h, err := sw.AddPort(vswitch.PortConfig{Name: "up", PVID: 1}, up)
			if err != nil {
				up.Close()
				t.Fatal(err)
			}
			if err := up.Start(h); err != nil {
				up.Close()
				t.Fatal(err)
			}
			if err := sw.AddStatic("up", 1, vswitch.MAC(peerMAC)); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Log("not root: no uplink; c sends to a")
			c.peer = eps[0].mac
		}

		// The real daemon (hvnet switch, client-mode ports d and e).
		var daemonLns []*net.UnixListener
		defer func() {
			for _, ln := range daemonLns {
				ln.Close()
			}
		}()
		socks := map[string]string{"d": filepath.Join(dir, "d.sock"), "e": filepath.Join(dir, "e.sock")}
		var dEnds []*daemonEnd
		for i, name := range []string{"d", "e"} {
			ln, err := daemonListen(socks[name])
			if err != nil {
				t.Fatal(err)
			}
			daemonLns = append(daemonLns, ln)
			dEnds = append(dEnds, newDaemonEnd(name, [6]byte{2, 0, 0, 0, 3, byte(i)}, [6]byte{2, 0, 0, 0, 3, byte(1 - i)}, listener(ln)))
		}
		daemonPair(dEnds[0], dEnds[1])
		dp := newDaemonProc(daemonBuild(t), dir, socks)
		defer dp.stop()
		for _, e := range dEnds {
			e.gen = func() int { return int(dp.gen.Load()) }
			e.gate = func() bool { g := e.live.Load(); return g >= 0 && g == e.partner.live.Load() }
		}
		if err := dp.start(); err != nil {
			t.Fatal(err)
		}
		// Its fds with both ports idle (connected into the frontends'
		// listen backlogs, not yet accepted): the bound at the end.
		time.Sleep(100 * time.Millisecond)
		daemonFds0 := dp.fds()

		// DPDK: testpmd forwarding between x and y (as root).
		var pmd *dpdkPeer
		var pEnds []*daemonEnd
		if netnstest.Private() {
			pmd = &dpdkPeer{}
			fMAC, gMAC := [6]byte{2, 0, 0, 0, 4, 1}, [6]byte{2, 0, 0, 0, 4, 2}
			for i, pc := range []struct {
				name string
				vid  uint16
			}{{"x", 10}, {"y", 20}, {"f", 10}, {"g", 20}} {
				sock := filepath.Join(dir, pc.name+".sock")
				p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: pc.name, PVID: pc.vid}, Socket: sock,
					Logger: hclog.New(&hclog.LoggerOptions{Name: pc.name, Level: hclog.Error})})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Remove()
				portsWG.Add(1)
				go func() { defer portsWG.Done(); p.Run(ctx) }()
				if i < 2 {
					pmd.socks[i], pmd.ports[i] = sock, p
				} else {
					mac, peer := fMAC, gMAC
					if i == 3 {
						mac, peer = gMAC, fMAC
					}
					e := newDaemonEnd(pc.name, mac, peer, dialer(sock))
					e.gate = pmd.up.Load
					pEnds = append(pEnds, e)
				}
			}
			daemonPair(pEnds[0], pEnds[1])
			for _, st := range []struct {
				port string
				vid  uint16
				mac  [6]byte
			}{{"f", 10, fMAC}, {"x", 10, gMAC}, {"g", 20, gMAC}, {"y", 20, fMAC}} {
				if err := sw.AddStatic(st.port, st.vid, vswitch.MAC(st.mac)); err != nil {
					t.Fatal(err)
				}
			}
			defer pmd.cleanup()
			if err := pmd.start(); err != nil {
				t.Fatalf("testpmd: %v", err)
			}
			defer func() {
				if pmd.pmd != nil {
					pmd.pmd.Kill() // if still running
				}
			}()
		}

		trafficCtx, stopTraffic := context.WithCancel(ctx)
		peerRxStop := make(chan struct{})
		if pr != nil {
			pr.run(trafficCtx, peerRxStop, c.mac, c.mac)
		}
		kills := make([]chan struct{}, len(eps))
		var wg sync.WaitGroup
		for i, e := range eps {
			kills[i] = make(chan struct{})
			wg.Add(1)
			go func() { defer wg.Done(); e.run(trafficCtx, kills[i]) }()
		}
		for _, e := range append(dEnds, pEnds...) {
			wg.Add(1)
			go func() { defer wg.Done(); e.run(trafficCtx) }()
		}
		var scrapeWG sync.WaitGroup
		dp.scraper(trafficCtx, &scrapeWG)
		// Faults, one every 50..500 ms: a frontend kill (a or b), a backend
		// restart (c's, in-process), an uplink flap (down for 10..100 ms),
		// a restart of the hvnet process (alternately SIGTERM and SIGKILL),
		// or a kill -9 and restart of testpmd (at most one every 3 s: it
		// takes 1-3 s to start).
		deadline := time.Now().Add(dur)
		var nKills, nRestarts, nFlaps int
		var lastPmd time.Time
		for time.Now().Before(deadline) {
			time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
			switch f := rng.IntN(6); {
			case f == 4:
				if (dp.terms+dp.kills)%2 == 0 {
					if err := dp.terminate(); err != nil {
						t.Fatal(err)
					}
				} else {
					dp.kill()
				}
				if err := dp.start(); err != nil {
					t.Fatalf("daemon restart: %v", err)
				}
				if err := daemonWaitLive(int(dp.gen.Load()), dEnds...); err != nil {
					t.Fatalf("%v:\n%s", err, dp.log.String())
				}
				for _, e := range dEnds {
					e.reset()
				}
			case f == 5:
				if pmd == nil || time.Since(lastPmd) < 3*time.Second {
					continue
				}
				if err := pmd.kill(); err != nil {
					t.Fatal(err)
				}
				if err := pmd.start(); err != nil {
					t.Fatalf("testpmd restart: %v", err)
				}
				for _, e := range pEnds {
					e.reset()
				}
				lastPmd = time.Now()
			case f < 2:
				select {
				case kills[f] <- struct{}{}:
					nKills++
				case <-time.After(time.Second):
				}
			case f == 2:
				c.daemon.stop()
				if err := c.daemon.start(); err != nil {
					t.Fatalf("daemon restart: %v", err)
				}
				nRestarts++
			default:
				down := time.Duration(10+rng.IntN(90)) * time.Millisecond
				if pr == nil {
					continue
				}
				if err := pr.flap(down); err != nil {
					t.Fatalf("uplink flap: %v", err)
				}
				nFlaps++
			}
		}
		stopTraffic()
		wg.Wait()
		scrapeWG.Wait()
		// The daemon's last incarnation: final counters (traffic drained:
		// exact), its fds back near their idle count, then a clean stop.
		if err := dp.scrape(); err != nil {
			t.Errorf("daemon: final scrape: %v", err)
		}
		daemonFds1 := dp.fds()
		for i := 0; i < 200 && daemonFds1 > daemonFds0+2; i++ {
			time.Sleep(10 * time.Millisecond)
			daemonFds1 = dp.fds()
		}
		if daemonFds1 > daemonFds0+2 {
			t.Errorf("daemon incarnation %d: fds %d after traffic, %d idle at the start", dp.gen.Load(), daemonFds1, daemonFds0)
		}
		if err := dp.terminate(); err != nil {
			t.Error(err)
		}
		var pmdDrops uint64
		if pmd != nil {
			var err error
			if pmdDrops, err = pmd.stop(); err != nil {
				t.Errorf("testpmd: %v\n%s", err, pmd.log.String())
			}
		}
		// Let the uplink's last frames reach the peer, and the peer's last
		// frames leave the uplink's receive ring (a block is handed over
		// when full or at its timeout).
		if pr != nil {
			pr.settle(up, peerRxStop)
		}

		// Accounting. Through the switch: every frame in (RxPackets) is out
		// (TxPackets) or a counted drop. Then per port, from the frontend's,
		// the uplink's and the kernel's counters.
		var in, out, drops, sent, delivered, lost, linkLost, kdrops, unaccounted uint64
		rx := map[string]vswitch.PortCounters{}
		for _, pc := range sw.Counters() {
			rx[pc.Name] = pc
			in += pc.RxPackets
			out += pc.TxPackets
			for _, d := range pc.Drops {
				drops += d
			}
		}
		if in != out+drops {
			t.Errorf("switch: %d in, %d out + %d dropped", in, out, drops)
			unaccounted += uint64(max(int64(in-out-drops), -int64(in-out-drops)))
		}
		for _, e := range eps {
			pc := rx[e.name]
			s, r, gap, u := portAccount(t, e.name, pc, &e.c, uint64(e.kills+e.restarts))
			sent, delivered, lost, unaccounted = sent+s, delivered+r, lost+gap, unaccounted+u
			t.Logf("%s: sessions %d kills %d backend restarts %d sent %d received %d lost in ring %d switch rx %d tx %d drops %v",
				e.name, e.sessions, e.kills, e.restarts, e.c.sent.Load(), e.c.received.Load(), gap, pc.RxPackets, pc.TxPackets, pc.Drops)
		}
		if pr != nil {
			ua := uplinkAccount(t, pr, up, rx["up"], nFlaps)
			sent, delivered, kdrops, lost, linkLost, unaccounted = sent+ua.sent, delivered+ua.delivered, kdrops+ua.kdrops, lost+ua.linkLost, linkLost+ua.linkLost, unaccounted+ua.unaccounted
		}
		// The DPDK path: f and g, and the frames testpmd took with it.
		var pmdLost uint64
		if pmd != nil {
			for _, e := range pEnds {
				pc := rx[e.name]
				s, r, gap, u := portAccount(t, e.name, pc, &e.c, 0)
				sent, delivered, lost, unaccounted = sent+s, delivered+r, lost+gap, unaccounted+u
				t.Logf("%s: sent %d received %d window stalls %d switch rx %d tx %d drops %v", e.name, s, r, e.stalls, pc.RxPackets, pc.TxPackets, pc.Drops)
			}
			pmdLost = pmd.lost
			t.Logf("dpdk: testpmd starts %d (slowest %v) kills %d lost in dead testpmd %d (max %d per kill, bound %d) testpmd counted drops %d; switch x %+v y %+v",
				pmd.starts, pmd.startMax.Round(time.Millisecond), pmd.kills, pmd.lost, pmd.maxLost, dpdkLostBound, pmdDrops, rx["x"], rx["y"])
		}
		// The real daemon, per incarnation.
		da := dp.account(int(dp.gen.Load()), dEnds...)
		for _, err := range da.errs {
			t.Error(err)
		}
		sent, delivered, unaccounted = sent+da.sent, delivered+da.delivered, unaccounted+da.unaccounted
		t.Logf("daemon: incarnations %d (SIGTERM %d, slowest exit %v; SIGKILL %d) scrapes %d; d sessions %d hang-ups %d stalls %d, e sessions %d hang-ups %d stalls %d; frames taken %d delivered %d counted drops %d lost in dead daemon %d (max %d per incarnation, bound %d); fds idle %d after traffic %d",
			dp.gen.Load(), dp.terms, dp.termMax.Round(time.Millisecond), dp.kills, dp.nScrape, len(dEnds[0].gens), dEnds[0].hangups, dEnds[0].stalls, len(dEnds[1].gens), dEnds[1].hangups, dEnds[1].stalls,
			da.sent, da.delivered, da.drops, da.lost, da.maxLost, 2*qSize, daemonFds0, daemonFds1)

		nProc := dp.terms + dp.kills - 1 // the last SIGTERM ends the run
		var nPmd int
		if pmd != nil {
			nPmd = pmd.kills
		}
		allDrops := drops + kdrops + da.drops + pmdDrops
		allLost := lost + da.lost + pmdLost
		t.Logf("SOAK RESULT: duration %v seed %d faults %d (frontend kills %d, in-process daemon restarts %d, uplink flaps %d, hvnet process restarts %d, testpmd kills %d) frames sent %d delivered %d counted drops %d (switch %d, kernel %d, hvnet process %d, testpmd %d) lost in dead rings %d lost in link-down uncounted (bounded) %d lost in dead daemon %d lost in dead DPDK peer %d frames lost unaccounted %d (%.0f frames/s)",
			dur, seed, nKills+nRestarts+nFlaps+nProc+nPmd, nKills, nRestarts, nFlaps, nProc, nPmd, sent, delivered, allDrops, drops, kdrops, da.drops, pmdDrops,
			lost-linkLost, linkLost, da.lost, pmdLost, unaccounted, float64(sent)/dur.Seconds())
		if sent != delivered+allLost+allDrops && unaccounted == 0 {
			t.Errorf("totals: sent %d != delivered %d + lost %d + drops %d", sent, delivered, allLost, allDrops)
		}
		if unaccounted != 0 {
			t.Errorf("frames lost unaccounted: %d", unaccounted)
		}
		if n := usedFaults.Load(); n != 0 {
			usedFaultLog.Lock()
			t.Errorf("a backend moved a used index backwards or past the available ones %d times: %s", n, strings.Join(usedFaultLog.lines, "; "))
			usedFaultLog.Unlock()
		}
		cancel()
		portsWG.Wait()
		c.daemon.stop()
		for _, e := range eps[:2] {
			e.port.Remove()
		}
		sw.RemovePort("c")
		if up != nil {
			up.Close()
			sw.RemovePort("up")
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

// portAccount checks one frontend-driven port of the switch: into the
// switch, its RxPackets is what left the frontend (the frontend saw every
// chain used except those the backend took from a dead session's ring
// after its last look: at most what was queued when the session ended);
// out of it, what the switch gave the device either was read by the
// frontend or died in its ring when a session ended (at most one ring,
// qSize frames, per end). It returns frames sent, delivered, lost in dead
// rings and unaccounted.
func portAccount(t *testing.T, name string, pc vswitch.PortCounters, c *counts, ends uint64) (sent, delivered, lost, unaccounted uint64) {
	t.Helper()
	s, r, l, inflight := c.sent.Load(), c.received.Load(), c.lostInRing.Load(), c.txInFlight.Load()
	sent = s
	if pc.RxPackets < s || pc.RxPackets > s+inflight {
		t.Errorf("%s: frontend saw %d sent (+%d queued at session ends), switch received %d", name, s, inflight, pc.RxPackets)
		unaccounted += max(s, pc.RxPackets) - min(s, pc.RxPackets)
	} else {
		sent += pc.RxPackets - s // taken from a dead ring: sent all the same
	}
	delivered = r
	gap := int64(pc.TxPackets) - int64(r)
	if gap < 0 || uint64(gap) > (ends+1)*qSize {
		t.Errorf("%s: switch sent %d, frontend received %d (lost in rings %d, %d session ends)", name, pc.TxPackets, r, l, ends)
		unaccounted += uint64(max(gap, -gap))
	} else {
		lost = uint64(gap)
	}
	return sent, delivered, lost, unaccounted
}
