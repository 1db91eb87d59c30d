package vswitch

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/conntrack"
)

// Frames for the security-group tests: IPv4 or IPv6 (by the addresses'
// family) with a TCP, UDP or ICMP payload; checksums are not checked by
// the switch and left zero.

type ipEnd struct {
	mac  MAC
	ip   netip.Addr
	port uint16
}

func ipFrame(src, dst ipEnd, proto uint8, l4 []byte) []byte {
	et, hl := uint16(0x0800), 20
	if src.ip.Is6() {
		et, hl = 0x86dd, 40
	}
	b := make([]byte, 14+hl, 14+hl+len(l4))
	copy(b, dst.mac[:])
	copy(b[6:], src.mac[:])
	binary.BigEndian.PutUint16(b[12:], et)
	ip := b[14:]
	if hl == 20 {
		ip[0], ip[8], ip[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		s, d := src.ip.As4(), dst.ip.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		ip[0], ip[6], ip[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		s, d := src.ip.As16(), dst.ip.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	return append(b, l4...)
}

const (
	fFIN = 0x01
	fSYN = 0x02
	fRST = 0x04
	fPSH = 0x08
	fACK = 0x10
)

func tcpSeg(src, dst ipEnd, seq, ack uint32, flags uint8, payload int) []byte {
	l4 := make([]byte, 20+payload)
	binary.BigEndian.PutUint16(l4, src.port)
	binary.BigEndian.PutUint16(l4[2:], dst.port)
	binary.BigEndian.PutUint32(l4[4:], seq)
	binary.BigEndian.PutUint32(l4[8:], ack)
	l4[12], l4[13] = 5<<4, flags
	binary.BigEndian.PutUint16(l4[14:], 65535)
	return ipFrame(src, dst, 6, l4)
}

func udpDgram(src, dst ipEnd, payload int) []byte {
	l4 := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(l4, src.port)
	binary.BigEndian.PutUint16(l4[2:], dst.port)
	binary.BigEndian.PutUint16(l4[4:], uint16(8+payload))
	return ipFrame(src, dst, 17, l4)
}

// icmpUnreach is an ICMP (v4: type 3 code 3, v6: type 1 code 4)
// destination/port unreachable from src to dst quoting the IP packet of
// quoted (a whole frame).
func icmpUnreach(src, dst ipEnd, quoted []byte) []byte {
	q := quoted[14:]
	if len(q) > 48+8 && src.ip.Is4() {
		q = q[:28]
	}
	l4 := make([]byte, 8, 8+len(q))
	proto := uint8(1)
	l4[0], l4[1] = 3, 3
	if src.ip.Is6() {
		proto, l4[0], l4[1] = 58, 1, 4
	}
	return ipFrame(src, dst, proto, append(l4, q...))
}

// sgSwitch is a switch with ports a (the guest under test, with a
// security group), b and c (plain), all in VLAN 1.
func sgSwitch(t *testing.T, ct conntrack.Config) *testSwitch {
	t.Helper()
	ts := &testSwitch{t: t, clock: NewManualClock(1_000_000_000_000), h: map[string]*PortHandle{}, s: map[string]*sink{}}
	ts.sw = New(Config{Clock: ts.clock, Conntrack: ct})
	for _, n := range []string{"a", "b", "c"} {
		ts.add(access(n, 1), 0)
	}
	return ts
}

func (ts *testSwitch) setSG(port string, sg *SecurityGroup, flush bool) {
	ts.t.Helper()
	if err := ts.sw.SetSecurityGroup(port, sg, flush); err != nil {
		ts.t.Fatal(err)
	}
}

// got reports whether port received exactly n frames since the last call
// (and forgets them).
func (ts *testSwitch) got(port string) int { return len(ts.s[port].take()) }

var (
	gA4 = ipEnd{mac(1), netip.MustParseAddr("10.0.0.1"), 40000}
	gB4 = ipEnd{mac(2), netip.MustParseAddr("10.0.0.2"), 80}
	gC4 = ipEnd{mac(3), netip.MustParseAddr("10.0.0.3"), 5000}
	gA6 = ipEnd{mac(1), netip.MustParseAddr("fd00::1"), 40000}
	gB6 = ipEnd{mac(2), netip.MustParseAddr("fd00::2"), 80}
)

// sgFamilies are the two address families the tests run in: a's and b's
// ends.
var sgFamilies = []struct {
	name string
	a, b ipEnd
}{{"ipv4", gA4, gB4}, {"ipv6", gA6, gB6}}

// learn teaches the switch where the three MACs are (ARP-like frames:
// not IP, never tracked), so unicast goes to one port.
func (ts *testSwitch) learn() {
	for i, p := range []string{"a", "b", "c"} {
		ts.in(p, eth(Broadcast, mac(byte(i+1)), 0x0806, 46))
	}
	for _, p := range []string{"a", "b", "c"} {
		ts.got(p)
	}
}

// A guest with the default group opens connections and gets the replies;
// connections toward it are dropped and counted, in IPv4 and IPv6, TCP,
// UDP and ICMP echo.
func TestSecurityGroupEgressOnly(t *testing.T) {
	for _, fam := range sgFamilies {
		t.Run(fam.name, func(t *testing.T) {
			ts := sgSwitch(t, conntrack.Config{})
			ts.learn()
			def := DefaultSecurityGroup()
			ts.setSG("a", &def, false)
			a, b := fam.a, fam.b
			// TCP: a opens to b.
			ts.in("a", tcpSeg(a, b, 1000, 0, fSYN, 0))
			ts.in("b", tcpSeg(b, a, 5000, 1001, fSYN|fACK, 0))
			ts.in("a", tcpSeg(a, b, 1001, 5001, fACK, 0))
			ts.in("b", tcpSeg(b, a, 5001, 1001, fACK|fPSH, 100))
			if gb, ga := ts.got("b"), ts.got("a"); gb != 2 || ga != 2 {
				t.Fatalf("TCP opened by a: b got %d frames, a got %d; want 2 and 2", gb, ga)
			}
			// TCP: b opens to a: dropped on the way into a.
			b2 := b
			b2.port = 41000
			a2 := a
			a2.port = 22
			ts.in("b", tcpSeg(b2, a2, 7000, 0, fSYN, 0))
			if n := ts.got("a"); n != 0 {
				t.Fatalf("unsolicited SYN reached a (%d frames)", n)
			}
			if d := ts.drops("a", DropSecurityGroup); d != 1 {
				t.Fatalf("security_group drops on a = %d, want 1", d)
			}
			// UDP both ways, then an unsolicited datagram.
			ts.in("a", udpDgram(a, b, 10))
			ts.in("b", udpDgram(b, a, 10))
			if gb, ga := ts.got("b"), ts.got("a"); gb != 1 || ga != 1 {
				t.Fatalf("UDP opened by a: b got %d, a got %d", gb, ga)
			}
			ts.in("b", udpDgram(b2, a2, 10))
			if n := ts.got("a"); n != 0 || ts.drops("a", DropSecurityGroup) != 2 {
				t.Fatalf("unsolicited UDP: a got %d, drops %d", n, ts.drops("a", DropSecurityGroup))
			}
			// ICMP echo.
			req, rep := icmpEcho(a, b, 0x77, false), icmpEcho(b, a, 0x77, true)
			ts.in("a", req)
			ts.in("b", rep)
			if gb, ga := ts.got("b"), ts.got("a"); gb != 1 || ga != 1 {
				t.Fatalf("ping from a: b got %d, a got %d", gb, ga)
			}
			ts.in("b", icmpEcho(b, a, 0x99, false))
			if n := ts.got("a"); n != 0 {
				t.Fatalf("unsolicited ping reached a")
			}
			// ARP (not IP) always passes.
			ts.in("b", eth(mac(1), mac(2), 0x0806, 46))
			if n := ts.got("a"); n != 1 {
				t.Fatalf("ARP to a: got %d frames", n)
			}
			if n := ts.h["a"].Conntrack().Len(); n != 3 {
				t.Errorf("a's zone holds %d entries, want 3 (TCP, UDP, ICMP)", n)
			}
			if ts.h["b"].Conntrack() != nil {
				t.Errorf("b has a zone without a group")
			}
		})
	}
}

func icmpEcho(src, dst ipEnd, id uint16, reply bool) []byte {
	l4 := make([]byte, 16)
	proto := uint8(1)
	switch {
	case src.ip.Is6() && reply:
		proto, l4[0] = 58, 129
	case src.ip.Is6():
		proto, l4[0] = 58, 128
	case !reply:
		l4[0] = 8
	}
	binary.BigEndian.PutUint16(l4[4:], id)
	return ipFrame(src, dst, proto, l4)
}

// A reply after its connection timed out is a new inbound connection:
// dropped (manual clock; Linux's UDP timeout, 30 s).
func TestSecurityGroupTimeout(t *testing.T) {
	ts := sgSwitch(t, conntrack.Config{})
	ts.learn()
	def := DefaultSecurityGroup()
	ts.setSG("a", &def, false)
	ts.in("a", udpDgram(gA4, gB4, 10))
	ts.advance(29 * time.Second)
	ts.in("b", udpDgram(gB4, gA4, 10))
	if n := ts.got("a"); n != 1 {
		t.Fatalf("reply within the timeout: a got %d", n)
	}
	ts.advance(121 * time.Second) // past the replied (stream) timeout too
	ts.in("b", udpDgram(gB4, gA4, 10))
	if n := ts.got("a"); n != 0 {
		t.Fatalf("reply after the timeout reached a")
	}
	if d := ts.drops("a", DropSecurityGroup); d != 1 {
		t.Fatalf("security_group drops = %d, want 1", d)
	}
	// The late reply found the entry timed out (and removed it); a
	// sweep finds nothing left.
	ts.sw.SweepConntrack()
	z := ts.h["a"].Conntrack()
	if n, c := z.Len(), z.Counters(); n != 0 || c.Expired != 1 {
		t.Errorf("after the timeout: %d entries, %d expired; want 0 and 1", n, c.Expired)
	}
}

// ICMP errors about a tracked connection pass (both families); others do
// not.
func TestSecurityGroupRelatedICMP(t *testing.T) {
	for _, fam := range sgFamilies {
		t.Run(fam.name, func(t *testing.T) {
			ts := sgSwitch(t, conntrack.Config{})
			ts.learn()
			def := DefaultSecurityGroup()
			ts.setSG("a", &def, false)
			out := udpDgram(fam.a, fam.b, 10)
			ts.in("a", out)
			ts.got("b")
			ts.in("b", icmpUnreach(fam.b, fam.a, out))
			if n := ts.got("a"); n != 1 {
				t.Fatalf("port unreachable for a's flow: a got %d", n)
			}
			other := fam.a
			other.port = 999
			ts.in("b", icmpUnreach(fam.b, fam.a, udpDgram(other, fam.b, 10)))
			if n := ts.got("a"); n != 0 {
				t.Fatalf("an ICMP error about no connection of a's reached it")
			}
			if d := ts.drops("a", DropSecurityGroup) + ts.drops("a", DropCTInvalid); d != 1 {
				t.Fatalf("drops = %d, want 1", d)
			}
		})
	}
}

// Inbound rules open the guest to chosen services; established
// connections survive rule changes unless flushed.
func TestSecurityGroupRulesAndChanges(t *testing.T) {
	ts := sgSwitch(t, conntrack.Config{})
	ts.learn()
	sg := DefaultSecurityGroup()
	sg.Inbound = []SGRule{{Proto: 6, Ports: PortRange{22, 22}, Remote: netip.MustParsePrefix("10.0.0.0/30")}}
	ts.setSG("a", &sg, false)
	a22 := gA4
	a22.port = 22
	ts.in("b", tcpSeg(gB4, a22, 1, 0, fSYN, 0))
	ts.in("c", tcpSeg(gC4, a22, 1, 0, fSYN, 0)) // 10.0.0.3: inside 10.0.0.0/30 too
	if n := ts.got("a"); n != 2 {
		t.Fatalf("SYNs to port 22 from 10.0.0.0/30: a got %d, want 2", n)
	}
	a23 := gA4
	a23.port = 23
	ts.in("b", tcpSeg(gB4, a23, 1, 0, fSYN, 0))
	if n := ts.got("a"); n != 0 {
		t.Fatalf("SYN to port 23 reached a")
	}
	// Finish b's handshake, then take the rule away: the connection goes on.
	ts.in("a", tcpSeg(a22, gB4, 100, 2, fSYN|fACK, 0))
	ts.in("b", tcpSeg(gB4, a22, 2, 101, fACK, 0))
	ts.got("a")
	ts.got("b")
	none := DefaultSecurityGroup()
	ts.setSG("a", &none, false)
	ts.in("b", tcpSeg(gB4, a22, 2, 101, fACK|fPSH, 50))
	if n := ts.got("a"); n != 1 {
		t.Fatalf("established connection after the rule went: a got %d, want 1", n)
	}
	ts.setSG("a", &none, true) // flush
	ts.in("b", tcpSeg(gB4, a22, 52, 101, fACK|fPSH, 50))
	if n := ts.got("a"); n != 0 {
		t.Fatalf("connection still passes after a flush")
	}
	if err := ts.sw.SetSecurityGroup("a", &SecurityGroup{Inbound: []SGRule{{Proto: 1, Ports: PortRange{1, 2}}}}, false); err == nil {
		t.Errorf("ports on ICMP accepted")
	}
	if err := ts.sw.SetSecurityGroup("a", &SecurityGroup{Inbound: []SGRule{{Family: 6, Remote: netip.MustParsePrefix("10.0.0.0/8")}}}, false); err == nil {
		t.Errorf("IPv4 remote in an IPv6 rule accepted")
	}
	if err := ts.sw.SetSecurityGroup("nope", &none, false); err == nil {
		t.Errorf("unknown port accepted")
	}
}

// Impossible TCP flags are dropped as ct_invalid and open nothing.
func TestSecurityGroupInvalidFlags(t *testing.T) {
	ts := sgSwitch(t, conntrack.Config{})
	ts.learn()
	open := SecurityGroup{InboundDefault: ACLAllow, OutboundDefault: ACLAllow}
	ts.setSG("a", &open, false)
	for _, fl := range []uint8{fSYN | fFIN, fSYN | fRST, 0, fFIN, fFIN | fPSH} {
		ts.in("a", tcpSeg(gA4, gB4, 1, 0, fl, 0))
	}
	if n := ts.got("b"); n != 0 {
		t.Fatalf("%d frames with impossible flags passed", n)
	}
	if d := ts.drops("a", DropCTInvalid); d != 5 {
		t.Fatalf("ct_invalid drops = %d, want 5", d)
	}
	if n := ts.h["a"].Conntrack().Len(); n != 0 {
		t.Fatalf("invalid segments opened %d connections", n)
	}
}

// Segments of an established connection out of its window, both ways
// through the group (the fast path's Invalid): dropped as ct_invalid on
// the group's port, in-window ones pass; IPv4 (the fast path) and IPv6
// (the general one) alike.
func TestSecurityGroupOutOfWindow(t *testing.T) {
	for _, fam := range sgFamilies {
		t.Run(fam.name, func(t *testing.T) {
			ts := sgSwitch(t, conntrack.Config{})
			ts.learn()
			def := DefaultSecurityGroup()
			ts.setSG("a", &def, false)
			a, b := fam.a, fam.b
			ts.in("a", tcpSeg(a, b, 1000, 0, fSYN, 0))
			ts.in("b", tcpSeg(b, a, 5000, 1001, fSYN|fACK, 0))
			ts.in("a", tcpSeg(a, b, 1001, 5001, fACK, 0))
			for range 3 {
				ts.in("a", tcpSeg(a, b, 1001, 5001, fACK|fPSH, 100))
				ts.in("b", tcpSeg(b, a, 5001, 1101, fACK|fPSH, 100))
			}
			if gb, ga := ts.got("b"), ts.got("a"); gb != 5 || ga != 4 {
				t.Fatalf("in window: b got %d, a got %d; want 5 and 4", gb, ga)
			}
			// 1 GB past what the other side allowed, and an ACK of
			// data never sent.
			ts.in("a", tcpSeg(a, b, 1101+1<<30, 5101, fACK|fPSH, 100))
			ts.in("b", tcpSeg(b, a, 5101, 1101+1<<30, fACK, 0))
			if gb, ga := ts.got("b"), ts.got("a"); gb != 0 || ga != 0 {
				t.Fatalf("out of window: b got %d, a got %d", gb, ga)
			}
			if d := ts.drops("a", DropCTInvalid); d != 2 {
				t.Fatalf("ct_invalid drops on a = %d, want 2", d)
			}
			if d := ts.drops("b", DropCTInvalid); d != 0 {
				t.Fatalf("ct_invalid drops on b = %d", d)
			}
			ts.in("a", tcpSeg(a, b, 1101, 5101, fACK, 0))
			if n := ts.got("b"); n != 1 {
				t.Fatalf("back in window: b got %d", n)
			}
		})
	}
}

// One port filling its table (a flood of new flows from concurrent
// senders) gets ct_full drops; its established connection goes on, and
// another port's connections, old and new, are untouched.
func TestSecurityGroupTableExhaustion(t *testing.T) {
	ts := sgSwitch(t, conntrack.Config{ZoneLimit: 256})
	ts.learn()
	def := DefaultSecurityGroup()
	ts.setSG("a", &def, false)
	ts.setSG("c", &def, false)
	// An established connection on each of a and c.
	ts.in("a", udpDgram(gA4, gB4, 10))
	ts.in("b", udpDgram(gB4, gA4, 10))
	ts.in("c", udpDgram(gC4, gB4, 10))
	ts.in("b", udpDgram(gB4, gC4, 10))
	ts.got("a")
	ts.got("b")
	ts.got("c")
	// a floods 4096 new flows, from 4 goroutines (one input lock: they
	// take turns, as a multiqueue port's workers do), while c keeps
	// talking.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1024 {
				src := gA4
				src.port = uint16(1024 + g*1024 + i)
				ts.h["a"].Input([]Frame{{Data: udpDgram(src, gB4, 10)}})
			}
		}()
	}
	for i := range 200 {
		src := gC4
		src.port = uint16(20000 + i)
		ts.h["c"].Input([]Frame{{Data: udpDgram(src, gB4, 10)}})
	}
	wg.Wait()
	if d := ts.drops("a", DropCTFull); d != 4096-255 {
		t.Errorf("ct_full drops on a = %d, want %d", d, 4096-255)
	}
	if d := ts.drops("c", DropCTFull); d != 0 {
		t.Errorf("c got %d ct_full drops", d)
	}
	if n := ts.h["c"].Conntrack().Len(); n != 201 {
		t.Errorf("c's zone holds %d entries, want 201", n)
	}
	ts.got("b")
	ts.in("b", udpDgram(gB4, gA4, 10))
	ts.in("b", udpDgram(gB4, gC4, 10))
	if ga, gc := ts.got("a"), ts.got("c"); ga != 1 || gc != 1 {
		t.Errorf("established replies after the flood: a got %d, c got %d", ga, gc)
	}
}

// Trace reports the security group's verdicts.
func TestSecurityGroupTrace(t *testing.T) {
	ts := sgSwitch(t, conntrack.Config{})
	ts.learn()
	def := DefaultSecurityGroup()
	ts.setSG("a", &def, false)
	res, err := ts.sw.Trace("b", TraceFrame{SrcMAC: mac(2), DstMAC: mac(1), SrcIP: gB4.ip, DstIP: gA4.ip, Proto: 6, SrcPort: 80, DstPort: 22})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 0 || len(res.Denied) != 1 || res.Denied[0].Reason != "security_group" {
		t.Fatalf("trace of an unsolicited SYN: outputs %+v denied %+v", res.Outputs, res.Denied)
	}
	res, err = ts.sw.Trace("a", TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), SrcIP: gA4.ip, DstIP: gB4.ip, Proto: 6, SrcPort: 40000, DstPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range res.Steps {
		if s.Stage == "security-group" && s.Verdict == "pass" {
			found = true
		}
	}
	if !found || len(res.Outputs) != 1 {
		t.Fatalf("trace of a's SYN: %+v", res)
	}
	if n := ts.h["a"].Conntrack().Len(); n != 0 {
		t.Fatalf("a trace committed %d connections", n)
	}
}

// Rules replaced over and over (one goroutine) while an established
// connection carries traffic both ways (another): not one of its frames is
// dropped; afterwards the rules in force decide new connections.
func TestSecurityGroupRulesChangedUnderTraffic(t *testing.T) {
	ts := sgSwitch(t, conntrack.Config{})
	ts.learn()
	open := DefaultSecurityGroup()
	open.Inbound = []SGRule{{Proto: 17}}
	closed := DefaultSecurityGroup()
	ts.setSG("a", &open, false)
	ts.in("a", udpDgram(gA4, gB4, 10))
	ts.in("b", udpDgram(gB4, gA4, 10))
	ts.got("a")
	ts.got("b")
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			sg := &open
			if i%2 == 1 {
				sg = &closed
			}
			if err := ts.sw.SetSecurityGroup("a", sg, false); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var sent [2]int
	for i := 0; i < n; i++ {
		ts.h["a"].Input([]Frame{{Data: udpDgram(gA4, gB4, 10)}})
		ts.h["b"].Input([]Frame{{Data: udpDgram(gB4, gA4, 10)}})
		sent[0]++
		sent[1]++
	}
	<-done
	if d := ts.h["a"].Counters().Drops; d != ([NumDropReasons]uint64{}) {
		t.Fatalf("drops on a while rules changed: %v", d)
	}
	if ga, gb := ts.got("a"), ts.got("b"); ga != sent[1] || gb != sent[0] {
		t.Fatalf("a got %d of %d, b %d of %d", ga, sent[1], gb, sent[0])
	}
	// Closed now (the last of an even count of changes): a new inbound
	// connection is refused; open again, it passes.
	ts.setSG("a", &closed, false)
	b2 := gB4
	b2.port = 7777
	ts.in("b", udpDgram(b2, gA4, 10))
	ts.setSG("a", &open, false)
	b3 := gB4
	b3.port = 7778
	ts.in("b", udpDgram(b3, gA4, 10))
	if got, d := ts.got("a"), ts.drops("a", DropSecurityGroup); got != 1 || d != 1 {
		t.Fatalf("after the changes: a got %d (want 1), security_group drops %d (want 1)", got, d)
	}
}

// TestSecurityGroupReadsHeadOnly: two-part frames (a host-side head, a
// tail still in the sender's memory) of established TCP connections,
// both ways through a group, while another goroutine keeps rewriting
// the tails. Connection tracking decides from the head alone (its
// lengths from the IP header, checked against head and tail together):
// under -race, any read of a tail by the switch or conntrack is
// reported; and the tails' contents change no verdict (none dropped,
// the connection ESTABLISHED with every frame counted).
func TestSecurityGroupReadsHeadOnly(t *testing.T) {
	sw := New(Config{Clock: NewManualClock(1)})
	pa, err := sw.AddPort(access("a", 1), nullPort{caps: CapTail})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := sw.AddPort(access("b", 1), nullPort{caps: CapTail})
	if err != nil {
		t.Fatal(err)
	}
	pa.Input([]Frame{{Data: eth(Broadcast, gA4.mac, 0x0806, 46)}})
	pb.Input([]Frame{{Data: eth(Broadcast, gB4.mac, 0x0806, 46)}})
	def := DefaultSecurityGroup()
	if err := sw.SetSecurityGroup("a", &def, false); err != nil {
		t.Fatal(err)
	}
	pa.Input([]Frame{{Data: tcpSeg(gA4, gB4, 1000, 0, fSYN, 0)}})
	pb.Input([]Frame{{Data: tcpSeg(gB4, gA4, 5000, 1001, fSYN|fACK, 0)}})
	pa.Input([]Frame{{Data: tcpSeg(gA4, gB4, 1001, 5001, fACK, 0)}})
	const head, pay = 64, 1000
	split := func(f []byte) Frame {
		return Frame{Data: append([]byte(nil), f[:head]...), Tail: append([]byte(nil), f[head:]...)}
	}
	out := []Frame{split(tcpSeg(gA4, gB4, 1001, 5001, fACK|fPSH, pay))}
	in := []Frame{split(tcpSeg(gB4, gA4, 5001, 1001+pay, fACK|fPSH, pay))}
	tails := [][]byte{out[0].Tail, in[0].Tail}
	var stop sync.WaitGroup
	done := make(chan struct{})
	stop.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			default:
			}
			for _, tl := range tails {
				for i := range tl {
					tl[i] = byte(n + i) // a TCP header's worth of garbage, and more
				}
			}
		}
	})
	const rounds = 200
	for range rounds {
		pa.Input(out)
		pb.Input(in)
	}
	close(done)
	stop.Wait()
	if d0, d1 := pa.Counters().Drops, pb.Counters().Drops; d0 != [NumDropReasons]uint64{} || d1 != [NumDropReasons]uint64{} {
		t.Fatalf("drops %v, %v", d0, d1)
	}
	n := 0
	pa.Conntrack().Entries(1, func(e conntrack.Entry) bool {
		n++
		if e.State != "ESTABLISHED" || e.Packets[conntrack.Outbound] != 2+rounds || e.Packets[conntrack.Inbound] != 1+rounds {
			t.Errorf("entry %+v", e)
		}
		return true
	})
	if n != 1 {
		t.Fatalf("%d entries", n)
	}
}
