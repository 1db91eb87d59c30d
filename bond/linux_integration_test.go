package bond

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
	"github.com/hvnet/hvnet/internal/nlns"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
	"github.com/hvnet/hvnet/vmtest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// kernelBonding reports whether this kernel has Linux bonding (the
// 802.3ad peer); the build machines' kernel does not, the nested test
// host's does.
func kernelBonding() error {
	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: "hvprobebond"})
	if err := netlink.LinkAdd(b); err != nil {
		return fmt.Errorf("bond link: %w", err)
	}
	netlink.LinkDel(b)
	return nil
}

// needBonding starts a test that needs a Linux bond: true when the test
// ran inside the nested test host instead (the caller returns).
func needBonding(t *testing.T) bool {
	t.Helper()
	netnstest.Need(t)
	err := kernelBonding()
	if err != nil {
		t.Logf("this kernel: %v", err)
	}
	if vmtest.NestUnless(t, err == nil, vmtest.NestOptions{Timeout: 6 * time.Minute}) {
		return true
	}
	if err != nil {
		t.Fatalf("this kernel has no bonding (%v); nesting is off (HVNET_NESTED=never)", err)
	}
	return false
}

// tor is a Linux box playing the top-of-rack switch: the far ends of the
// bond's two members (sw0a, sw0b) in an 802.3ad bond or straight in a
// bridge br0, and a host (10.9.0.2) behind the bridge. On hvnet's side,
// in the test's namespace: a switch with the bond port (members hv0a,
// hv0b) and an uplink to an endpoint namespace (10.9.0.1).
type tor struct {
	t         *testing.T
	tor, host *nlns.NS
	ep        *nlns.NS
	sw        *vswitch.Switch
	bond      *Port
	epMAC     string
	bondMAC   string
}

// newTor builds it; kind is "lacp" (bond0: 802.3ad, lacp_rate fast,
// layer3+4, in br0), "bridge" (sw0a and sw0b in br0) or "one" (only sw0a
// in br0).
func newTor(t *testing.T, kind string, cfg Config) *tor {
	r := &tor{t: t, tor: nlns.New(t, "tor"), host: nlns.New(t, "host"), ep: nlns.New(t, "ep")}
	r.tor.Add(t, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}})
	if kind == "lacp" {
		b := netlink.NewLinkBond(netlink.LinkAttrs{Name: "bond0"})
		b.Mode = netlink.BOND_MODE_802_3AD
		b.LacpRate = netlink.BOND_LACP_RATE_FAST
		b.XmitHashPolicy = netlink.BOND_XMIT_HASH_POLICY_LAYER3_4
		b.Miimon = 50
		r.tor.Add(t, b)
	}
	for _, x := range []string{"a", "b"} {
		nlns.Veth(t, "hv0"+x, r.tor, "sw0"+x)
		switch {
		case kind == "lacp":
			r.tor.Down(t, "sw0"+x) // a bond takes only members that are down
			r.tor.Master(t, "sw0"+x, "bond0")
			r.tor.Up(t, "sw0"+x)
		case kind == "bridge" || x == "a":
			r.tor.Master(t, "sw0"+x, "br0")
		}
	}
	if kind == "lacp" {
		r.tor.Master(t, "bond0", "br0")
		r.tor.Up(t, "bond0")
	}
	r.tor.Up(t, "br0")
	nlns.VethBetween(t, r.tor, "hp", r.host, "hh")
	r.tor.Master(t, "hp", "br0")
	r.host.Addr(t, "hh", "10.9.0.2/24")
	nlns.Veth(t, "epv", r.ep, "e0")
	r.ep.Addr(t, "e0", "10.9.0.1/24")
	r.epMAC = r.ep.Link(t, "e0").Attrs().HardwareAddr.String()

	r.sw = vswitch.New(vswitch.Config{})
	cfg.Members = []string{"hv0a", "hv0b"}
	cfg.LocalMACs = func() []LocalMAC {
		var out []LocalMAC
		for _, e := range r.sw.FDB() {
			if e.Port != "bond" {
				out = append(out, LocalMAC{MAC: e.MAC, VLAN: e.VLAN})
			}
		}
		return out
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.sw.AddPort(vswitch.PortConfig{Name: "bond", Mode: vswitch.ModeAccess, PVID: 1}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	r.bond = b
	r.bondMAC = net.HardwareAddr(b.mems()[0].mac[:]).String()
	up, err := uplink.Open("epv", uplink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	uh, err := r.sw.AddPort(vswitch.PortConfig{Name: "ep", Mode: vswitch.ModeAccess, PVID: 1}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Start(uh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	return r
}

// wait polls cond for up to d. The tests give it 30 s: it returns as
// soon as cond holds, and a loaded machine under -race can take seconds
// over what takes milliseconds (netlink events, LACP exchanges); what
// must be fast is measured by the pings around the waits, and by
// ./run.sh bench bond.
func (r *tor) wait(what string, d time.Duration, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			r.t.Fatalf("%s: not within %v\nbond: %+v\n%s", what, d, r.bond.Stats(), r.procBond())
		}
	}
}

func (r *tor) procBond() string {
	s, _ := r.tor.ReadFile("/proc/thread-self/net/bonding/bond0")
	return s
}

// rxPackets is what the top-of-rack switch received on one of its ports.
func (r *tor) rxPackets(dev string) uint64 {
	return r.tor.Link(r.t, dev).Attrs().Statistics.RxPackets
}

// flows sends a UDP datagram from each of n source ports of the endpoint
// to the host.
func (r *tor) flows(n int) {
	err := r.ep.Do(func() error {
		for p := range n {
			c, err := net.DialUDP("udp4", &net.UDPAddr{Port: 40000 + p}, &net.UDPAddr{IP: net.IPv4(10, 9, 0, 2), Port: 5000})
			if err != nil {
				return err
			}
			for range 4 {
				c.Write([]byte("hvnet bond flow"))
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// bridgeFDB returns the bridge's FDB entries: MAC -> port name.
func (r *tor) bridgeFDB() map[string]string {
	ns, err := r.tor.H.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range ns {
		if l, err := r.tor.H.LinkByIndex(n.LinkIndex); err == nil {
			out[n.HardwareAddr.String()] = l.Attrs().Name
		}
	}
	return out
}

// LACP with a Linux 802.3ad bond: both sides aggregate both members and
// name each other as partner; flows spread over both; a member whose
// link is cut under traffic leaves the aggregation and traffic goes on
// (the loss is logged); it is aggregated again when the link returns;
// nothing arrives twice.
func TestLACPWithLinuxBond(t *testing.T) {
	if needBonding(t) {
		return
	}
	r := newTor(t, "lacp", Config{Mode: ModeLACP, LACPRate: RateFast, LACPFallback: true, Hash: HashL34})
	both := func() bool {
		s := r.bond.Stats()
		return len(s.Members) == 2 && s.Members[0].Carrying && s.Members[1].Carrying && s.LACPAggregate
	}
	r.wait("both members aggregated", 30*time.Second, both)
	linuxMAC := r.tor.Link(t, "bond0").Attrs().HardwareAddr.String()
	for _, m := range r.bond.Stats().Members {
		if got := net.HardwareAddr(m.LACP.Partner.System[:]).String(); got != linuxMAC || m.LACP.RxState != "current" {
			t.Errorf("member %s: partner %s (%s), want Linux's bond0 %s", m.Name, got, m.LACP.RxState, linuxMAC)
		}
	}
	r.wait("Linux aggregates both with us", 30*time.Second, func() bool {
		p := r.procBond()
		agg := regexp.MustCompile(`Active Aggregator Info:\s+Aggregator ID: \d+\s+Number of ports: (\d+)`).FindStringSubmatch(p)
		return agg != nil && agg[1] == "2" && strings.Contains(p, "Partner Mac Address: "+r.bondMAC)
	})
	t.Logf("Linux: /proc/net/bonding/bond0:\n%s", r.procBond())

	pg := r.ep.Pinger(t)
	if !pg.Echo("10.9.0.2", 5, time.Second) {
		t.Fatal("no ping across the aggregation")
	}
	a0, b0 := r.rxPackets("sw0a"), r.rxPackets("sw0b")
	r.flows(64)
	// Until Linux has them (a poll: hvnet forwards them in goroutines
	// of its own, seconds late on a loaded machine): both members have
	// their share, or all 256 arrived (the spread is checked below).
	var a1, b1 uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if a1, b1 = r.rxPackets("sw0a")-a0, r.rxPackets("sw0b")-b0; a1 >= 32 && b1 >= 32 || a1+b1 >= 64*4 {
			break
		}
	}
	a1, b1 = r.rxPackets("sw0a")-a0, r.rxPackets("sw0b")-b0
	s := r.bond.Stats()
	t.Logf("64 flows x 4: Linux received %d on sw0a, %d on sw0b; hvnet sent %d / %d in all", a1, b1, s.Members[0].TxFrames, s.Members[1].TxFrames)
	if a1 < 32 || b1 < 32 {
		t.Errorf("64 flows did not spread over both members: %d on sw0a, %d on sw0b", a1, b1)
	}

	// A member's link cut under traffic (100 pings a second): the other
	// carries on.
	type res struct{ got, dups int }
	done := make(chan res)
	go func() {
		got, dups := pg.Flood("10.9.0.2", 300, 10*time.Millisecond, time.Second)
		done <- res{got, dups}
	}()
	time.Sleep(time.Second)
	if err := netlink.LinkSetDown(r.linkHere("hv0a")); err != nil {
		t.Fatal(err)
	}
	out := <-done
	t.Logf("member hv0a cut under 100 pings/s: %d of 300 answered (%d lost), %d duplicates", out.got, 300-out.got, out.dups)
	if out.got < 200 || out.dups != 0 {
		t.Errorf("link cut: %d of 300 answered, %d duplicates", out.got, out.dups)
	}
	r.wait("hv0a out of the aggregation", 30*time.Second, func() bool {
		s := r.bond.Stats()
		return !s.Members[0].Carrying && s.Members[1].Carrying
	})
	if err := netlink.LinkSetUp(r.linkHere("hv0a")); err != nil {
		t.Fatal(err)
	}
	r.wait("hv0a aggregated again", 30*time.Second, both)
	if got, dups := pg.Flood("10.9.0.2", 20, 50*time.Millisecond, time.Second); got != 20 || dups != 0 {
		t.Errorf("after the member came back: %d of 20, %d duplicates", got, dups)
	}

	// Hostile LACPDUs on sw0a's wire: every malformed shape is counted
	// and changes nothing; a spoofed partner that flaps its system ID
	// takes only that member out of the aggregation, never the other,
	// and traffic goes on.
	bad0 := r.bond.Stats().LACPBad
	good := (&LACPDU{Actor: PortInfo{SystemPriority: 1, System: [6]byte{2, 0xee, 0, 0, 0, 1}, Key: 9, Port: 1,
		State: StateActivity | StateAggregation | StateSync | StateCollecting | StateDistributing}}).AppendFrame(nil, [6]byte{2, 0xee, 0, 0, 0, 1})
	var frames [][]byte
	for _, cut := range []func(b []byte) []byte{
		func(b []byte) []byte { return b[:20] },             // short
		func(b []byte) []byte { b[14] = 9; return b },       // not LACP
		func(b []byte) []byte { b[15] = 0; return b },       // version 0
		func(b []byte) []byte { b[17] = 200; return b },     // actor TLV length
		func(b []byte) []byte { b[56] = 7; return b },       // collector TLV type
		func(b []byte) []byte { clear(b[20:26]); return b }, // zero actor system
		func(b []byte) []byte { b[72] = 3; return b },       // no terminator
		func(b []byte) []byte { b[20] |= 1; return b },      // group actor system
	} {
		frames = append(frames, cut(append([]byte(nil), good...)))
	}
	r.sendRaw("sw0a", frames, 50)
	r.wait("malformed LACPDUs counted", 30*time.Second, func() bool { return r.bond.Stats().LACPBad-bad0 >= 8*50 })
	if !both() {
		t.Errorf("malformed LACPDUs disturbed the aggregation: %+v", r.bond.Stats())
	}
	stop := make(chan struct{})
	flapped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				flapped <- n
				return
			default:
			}
			f := append([]byte(nil), good...)
			f[25] = byte(n) // another system ID each time
			r.sendRaw("sw0a", [][]byte{f}, 1)
			n++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// hv0a is held out within the spoofer's first few LACPDUs, and Linux,
	// told so by hv0a's LACPDUs, takes sw0a out of its aggregator. How
	// many frames Linux sends on sw0a before it has processed that (its
	// state machines run every 100 ms) is Linux's; what the damping
	// promises is that from then on the attack moves nothing, for as
	// long as it lasts.
	r.wait("hv0a held out for its flapping partner", 30*time.Second, func() bool {
		s := r.bond.Stats()
		return s.Members[0].LACP.Held && !s.Members[0].Carrying && s.Members[1].Carrying
	})
	sw0aActor := regexp.MustCompile(`Slave Interface: sw0a\n[\s\S]*?details actor lacp pdu:[\s\S]*?port state: (\d+)`)
	r.wait("Linux no longer distributing on sw0a", 30*time.Second, func() bool {
		st := sw0aActor.FindStringSubmatch(r.procBond())
		if st == nil {
			return false
		}
		n, err := strconv.Atoi(st[1])
		return err == nil && n&int(StateDistributing) == 0
	})
	inactive0 := r.bond.Stats().RxInactive
	got, dups := pg.Flood("10.9.0.2", 200, 10*time.Millisecond, time.Second)
	s = r.bond.Stats()
	close(stop)
	t.Logf("a spoofed partner flapping its system on sw0a (%d LACPDUs): %d of 200 pings answered while it went on; members carrying %v / %v; %d frames dropped on hv0a meanwhile",
		<-flapped, got, s.Members[0].Carrying, s.Members[1].Carrying, s.RxInactive-inactive0)
	if !s.Members[1].Carrying || got < 198 || dups != 0 {
		t.Errorf("a flapping spoofed partner on sw0a disturbed hv0b or the traffic: %d of 200, %d dups, %+v", got, dups, s)
	}
	if l := s.Members[0].LACP; l == nil || !l.Held || l.FlapHolds != 1 || s.Members[0].Carrying {
		t.Errorf("hv0a is not held out, once, while its partner flaps: %+v", s.Members[0].LACP)
	}
	r.wait("hv0a aggregated again after the spoofing", 30*time.Second, both)
}

// sendRaw sends each frame count times on dev of the top-of-rack box.
func (r *tor) sendRaw(dev string, frames [][]byte, count int) {
	idx := r.tor.Link(r.t, dev).Attrs().Index
	err := r.tor.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}
		for range count {
			for _, f := range frames {
				if err := unix.Sendto(fd, f, 0, sa); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("raw frames on %s: %v", dev, err)
	}
}

func (r *tor) linkHere(name string) netlink.Link {
	l, err := netlink.LinkByName(name)
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

// An LACP bond whose partner never answers (a plain bridge): with the
// fallback, one member carries traffic, as in active-backup; without
// it, none (counted).
func TestLACPFallback(t *testing.T) {
	netnstest.Need(t)
	for _, fallback := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			r := newTor(t, "one", Config{Mode: ModeLACP, LACPRate: RateFast, LACPFallback: fallback})
			got, _ := r.ep.Pinger(t).Flood("10.9.0.2", 10, 100*time.Millisecond, time.Second)
			s := r.bond.Stats()
			t.Logf("mode %q, %d of 10 answered, %d frames with no member", s.Mode, got, s.TxNoMember)
			if fallback {
				if got < 8 || s.Mode != "lacp (no partner: active-backup)" || !s.Members[0].Carrying || s.Members[1].Carrying {
					t.Errorf("fallback: %d of 10 answered, %+v", got, s)
				}
				return
			}
			if got != 0 || s.TxNoMember == 0 || s.Mode != "lacp (no partner)" {
				t.Errorf("no fallback: %d of 10 answered, %+v", got, s)
			}
		})
	}
}

// Active-backup behind a plain bridge: the primary carries traffic, the
// other member's copies of floods are dropped (no duplicates); when the
// primary's link goes, the other member takes over and announces the
// endpoint's MAC, which the bridge learns there before the endpoint sends
// anything; when it returns, it takes over again.
func TestActiveBackupFailover(t *testing.T) {
	netnstest.Need(t)
	r := newTor(t, "bridge", Config{Mode: ModeActiveBackup, Primary: "hv0a"})
	pg := r.ep.Pinger(t)
	if got, dups := pg.Flood("10.9.0.2", 10, 100*time.Millisecond, time.Second); got != 10 || dups != 0 {
		t.Fatalf("ping over the active member: %d of 10, %d duplicates", got, dups)
	}
	s := r.bond.Stats()
	if !s.Members[0].Carrying || s.Members[1].Carrying || s.RxInactive == 0 {
		t.Errorf("the primary hv0a should carry and hv0b's copies of floods be dropped: %+v", s)
	}
	if got := r.bridgeFDB()[r.epMAC]; got != "sw0a" {
		t.Fatalf("the bridge has the endpoint %s on %q, want sw0a", r.epMAC, got)
	}
	if err := netlink.LinkSetDown(r.linkHere("hv0a")); err != nil {
		t.Fatal(err)
	}
	r.wait("the endpoint's MAC announced on sw0b", 30*time.Second, func() bool { return r.bridgeFDB()[r.epMAC] == "sw0b" })
	if s := r.bond.Stats(); s.Failovers != 1 || s.Announced == 0 || !s.Members[1].Carrying {
		t.Errorf("after the failover: %+v", s)
	}
	got, dups := pg.Flood("10.9.0.2", 10, 100*time.Millisecond, time.Second)
	if got == 0 {
		// Seen twice in CI runs under load (2026-12-04), not reproduced
		// in runs since: not one of ten answered within the round
		// although the bond had failed over and the bridge had learned
		// the endpoint on sw0b; the replies came later (the next round
		// counted them as duplicates, before the Pinger numbered each
		// request of its life apart). One suspect is fixed: a ring send
		// that left frames to the next send (uplink tx.go). The
		// failover's outage is measured by ./run.sh bench bond (7 ms at
		// most in 20 cuts); here the state is logged and the pings tried
		// once more, which must all answer.
		t.Logf("no answer right after the failover; bond %+v; trying once more", r.bond.Stats())
		got, dups = pg.Flood("10.9.0.2", 10, 100*time.Millisecond, time.Second)
	}
	if got != 10 || dups != 0 {
		t.Errorf("ping after the failover: %d of 10, %d duplicates; bond %+v", got, dups, r.bond.Stats())
	}
	if err := netlink.LinkSetUp(r.linkHere("hv0a")); err != nil {
		t.Fatal(err)
	}
	r.wait("the primary back, the endpoint's MAC announced on sw0a", 30*time.Second, func() bool {
		return r.bond.Stats().Members[0].Carrying && r.bridgeFDB()[r.epMAC] == "sw0a"
	})
}

// balance-slb behind a plain bridge: four endpoints (four source MACs)
// are spread over both members, the host sees no duplicates, and the
// bond's own broadcasts that the bridge floods back on the other member
// are dropped; when a member's link goes, its MACs move to the other
// and are announced there.
func TestBalanceSLB(t *testing.T) {
	netnstest.Need(t)
	r := newTor(t, "bridge", Config{Mode: ModeBalanceSLB})
	eps := r.endpoints(t, "slb", 4, 11)
	// Their buckets two on each member (the hash of four random MACs
	// lands them all on one member one time in eight).
	for i, n := range eps {
		r.bond.slb[slbBucket([6]byte(n.Link(t, "e0").Attrs().HardwareAddr), 0)].Store(int32(i % 2))
	}
	for i, n := range eps {
		if got, dups := n.Pinger(t).Flood("10.9.0.2", 10, 20*time.Millisecond, time.Second); got != 10 || dups != 0 {
			t.Errorf("endpoint %d: %d of 10 answered, %d duplicates", i, got, dups)
		}
	}
	s := r.bond.Stats()
	t.Logf("balance-slb: member tx %d / %d, reflected broadcasts dropped %d, inactive %d", s.Members[0].TxFrames, s.Members[1].TxFrames, s.RxReflected, s.RxInactive)
	if s.Members[0].TxFrames == 0 || s.Members[1].TxFrames == 0 {
		t.Errorf("four source MACs all on one member: %+v", s.Members)
	}
	if s.RxReflected == 0 {
		t.Errorf("no reflected broadcast dropped: the bridge floods each ARP request of ours back on the other member")
	}
	// Which member carries endpoint 0's MAC, as the bridge sees it.
	mac0 := eps[0].Link(t, "e0").Attrs().HardwareAddr.String()
	port0 := r.bridgeFDB()[mac0]
	cut := map[string]string{"sw0a": "hv0a", "sw0b": "hv0b"}[port0]
	other := map[string]string{"sw0a": "sw0b", "sw0b": "sw0a"}[port0]
	if cut == "" {
		t.Fatalf("the bridge has endpoint 0 (%s) on %q", mac0, port0)
	}
	if err := netlink.LinkSetDown(r.linkHere(cut)); err != nil {
		t.Fatal(err)
	}
	r.wait("endpoint 0's MAC announced on the other member", 30*time.Second, func() bool { return r.bridgeFDB()[mac0] == other })
	for i, n := range eps {
		if got, dups := n.Pinger(t).Flood("10.9.0.2", 5, 20*time.Millisecond, time.Second); got != 5 || dups != 0 {
			t.Errorf("after the cut, endpoint %d: %d of 5 answered, %d duplicates", i, got, dups)
		}
	}
	// A member's interface disappears altogether: the bond goes on with
	// the other (the deleted one shows no carrier).
	if err := netlink.LinkSetUp(r.linkHere(cut)); err != nil {
		t.Fatal(err)
	}
	r.wait("both members back", 30*time.Second, func() bool {
		s := r.bond.Stats()
		return s.Members[0].Carrying && s.Members[1].Carrying
	})
	gone := map[string]string{"sw0a": "hv0b", "sw0b": "hv0a"}[port0]
	if err := netlink.LinkDel(r.linkHere(gone)); err != nil {
		t.Fatal(err)
	}
	r.wait("the deleted member out", 30*time.Second, func() bool {
		for _, m := range r.bond.Stats().Members {
			if m.Name == gone && (m.Carrying || m.Carrier) {
				return false
			}
		}
		return true
	})
	for i, n := range eps {
		if got, dups := n.Pinger(t).Flood("10.9.0.2", 5, 20*time.Millisecond, time.Second); got != 5 || dups != 0 {
			t.Errorf("after %s was deleted, endpoint %d: %d of 5 answered, %d duplicates", gone, i, got, dups)
		}
	}
}

// Live changes under traffic (100 pings a second through the bond,
// behind a plain bridge): the mode changes, a member is removed, added
// back, a third added; traffic never stops, nothing arrives twice, and
// the members that stay keep their counters (they were not restarted).
func TestLiveChanges(t *testing.T) {
	netnstest.Need(t)
	r := newTor(t, "bridge", Config{Mode: ModeActiveBackup, Primary: "hv0a"})
	nlns.Veth(t, "hv0c", r.tor, "sw0c")
	r.tor.Master(t, "sw0c", "br0")
	pg := r.ep.Pinger(t)
	if !pg.Echo("10.9.0.2", 5, time.Second) {
		t.Fatal("no ping through the bond")
	}
	cfg := Config{Mode: ModeActiveBackup, Primary: "hv0a"}
	for _, step := range []struct {
		what     string
		change   func(c *Config)
		carrying []string
	}{
		{"balance-slb", func(c *Config) { c.Mode, c.Primary = ModeBalanceSLB, "" }, []string{"hv0a", "hv0b"}},
		{"hv0b removed", func(c *Config) { c.Members = []string{"hv0a"} }, []string{"hv0a"}},
		{"hv0b back", func(c *Config) { c.Members = []string{"hv0a", "hv0b"} }, []string{"hv0a", "hv0b"}},
		{"hv0c added", func(c *Config) { c.Members = []string{"hv0a", "hv0b", "hv0c"} }, []string{"hv0a", "hv0b", "hv0c"}},
		{"active-backup, hv0c primary", func(c *Config) { c.Mode, c.Primary = ModeActiveBackup, "hv0c" }, []string{"hv0c"}},
		{"lacp, no partner: fallback", func(c *Config) { c.Mode, c.Primary, c.LACPFallback, c.LACPRate = ModeLACP, "", true, RateFast }, []string{"hv0c"}},
	} {
		before := map[string]uint64{}
		for _, m := range r.bond.Stats().Members {
			before[m.Name] = m.TxFrames + m.RxFrames
		}
		if cfg.Members == nil {
			cfg.Members = []string{"hv0a", "hv0b"}
		}
		step.change(&cfg)
		type res struct{ got, dups int }
		done := make(chan res)
		fresh := r.ep.Pinger(t) // its own identifier: late replies to an earlier step do not count
		go func() {
			got, dups := fresh.Flood("10.9.0.2", 150, 10*time.Millisecond, time.Second)
			done <- res{got, dups}
		}()
		time.Sleep(500 * time.Millisecond)
		if err := r.bond.Reconfigure(cfg); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		out := <-done
		s := r.bond.Stats()
		var carrying []string
		for _, m := range s.Members {
			if m.Carrying {
				carrying = append(carrying, m.Name)
			}
			if m.TxFrames+m.RxFrames < before[m.Name] {
				t.Errorf("%s: member %s's counters went back (%d < %d): restarted", step.what, m.Name, m.TxFrames+m.RxFrames, before[m.Name])
			}
		}
		t.Logf("%s: %d of 150 pings answered, %d duplicates; mode %s, carrying %v", step.what, out.got, out.dups, s.Mode, carrying)
		for _, m := range s.Members {
			t.Logf("  %s: rx %d tx %d rxdrop %d usable %v", m.Name, m.RxFrames, m.TxFrames, m.RxDrops, m.Usable)
		}
		t.Logf("  bridge fdb: %v", r.bridgeFDB())
		if out.got < 145 || out.dups != 0 {
			t.Errorf("%s: %d of 150 answered, %d duplicates", step.what, out.got, out.dups)
		}
		if !slices.Equal(carrying, step.carrying) {
			t.Errorf("%s: carrying %v, want %v", step.what, carrying, step.carrying)
		}
		if step.what == "hv0c added" {
			// The endpoint's source-MAC bucket on each member in turn:
			// every member's way out and back works.
			mac, _ := net.ParseMAC(r.epMAC)
			b := slbBucket([6]byte(mac), 0)
			for i := range 3 {
				r.bond.slb[b].Store(int32(i))
				if got, dups := r.ep.Pinger(t).Flood("10.9.0.2", 50, 10*time.Millisecond, time.Second); got < 48 || dups != 0 {
					t.Errorf("the endpoint's bucket on member %d: %d of 50 answered, %d duplicates; %+v", i, got, dups, r.bond.Stats().Members)
				}
			}
		}
	}
	// What cannot change live is refused, and changes nothing.
	bad := cfg
	bad.Uplink.TX = uplink.TXSendmmsg
	if err := r.bond.Reconfigure(bad); err == nil {
		t.Error("a new uplink TX mode was taken live")
	}
	bad = cfg
	bad.Primary = "hv0z"
	if err := r.bond.Reconfigure(bad); err == nil {
		t.Error("a primary that is not a member was taken")
	}
}

// updelay holds a returning member back: the primary's carrier is up
// again, but the bond keeps the backup until the delay has run.
func TestUpDelay(t *testing.T) {
	netnstest.Need(t)
	r := newTor(t, "bridge", Config{Mode: ModeActiveBackup, Primary: "hv0a", UpDelay: time.Second})
	r.wait("the primary carries", 30*time.Second, func() bool { return r.bond.Stats().Members[0].Carrying })
	if err := netlink.LinkSetDown(r.linkHere("hv0a")); err != nil {
		t.Fatal(err)
	}
	r.wait("the backup carries", 30*time.Second, func() bool { return r.bond.Stats().Members[1].Carrying })
	if err := netlink.LinkSetUp(r.linkHere("hv0a")); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	r.wait("the primary's carrier seen", 30*time.Second, func() bool { return r.bond.Stats().Members[0].Carrier })
	if s := r.bond.Stats(); time.Since(up) < 500*time.Millisecond && (s.Members[0].Usable || !s.Members[1].Carrying) {
		t.Errorf("within the up delay: %+v", s.Members)
	}
	r.wait("the primary back after the delay", 30*time.Second, func() bool { return r.bond.Stats().Members[0].Carrying })
	if d := time.Since(up); d < time.Second {
		t.Errorf("the primary carried again %v after its carrier came back: updelay is 1s", d)
	}
}

// endpoints adds n more endpoint namespaces behind hvnet's switch (each
// on an uplink port of its own, in VLAN 1): PREFIX0.. with addresses
// 10.9.0.FIRST.. (their own source MACs).
func (r *tor) endpoints(t *testing.T, prefix string, n, first int) []*nlns.NS {
	var eps []*nlns.NS
	for i := range n {
		ns := nlns.New(t, fmt.Sprintf("%s%d", prefix, i))
		veth := fmt.Sprintf("%sv%d", prefix, i)
		nlns.Veth(t, veth, ns, "e0")
		ns.Addr(t, "e0", fmt.Sprintf("10.9.0.%d/24", first+i))
		up, err := uplink.Open(veth, uplink.Config{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := r.sw.AddPort(vswitch.PortConfig{Name: fmt.Sprintf("%s%d", prefix, i), Mode: vswitch.ModeAccess, PVID: 1}, up)
		if err != nil {
			t.Fatal(err)
		}
		up.Start(h)
		t.Cleanup(func() { up.Close() })
		eps = append(eps, ns)
	}
	return eps
}
