package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/netnstest"
	"github.com/hvnet/hvnet/lab"
	"github.com/hvnet/hvnet/nested"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
	"github.com/hvnet/hvnet/vhost"
	"github.com/hvnet/hvnet/vmtest"
)

// TestSoakGuests is the soak with lab guests: two Linux guests booted by
// hvnet's VMM (lab.Run, inside the nested test host where this host's KVM
// cannot boot Linux) and a vhost-user port driven by the in-process
// frontend, on one switch, carrying traffic for HVNET_SOAK_DURATION (in
// segments of a minute, each in a fresh test host, where it runs nested:
// gsNested) while faults hit at seeded random times (HVNET_SOAK_SEED
// repeats them):
//
//   - inside the guests, the virtio-pci driver of the NIC is unbound and
//     bound again under traffic (a device reset with rings in flight; the
//     new eth0 is configured again and traffic resumes);
//   - a guest's switch port is blocked (UpdatePort: ingress policer and
//     egress shaper at one packet a second) for 0.2..1.5 s, then restored;
//   - the vhost-user frontend is killed (rings as they are) and restarted;
//   - the uplink's link (an AF_PACKET port on a veth pair whose far end, a
//     raw socket, sits in a namespace of its own) goes down for 10..100 ms.
//
// Traffic: g2 -> g1 iperf3 TCP (paced at 50 Mbit/s: at full speed the
// nested test host's kernel crashed within seconds, three times running)
// and UDP (1 Mbit/s), g1 -> g2 pings every
// 20 ms, g1 pings the frontend (it answers), g2 the uplink's peer (it
// counts the requests, answers none), the frontend streams frames to g2
// and the peer to g1 (8 every 10 ms each). Two guests, not three: the nested test
// host (emulated SVM) loses guests (triple faults) and its own kernel
// (panics in KVM_RUN) under load, more often with more guests.
//
// Accounting: the switch's books balance exactly (every guest sends only
// unicast to static FDB entries); each guest's VMM counters equal its
// switch port's; the guest kernel's own counters (summed over its driver's
// lives) are below the VMM's by at most a queue per reset and direction
// ("lost in reset rings", reported apart); the frontend's counts are
// checked as in TestSoak, and so are the uplink's (its kernel's
// counters, a burst per flap lost uncounted at most). At the end every
// guest pings every other, the
// VMMs exit with status 0, and the test process's fds and goroutines are
// back where they were.
func TestSoakGuests(t *testing.T) {
	if os.Getenv("HVNET_SOAK_DURATION") == "" && !vmtest.InL1() {
		// Minutes of nested emulation: not part of a plain "go test ./...".
		t.Skip("set HVNET_SOAK_DURATION: ./run.sh soak runs it (and ./run.sh test, for 1m)")
	}
	dur, seed := gsParams(t)
	if !vmtest.InL1() && gsNested(t, dur, seed) {
		return
	}
	t.Logf("soak guests: duration %v seed %d (HVNET_SOAK_SEED=%d repeats the fault schedule)", dur, seed, seed)
	set := vmtest.Images(t)
	rng := rand.New(rand.NewPCG(seed, 2))

	runtime.GC()
	fd0, g0 := fdCount(), runtime.NumGoroutine()

	gsRun(t, set.Kernel, set.Initrd, dur, seed, rng)

	var fd1, g1 int
	for range 50 {
		runtime.GC()
		fd1, g1 = fdCount(), runtime.NumGoroutine()
		if fd1 <= fd0+2 && g1 <= g0+2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("SOAK GUESTS RESOURCES: fds %d -> %d, goroutines %d -> %d, RSS %d KiB", fd0, fd1, g0, g1, rssKiB())
	if fd1 > fd0+2 || g1 > g0+2 {
		t.Errorf("leak: fds %d -> %d, goroutines %d -> %d", fd0, fd1, g0, g1)
	}
}

// gsSegment is the longest soak one nested test host runs.
const gsSegment = time.Minute

// gsNested runs the soak inside nested test hosts where this host needs
// them, and reports whether it did. The emulated test host does not
// survive minutes of this load reliably (its kernel panics in KVM_RUN, or
// a guest triple-faults: RELIABILITY.md, the test bed), and more surely the
// longer it runs, so a long soak runs as consecutive segments of at most
// gsSegment, each in a fresh test host with its own seed (seed+i) and its
// own books; each may take five test hosts, of which only those that died
// under it (or lost a guest to a triple fault) are retried. A failure in
// any segment fails the test.
func gsNested(t *testing.T, dur time.Duration, seed uint64) bool {
	n := int((dur + gsSegment - 1) / gsSegment)
	for i := range n {
		d := min(gsSegment, dur-time.Duration(i)*gsSegment)
		d = max(d, 30*time.Second) // gsParams' minimum
		files := []nested.File{gsWriteParams(t, d, seed+uint64(i))}
		// Silence: a segment's test host talks every few seconds (guest
		// consoles, the test's log); a frozen one (RELIABILITY.md, the
		// test bed) is given up after 3 minutes, not at its time limit.
		if !vmtest.Nest(t, vmtest.NestOptions{Files: files, Timeout: d + gsLinger + 6*time.Minute, Attempts: 5, Silence: 3 * time.Minute}) {
			return false // no test host needed: the whole soak runs here
		}
		if n > 1 {
			t.Logf("SOAK GUESTS SEGMENT %d of %d (%v, seed %d) passed", i+1, n, d, seed+uint64(i))
		}
	}
	return true
}

// Where the duration and seed travel into the nested test host (its
// environment is the test's own, not the caller's).
const gsParamsPath = "/hvnet/soak-guests-params"

// gsParams is the soak's duration (HVNET_SOAK_DURATION, at least 30 s:
// there must be time for a few resets) and seed (HVNET_SOAK_SEED, else
// the clock); inside the nested test host, what the caller wrote.
func gsParams(t *testing.T) (time.Duration, uint64) {
	if vmtest.InL1() {
		if b, err := os.ReadFile(gsParamsPath); err == nil {
			f := strings.Fields(string(b))
			if len(f) == 2 {
				d, err1 := time.ParseDuration(f[0])
				s, err2 := strconv.ParseUint(f[1], 10, 64)
				if err1 == nil && err2 == nil {
					return d, s
				}
			}
			t.Fatalf("%s: bad contents %q", gsParamsPath, b)
		}
	}
	dur := max(durationFromEnv(t), 30*time.Second)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HVNET_SOAK_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HVNET_SOAK_SEED: %v", err)
		}
	}
	return dur, seed
}

func gsWriteParams(t *testing.T, dur time.Duration, seed uint64) nested.File {
	p := filepath.Join(t.TempDir(), "params")
	if err := os.WriteFile(p, fmt.Appendf(nil, "%v %d\n", dur, seed), 0o644); err != nil {
		t.Fatal(err)
	}
	return nested.File{Src: p, Dst: gsParamsPath}
}

// The stations. Every guest has a permanent neighbour entry for every
// other station.
var (
	gsGuests = []gsNode{gsStation("g1", 0x11), gsStation("g2", 0x12)}
	gsFE     = gsStation("vu", 0x10)
	gsUp     = gsStation("up", 0x20) // the uplink's peer
)

// gsIDs are the stations' numbers: station N is 10.0.0.N with MAC
// 52:54:00:50:00:N (N written in decimal for one and hex for the other,
// so that the guests' script derives both from one word).
const gsIDs = "10 11 12 20"

func gsStation(name string, id byte) gsNode {
	dec, _ := strconv.Atoi(fmt.Sprintf("%x", id))
	return gsNode{name: name, ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(dec)}), mac: [6]byte{0x52, 0x54, 0x00, 0x50, 0x00, id}}
}

// gsQueueSize is the VMM's virtio-net queue size (vmm.NetConfig default),
// the bound per reset and direction on frames lost in a reset's rings.
const gsQueueSize = 1024

// gsPlans returns each guest's plan, the driver resets drawn from rng.
func gsPlans(dur time.Duration, rng *rand.Rand) []gsPlan {
	all := append(append([]gsNode{}, gsGuests...), gsFE, gsUp)
	others := func(self gsNode, set []gsNode) []gsNode {
		var o []gsNode
		for _, n := range set {
			if n != self {
				o = append(o, n)
			}
		}
		return o
	}
	g1, g2 := gsGuests[0], gsGuests[1]
	iperf := "iperf3 -t 4 -c " + g1.ip.String()
	plans := []gsPlan{
		{self: g1,
			servers: []string{"iperf3 -s -D -p 5201", "iperf3 -s -D -p 5202"},
			traffic: []string{"ping -c 100 -i 20 -w 1000 " + g2.ip.String(), "ping -c 100 -i 50 -s 16 -w 500 " + gsFE.ip.String()}},
		{self: g2,
			traffic: []string{iperf + " -p 5201 -b 50M", iperf + " -p 5202 -u -b 1M", "ping -c 20 -i 50 -w 100 " + gsUp.ip.String()}},
	}
	for i := range plans {
		p := &plans[i]
		p.peers = others(p.self, all)
		p.pingTo = others(p.self, gsGuests)
		// Resets 6..16 s apart, none in the last 8 s; traffic runs dur
		// in all (plus the resets' own time).
		p.dur, p.seed, p.lo, p.span = dur, rng.IntN(gsLCGMod), 6000, 10000
	}
	return plans
}

// gsFault is one switch-side or frontend fault.
type gsFault struct {
	after time.Duration // since the previous fault
	kill  bool          // kill the frontend
	flap  bool          // take the uplink down for hold
	guest int           // else block guest's port for hold
	hold  time.Duration
}

func gsFaults(dur time.Duration, rng *rand.Rand) []gsFault {
	var fs []gsFault
	for total := time.Duration(0); total < 2*dur; {
		f := gsFault{after: time.Duration(1000+rng.IntN(3000)) * time.Millisecond}
		switch rng.IntN(4) {
		case 0:
			f.kill = true
		case 1:
			f.flap = true
			f.hold = time.Duration(10+rng.IntN(90)) * time.Millisecond
		default:
			f.guest = rng.IntN(len(gsGuests))
			f.hold = time.Duration(200+rng.IntN(1300)) * time.Millisecond
		}
		fs = append(fs, f)
		total += f.after + f.hold
	}
	return fs
}

// gsConsole writes guest console lines to the test log (the guests' result
// lines renamed: inside the nested test host the log is the host's console,
// whose own result line must be the only one) and signals the guests'
// progress: ready once every guest printed GS-READY, stop at the first
// GS-STOP.
type gsConsole struct {
	t           *testing.T
	n           atomic.Int32
	want        int32
	ready, stop chan struct{}
	stopOnce    sync.Once
	start       time.Time

	mu       sync.Mutex
	timeline []string // the GS- lines, with the host's time since start
}

func (c *gsConsole) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\n")
	c.t.Log(strings.ReplaceAll(s, strings.TrimSpace(agentcfg.ResultPrefix), "guest-result"))
	if i := strings.Index(s, "| GS-"); i >= 0 {
		c.mu.Lock()
		c.timeline = append(c.timeline, fmt.Sprintf("%7.1fs %s", time.Since(c.start).Seconds(), strings.TrimSpace(s)))
		c.mu.Unlock()
	}
	switch {
	case strings.Contains(s, "| GS-READY"):
		if c.n.Add(1) == c.want {
			close(c.ready)
		}
	case strings.Contains(s, "| GS-STOP"):
		c.stopOnce.Do(func() { close(c.stop) })
	}
	return len(p), nil
}

// logTimeline prints the guests' progress lines with the host's times: in
// a failed run's last lines, where the CI log's tail shows them.
func (c *gsConsole) logTimeline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Logf("guests' timeline (host time since the lab started):\n%s", strings.Join(c.timeline, "\n"))
}

// gsRun runs the lab, the frontend and the faults, and does the
// accounting.
func gsRun(t *testing.T, kernel, initrd string, dur time.Duration, seed uint64, rng *rand.Rand) {
	plans := gsPlans(dur, rng)
	faults := gsFaults(dur, rng)
	var guests []lab.GuestConfig
	nResets := 0
	for _, p := range plans {
		guests = append(guests, lab.GuestConfig{Name: p.self.name, MAC: p.self.mac,
			Addr: netip.PrefixFrom(p.self.ip, 24), PVID: 1, Cmdline: "ipv6.disable=1", Script: p.script()})
		gaps, tail := p.resets()
		nResets += len(gaps)
		t.Logf("%s: driver resets after %v, then traffic for %v more", p.self.name, gaps, tail)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fe := &gsFrontend{sock: filepath.Join(t.TempDir(), "vu.sock"), node: gsFE, dst: gsGuests[1].mac}
	var (
		sw     *vswitch.Switch
		port   *vhost.Port
		portWG sync.WaitGroup
		bgWG   sync.WaitGroup
	)
	stations := append(append([]gsNode{}, gsGuests...), gsFE, gsUp)
	floods := newGsFloods(stations)
	// Only frames to a station pass a guest's port: anything the switch
	// would flood (an ARP request a guest sent in the instant between a
	// new eth0's coming up and its neighbour entries, say) is dropped and
	// counted (acl), so the books stay exact; floods shows it.
	acl := vswitch.ACL{Default: vswitch.ACLDeny}
	for _, s := range stations {
		acl.Rules = append(acl.Rules, vswitch.ACLRule{Action: vswitch.ACLAllow, DstMAC: vswitch.MAC(s.mac)})
	}
	con := &gsConsole{t: t, want: int32(len(guests)), ready: make(chan struct{}), stop: make(chan struct{}), start: time.Now()}
	stopped := make(chan struct{}) // the frontend and the faults have ended
	var nKills, nBlocks, nFlaps atomic.Int32

	// The uplink: its peer (a raw socket in a namespace of its own) sends
	// to g1 and counts what g2 sends it (pings), from the guests' GS-READY to the
	// first GS-STOP. Only in the test's private network namespace (root).
	var (
		pr         *peer
		up         *uplink.Port
		peerRxStop = make(chan struct{})
	)
	if netnstest.Private() {
		var err error
		if pr, err = newPeer(gsUp.mac, unix.ETH_P_ALL); err != nil {
			t.Fatal(err)
		}
		defer pr.close()
		pr.burst, pr.every = 8, 10*time.Millisecond
		if up, err = uplink.Open(uplinkIf, uplink.Config{TX: uplink.TXSendmmsg, WatchInterval: 20 * time.Millisecond,
			Logger: hclog.New(&hclog.LoggerOptions{Name: gsUp.name, Level: hclog.Error})}); err != nil {
			t.Fatal(err)
		}
		defer up.Close()
	} else {
		t.Log("not in a private network namespace (not root): no uplink")
	}

	attach := func(s *vswitch.Switch) error {
		sw = s
		sw.SetMirror(floods)
		p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: gsFE.name, PVID: 1, MirrorIngress: true}, Socket: fe.sock,
			Logger: hclog.New(&hclog.LoggerOptions{Name: gsFE.name, Level: hclog.Error})})
		if err != nil {
			return err
		}
		port = p
		portWG.Add(1)
		go func() { defer portWG.Done(); p.Run(ctx) }()
		if err := sw.AddStatic(gsFE.name, 1, vswitch.MAC(gsFE.mac)); err != nil {
			return err
		}
		if up != nil {
			h, err := sw.AddPort(vswitch.PortConfig{Name: gsUp.name, PVID: 1}, up)
			if err != nil {
				return err
			}
			if err := up.Start(h); err != nil {
				return err
			}
			if err := sw.AddStatic(gsUp.name, 1, vswitch.MAC(gsUp.mac)); err != nil {
				return err
			}
		}
		// The guests' ports appear as lab.Run creates the guests, seconds
		// before their kernels send anything: give each a static FDB
		// entry then (no frame is ever flooded).
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			for _, g := range gsGuests {
				for sw.Port(g.name) == nil {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Millisecond):
					}
				}
				if err := sw.AddStatic(g.name, 1, vswitch.MAC(g.mac)); err != nil {
					t.Errorf("static FDB entry for %s: %v", g.name, err)
				}
				cfg := sw.Port(g.name).Config()
				cfg.MirrorIngress = true // to floods
				if err := sw.UpdatePort(cfg); err != nil {
					t.Errorf("mirror %s: %v", g.name, err)
				}
				if err := sw.SetACL(g.name, acl); err != nil {
					t.Errorf("ACL on %s: %v", g.name, err)
				}
			}
		}()
		// From the guests' GS-READY to the first GS-STOP: the frontend's
		// sessions and the faults.
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			defer close(stopped)
			select {
			case <-con.ready:
			case <-ctx.Done():
				return
			}
			feCtx, stopFE := context.WithCancel(ctx)
			kill := make(chan struct{})
			feDone := make(chan struct{})
			go func() { defer close(feDone); fe.run(feCtx, kill) }()
			defer func() { stopFE(); <-feDone }()
			if pr != nil {
				pr.run(feCtx, peerRxStop, gsGuests[0].mac, gsGuests[1].mac)
			}
			for _, f := range faults {
				select {
				case <-con.stop:
					return
				case <-ctx.Done():
					return
				case <-time.After(f.after):
				}
				if f.kill {
					select {
					case kill <- struct{}{}:
						nKills.Add(1)
					case <-time.After(time.Second):
					}
					continue
				}
				if f.flap {
					if pr == nil {
						continue
					}
					if err := pr.flap(f.hold); err != nil {
						t.Errorf("uplink flap: %v", err)
						continue
					}
					nFlaps.Add(1)
					continue
				}
				name := gsGuests[f.guest].name
				h := sw.Port(name)
				cfg := h.Config()
				blocked := cfg
				block := vswitch.RateLimit{Packets: vswitch.Bucket{Rate: 1, Burst: 1}}
				blocked.Ingress, blocked.Egress = block, block
				if err := sw.UpdatePort(blocked); err != nil {
					t.Errorf("block %s: %v", name, err)
					continue
				}
				time.Sleep(f.hold)
				if err := sw.UpdatePort(cfg); err != nil {
					t.Errorf("unblock %s: %v", name, err)
				}
				nBlocks.Add(1)
			}
			select { // the schedule ran out: carry on without faults
			case <-con.stop:
			case <-ctx.Done():
			}
		}()
		return nil
	}
	// A hung guest or VMM shows where it hangs, even inside the nested
	// test host: every goroutine's stack, once, if the lab runs long.
	// The guests end gsLinger after the soak, which starts once they
	// have booted and found each other (a minute or two, nested).
	dog := dur + gsLinger + 3*time.Minute
	stopDog := time.AfterFunc(dog, func() {
		buf := make([]byte, 4<<20)
		n := runtime.Stack(buf, true)
		t.Logf("WATCHDOG: the lab still runs %v after the start; goroutines:\n%s", dog, buf[:n])
	}).Stop
	defer stopDog()
	results, err := lab.Run(ctx, lab.Config{Kernel: kernel, Initrd: initrd, Guests: guests, Console: con,
		Attach: attach, Timeout: dog + time.Minute})
	if err != nil {
		cancel()
		bgWG.Wait()
		portWG.Wait()
		t.Fatal(err)
	}
	// The frontend and the faults ended at the first GS-STOP (or never
	// started if the guests never got ready).
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Error("the frontend and the fault loop did not stop")
	}
	cancel()
	bgWG.Wait()
	portWG.Wait()
	defer port.Remove()
	tot := gsTotals{dur: dur, seed: seed, resets: nResets, kills: int(nKills.Load()), blocks: int(nBlocks.Load()), flaps: int(nFlaps.Load())}
	if pr != nil {
		// The peer stopped sending at GS-STOP (or never started): let
		// its last frames through, then the books.
		pr.settle(up, peerRxStop)
		var pc vswitch.PortCounters
		for _, c := range sw.Counters() {
			if c.Name == gsUp.name {
				pc = c
			}
		}
		ub := uplinkAccount(t, pr, up, pc, tot.flaps)
		tot.uplink = &ub
	}
	gsAccount(t, sw, results, fe, floods, tot)
	if t.Failed() {
		con.logTimeline()
	}
}
