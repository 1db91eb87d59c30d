package ipfix

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/pktbuild"
	vswitch "github.com/hvnet/hvnet/switch"
)

// collector is a UDP listener that decodes what it receives and checks
// each message's sequence number against the data records before it.
type collector struct {
	t    *testing.T
	conn *net.UDPConn
	mu   sync.Mutex
	dec  *decoder
	recs []decRecord
	msgs []msgHeader
	seq  uint32
	errs []error
}

func newCollector(t *testing.T) *collector {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{t: t, conn: c, dec: newDecoder()}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			col.mu.Lock()
			h, rs, err := col.dec.decode(append([]byte(nil), buf[:n]...))
			if err == nil && h.seq != col.seq {
				err = errors.New("sequence number " + itoa(h.seq) + ", want " + itoa(col.seq))
			}
			if err != nil {
				col.errs = append(col.errs, err)
			}
			if n > MessageSize {
				col.errs = append(col.errs, errors.New("message of "+itoa(uint32(n))+" bytes"))
			}
			col.seq = h.seq + uint32(h.dataRecords)
			col.msgs = append(col.msgs, h)
			col.recs = append(col.recs, rs...)
			col.mu.Unlock()
		}
	}()
	return col
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func (c *collector) addr() string { return c.conn.LocalAddr().String() }

// wait waits until cond holds over the collected messages: up to 30 s,
// for a loaded machine under -race (it returns as soon as cond holds).
func (c *collector) wait(what string, cond func(msgs []msgHeader, recs []decRecord) bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.mu.Lock()
		ok := cond(c.msgs, c.recs)
		errs := c.errs
		c.mu.Unlock()
		if len(errs) > 0 {
			c.t.Fatalf("collector: %v", errs)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.mu.Lock()
			c.t.Fatalf("timed out waiting for %s: %d messages, %d records", what, len(c.msgs), len(c.recs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func flowRecs(recs []decRecord) []decRecord {
	var out []decRecord
	for _, r := range recs {
		if r.tmpl == tmplIPv4 || r.tmpl == tmplIPv6 || r.tmpl == tmplL2 {
			out = append(out, r)
		}
	}
	return out
}

// testNet is a switch with access ports a and b in VLAN 10 and a sink
// port each, both MACs learned.
type testNet struct {
	sw     *vswitch.Switch
	a, b   *vswitch.PortHandle
	ma, mb vswitch.MAC
}

type nullPort struct{}

func (nullPort) Send(f []vswitch.Frame) int { return len(f) }
func (nullPort) Caps() vswitch.Caps         { return 0 }

func newTestNet(t *testing.T, clock vswitch.Clock) *testNet {
	sw := vswitch.New(vswitch.Config{Clock: clock})
	n := &testNet{sw: sw, ma: vswitch.MAC{2, 0, 0, 0, 0, 0xa}, mb: vswitch.MAC{2, 0, 0, 0, 0, 0xb}}
	var err error
	if n.a, err = sw.AddPort(vswitch.PortConfig{Name: "a", PVID: 10}, nullPort{}); err != nil {
		t.Fatal(err)
	}
	if n.b, err = sw.AddPort(vswitch.PortConfig{Name: "b", PVID: 10}, nullPort{}); err != nil {
		t.Fatal(err)
	}
	n.a.Input([]vswitch.Frame{{Data: pktbuild.Frame{Dst: vswitch.Broadcast, Src: n.ma, EtherType: 0x0806, Size: 60}.Bytes()}})
	n.b.Input([]vswitch.Frame{{Data: pktbuild.Frame{Dst: vswitch.Broadcast, Src: n.mb, EtherType: 0x0806, Size: 60}.Bytes()}})
	return n
}

func (n *testNet) send(h *vswitch.PortHandle, f pktbuild.Frame, count int) {
	b := f.Bytes()
	fs := make([]vswitch.Frame, count)
	for i := range fs {
		fs[i].Data = b
	}
	h.Input(fs)
}

func (n *testNet) udp(sport uint16, size int) pktbuild.Frame {
	return pktbuild.Frame{Dst: n.mb, Src: n.ma, SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"),
		Proto: pktbuild.UDP, SPort: sport, DPort: 53, Size: size}
}

// TestExportRecords: what a collector receives for known traffic, field by
// field, with sequence numbers and message sizes checked on every message.
func TestExportRecords(t *testing.T) {
	n := newTestNet(t, nil)
	col := newCollector(t)
	e := New(n.sw, Options{Segment: func(port string, vlan uint16) uint32 {
		if port == "b" && vlan == 10 {
			return 5010
		}
		return 0
	}})
	defer e.Close()
	if err := e.Apply(Config{Enabled: true, Collectors: []string{col.addr()}}); err != nil {
		t.Fatal(err)
	}
	tcp := pktbuild.Frame{Dst: n.mb, Src: n.ma, SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"),
		Proto: pktbuild.TCP, SPort: 40000, DPort: 22, TCPFlags: 0x02, Size: 74}
	n.send(n.a, tcp, 1)
	tcp.TCPFlags, tcp.Size = 0x10, 1514
	n.send(n.a, tcp, 99)
	v6 := pktbuild.Frame{Dst: n.ma, Src: n.mb, SrcIP: netip.MustParseAddr("fd00::b"), DstIP: netip.MustParseAddr("fd00::a"),
		Proto: pktbuild.ICMPv6, ICMPType: 129, Size: 118}
	n.send(n.b, v6, 7)
	// 300 more UDP flows: several data messages.
	for i := range 300 {
		n.send(n.a, n.udp(uint16(1000+i), 100), 2)
	}
	e.Flush()
	col.wait("302 flow records", func(_ []msgHeader, recs []decRecord) bool { return len(flowRecs(recs)) >= 302 })
	col.mu.Lock()
	defer col.mu.Unlock()
	// The templates and options came first, in their own message.
	if len(col.msgs[0].templateIDs) != 6 || col.msgs[0].domain != DefaultObservationDomain {
		t.Fatalf("first message: %+v", col.msgs[0])
	}
	var sawNames []string
	for _, r := range col.recs {
		if r.tmpl == tmplInterfaces {
			sawNames = append(sawNames, itoa(uint32(r.u(ieIngressInterface)))+"="+string(r.fields[ieInterfaceName]))
		}
		if r.tmpl == tmplSampling && r.u(ieSamplingInterval) != 1 {
			t.Errorf("samplingInterval %d", r.u(ieSamplingInterval))
		}
	}
	if strings.Join(sawNames, " ") != "1=a 2=b" {
		t.Errorf("interface names %v", sawNames)
	}
	var tcpRec, icmpRec *decRecord
	var udp int
	var pk, l2 uint64
	for _, r := range flowRecs(col.recs) {
		switch {
		case r.tmpl == tmplIPv4 && r.u(ieProtocolIdentifier) == pktbuild.TCP:
			tcpRec = &r
		case r.tmpl == tmplIPv6:
			icmpRec = &r
		case r.tmpl == tmplIPv4 && r.u(ieProtocolIdentifier) == pktbuild.UDP:
			udp++
			if r.u(iePacketDeltaCount) != 2 || r.u(ieOctetDeltaCount) != 2*86 || r.u(ieLayer2OctetDeltaCount) != 200 {
				t.Errorf("udp record: %d packets %d octets %d l2", r.u(iePacketDeltaCount), r.u(ieOctetDeltaCount), r.u(ieLayer2OctetDeltaCount))
			}
		}
		if r.u(ieIngressInterface) == 1 {
			pk, l2 = pk+r.u(iePacketDeltaCount), l2+r.u(ieLayer2OctetDeltaCount)
		}
	}
	if udp != 300 || tcpRec == nil || icmpRec == nil {
		t.Fatalf("%d udp records, tcp %v, icmpv6 %v", udp, tcpRec != nil, icmpRec != nil)
	}
	r := *tcpRec
	check := func(what string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}
	check("tcp packets", r.u(iePacketDeltaCount), 100)
	check("tcp octets (IP)", r.u(ieOctetDeltaCount), 60+99*1500)
	check("tcp layer2 octets", r.u(ieLayer2OctetDeltaCount), 74+99*1514)
	check("tcp flags", r.u(ieTCPControlBits), 0x12)
	check("ingress", r.u(ieIngressInterface), 1)
	check("egress", r.u(ieEgressInterface), 2)
	check("vlan", r.u(ieVlanID), 10)
	check("segment (egress b is VNI 5010)", r.u(ieLayer2SegmentID), 1<<56|5010)
	check("sport", r.u(ieSourceTransportPort), 40000)
	check("dport", r.u(ieDestinationTransportPort), 22)
	check("end reason forced", r.u(ieFlowEndReason), 4)
	check("src ip", r.u(ieSourceIPv4Address), 0x0a000001)
	if string(r.fields[ieSourceMacAddress]) != string(n.ma[:]) || string(r.fields[ieDestinationMacAddress]) != string(n.mb[:]) {
		t.Errorf("macs %x %x", r.fields[ieSourceMacAddress], r.fields[ieDestinationMacAddress])
	}
	now := uint64(time.Now().UnixMilli())
	if s, e := r.u(ieFlowStartMilliseconds), r.u(ieFlowEndMilliseconds); s > e || now-s > 10000 {
		t.Errorf("start %d end %d now %d", s, e, now)
	}
	r = *icmpRec
	check("icmpv6 type code", r.u(ieICMPTypeCodeIPv6), 129<<8)
	check("icmpv6 packets", r.u(iePacketDeltaCount), 7)
	check("icmpv6 octets", r.u(ieOctetDeltaCount), 7*104)
	check("icmpv6 segment (ingress b)", r.u(ieLayer2SegmentID), 1<<56|5010)
	if a := r.fields[ieSourceIPv6Address]; netip.AddrFrom16([16]byte(a)).String() != "fd00::b" {
		t.Errorf("src %x", a)
	}
	// Everything port a received is in the records (its ARP was before
	// export began).
	c := n.a.Counters()
	check("a's packets", pk, c.RxPackets-1)
	check("a's bytes", l2, c.RxBytes-60)
	st := e.Stats()
	if st.Records != 302 || st.SendErrors != 0 || len(st.Collectors) != 1 || st.Collectors[0].Messages != uint64(len(col.msgs)) {
		t.Errorf("stats %+v", st)
	}
}

// TestExportTimeouts: idle and active timeouts with the switch's clock.
func TestExportTimeouts(t *testing.T) {
	clock := vswitch.NewManualClock(time.Now().UnixNano())
	n := newTestNet(t, clock)
	col := newCollector(t)
	e := New(n.sw, Options{Tick: 5 * time.Millisecond})
	defer e.Close()
	if err := e.Apply(Config{Enabled: true, Collectors: []string{col.addr()}, ActiveTimeout: 60 * time.Second, IdleTimeout: 15 * time.Second}); err != nil {
		t.Fatal(err)
	}
	n.send(n.a, n.udp(1, 100), 1)
	n.send(n.a, n.udp(2, 100), 1)
	for range 4 {
		clock.Advance(10 * time.Second)
		n.send(n.a, n.udp(1, 100), 1)
	}
	col.wait("the idle flow", func(_ []msgHeader, recs []decRecord) bool { return len(flowRecs(recs)) >= 1 })
	// The exporter's ticker runs on its own: the clock never stands where
	// a tick and the next frame would race for a verdict (flow 1 idle for
	// less than 15 s, younger than 60 s until the last advance).
	clock.Advance(10 * time.Second) // 50 s
	n.send(n.a, n.udp(1, 100), 1)
	clock.Advance(9 * time.Second) // 59 s
	n.send(n.a, n.udp(1, 100), 1)
	clock.Advance(2 * time.Second) // 61 s: active timeout
	col.wait("the active flow", func(_ []msgHeader, recs []decRecord) bool { return len(flowRecs(recs)) >= 2 })
	col.mu.Lock()
	rs := flowRecs(col.recs)
	col.mu.Unlock()
	if rs[0].u(ieSourceTransportPort) != 2 || rs[0].u(ieFlowEndReason) != 1 || rs[0].u(iePacketDeltaCount) != 1 {
		t.Errorf("idle record: port %d reason %d", rs[0].u(ieSourceTransportPort), rs[0].u(ieFlowEndReason))
	}
	if rs[1].u(ieSourceTransportPort) != 1 || rs[1].u(ieFlowEndReason) != 2 || rs[1].u(iePacketDeltaCount) != 7 ||
		rs[1].u(ieFlowEndMilliseconds)-rs[1].u(ieFlowStartMilliseconds) != 59000 {
		t.Errorf("active record: port %d reason %d packets %d, %d ms", rs[1].u(ieSourceTransportPort), rs[1].u(ieFlowEndReason),
			rs[1].u(iePacketDeltaCount), rs[1].u(ieFlowEndMilliseconds)-rs[1].u(ieFlowStartMilliseconds))
	}
}

// TestExportSampling: 1 in 10 frames counted, and the sampling options.
func TestExportSampling(t *testing.T) {
	n := newTestNet(t, nil)
	col := newCollector(t)
	e := New(n.sw, Options{})
	defer e.Close()
	if err := e.Apply(Config{Enabled: true, Collectors: []string{col.addr()}, Sampling: 10}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		n.send(n.a, n.udp(7, 200), 50)
	}
	e.Flush()
	col.wait("the flow", func(_ []msgHeader, recs []decRecord) bool { return len(flowRecs(recs)) >= 1 })
	col.mu.Lock()
	defer col.mu.Unlock()
	var interval, space, algo uint64
	for _, r := range col.recs {
		switch r.tmpl {
		case tmplSampling:
			interval = r.u(ieSamplingInterval)
		case tmplSelector:
			algo, space = r.u(ieSelectorAlgorithm), r.u(ieSamplingPacketSpace)
		}
	}
	if interval != 10 || algo != selCountBased || space != 9 {
		t.Errorf("options: interval %d algorithm %d space %d", interval, algo, space)
	}
	rs := flowRecs(col.recs)
	if len(rs) != 1 || rs[0].u(iePacketDeltaCount) != 50 || rs[0].u(ieLayer2OctetDeltaCount) != 50*200 {
		t.Fatalf("%d records; packets %d", len(rs), rs[0].u(iePacketDeltaCount))
	}
}

// TestTemplateRefresh: by time and by message count.
func TestTemplateRefresh(t *testing.T) {
	n := newTestNet(t, nil)
	col := newCollector(t)
	e := New(n.sw, Options{Tick: 10 * time.Millisecond})
	defer e.Close()
	if err := e.Apply(Config{Enabled: true, Collectors: []string{col.addr()}, TemplateRefresh: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	tmplMsgs := func(msgs []msgHeader) int {
		k := 0
		for _, m := range msgs {
			if len(m.templateIDs) > 0 {
				k++
			}
		}
		return k
	}
	// Templates go out with the first export after the refresh is due;
	// flows keep coming.
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			n.send(n.a, n.udp(uint16(i), 100), 1)
			e.Flush()
		}
	}()
	col.wait("3 template messages", func(msgs []msgHeader, _ []decRecord) bool { return tmplMsgs(msgs) >= 3 })
	close(stop)
	col.mu.Lock()
	k := tmplMsgs(col.msgs)
	col.mu.Unlock()
	if st := e.Stats(); st.Templates < uint64(k) {
		t.Errorf("stats: %d template messages, collector saw %d", st.Templates, k)
	}
	// By packets: templates again every 2 messages.
	col2 := newCollector(t)
	if err := e.Apply(Config{Enabled: true, Collectors: []string{col2.addr()}, TemplateRefreshPackets: 2}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		n.send(n.a, n.udp(uint16(i), 100), 1)
		e.Flush()
	}
	col2.wait("6 data messages", func(msgs []msgHeader, recs []decRecord) bool { return len(flowRecs(recs)) >= 6 })
	col2.mu.Lock()
	defer col2.mu.Unlock()
	// Templates at the start, then every second message: T D T D D T D D ...
	if k := tmplMsgs(col2.msgs); k < 3 {
		t.Errorf("%d template messages in %d", k, len(col2.msgs))
	}
}

// TestBadCollector: addresses that are not refused clearly, and nothing
// changes.
func TestBadCollector(t *testing.T) {
	n := newTestNet(t, nil)
	e := New(n.sw, Options{})
	defer e.Close()
	for _, c := range []struct{ addr, want string }{
		{"127.0.0.1", "want HOST:PORT"},
		{"127.0.0.1:0", "port \"0\""},
		{"127.0.0.1:70000", "port \"70000\""},
		{":4739", "no host"},
		{"no-such-host.invalid:4739", "does not resolve"},
		{"0.0.0.0:4739", "not a unicast address"},
		{"[::1]:http", "port \"http\""},
	} {
		err := e.Apply(Config{Enabled: true, Collectors: []string{"127.0.0.1:4739", c.addr}})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "collectors[1]" || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.addr) {
			t.Errorf("%q: %v, want collectors[1] ... %s", c.addr, err, c.want)
		}
	}
	if err := e.Apply(Config{Enabled: true, Collectors: []string{"127.0.0.1:4739", "127.0.0.1:4739"}}); err == nil {
		t.Error("a collector twice accepted")
	}
	for _, c := range []Config{{Sampling: -1}, {ActiveTimeout: time.Millisecond}, {IdleTimeout: 48 * time.Hour}, {MaxFlows: -1}, {TemplateRefreshPackets: -1}} {
		c.Enabled = true
		if err := e.Apply(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if st := n.sw.FlowStats(); st.Enabled || e.Config().Enabled {
		t.Error("a refused configuration turned export on")
	}
}

// TestUnreachableCollector: a collector nobody listens at is counted, and
// the data path does not wait for it.
func TestUnreachableCollector(t *testing.T) {
	n := newTestNet(t, nil)
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := l.LocalAddr().String()
	l.Close()
	col := newCollector(t)
	e := New(n.sw, Options{Tick: 5 * time.Millisecond})
	defer e.Close()
	if err := e.Apply(Config{Enabled: true, Collectors: []string{dead, col.addr()}, IdleTimeout: MinTimeout}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const frames = 20000
	for i := range frames / 50 {
		n.send(n.a, n.udp(uint16(i), 100), 50)
		if i%40 == 0 {
			e.Flush()
		}
	}
	e.Flush()
	elapsed := time.Since(start)
	col.wait("records at the live collector", func(_ []msgHeader, recs []decRecord) bool {
		var pk uint64
		for _, r := range flowRecs(recs) {
			pk += r.u(iePacketDeltaCount)
		}
		return pk == frames
	})
	st := e.Stats()
	var deadSt CollectorStats
	for _, c := range st.Collectors {
		if c.Address == dead {
			deadSt = c
		}
	}
	if deadSt.SendErrors == 0 || st.SendErrors != deadSt.SendErrors || !strings.Contains(deadSt.LastError, "refused") {
		t.Errorf("dead collector: %+v (total errors %d)", deadSt, st.SendErrors)
	}
	if c := n.b.Counters(); c.TxPackets < frames {
		t.Errorf("b sent %d of %d", c.TxPackets, frames)
	}
	// Not waited for: the dead collector's sends failed at once with
	// "refused" (checked above), never at the write deadline (an "i/o
	// timeout"). The time is logged, not asserted: on a loaded machine
	// under -race it says nothing (speed is for benchmarks).
	t.Logf("20000 frames and 10 flushes took %v", elapsed)
}

// TestReconfigure: a new sampling reports the flows counted under the old
// one first; new collectors keep the cache.
func TestReconfigure(t *testing.T) {
	n := newTestNet(t, nil)
	col := newCollector(t)
	e := New(n.sw, Options{})
	defer e.Close()
	cfg := Config{Enabled: true, Collectors: []string{col.addr()}}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	n.send(n.a, n.udp(1, 100), 3)
	col2 := newCollector(t)
	cfg.Collectors = []string{col2.addr()}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if st := n.sw.FlowStats(); st.Active != 1 {
		t.Fatalf("cache after a collector change: %+v", st)
	}
	cfg.Sampling = 2
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	col2.wait("the flow, forced out", func(_ []msgHeader, recs []decRecord) bool { return len(flowRecs(recs)) == 1 })
	col2.mu.Lock() // its goroutine appends what comes later
	r := flowRecs(col2.recs)[0]
	col2.mu.Unlock()
	if r.u(iePacketDeltaCount) != 3 || r.u(ieFlowEndReason) != 4 {
		t.Errorf("record %d packets reason %d", r.u(iePacketDeltaCount), r.u(ieFlowEndReason))
	}
	if st := n.sw.FlowStats(); st.Sampling != 2 || st.Active != 0 {
		t.Errorf("after the sampling change: %+v", st)
	}
	e.Close()
	if st := n.sw.FlowStats(); st.Enabled {
		t.Error("still on after Close")
	}
}
