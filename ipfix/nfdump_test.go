package ipfix

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/internal/pktbuild"
	vswitch "github.com/hvnet/hvnet/switch"
)

// nfcapd runs Debian's nfcapd (nfdump 1.7) on a free UDP port of
// 127.0.0.1, writing into a temporary directory. ./run.sh installs it
// (APT_PACKAGES: nfdump); the test installs nothing itself.
type nfcapd struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	port   int
	stderr lines.Buffer // written by exec's copying goroutine
}

// udpBound reports whether a socket is bound to 127.0.0.1:port, from
// /proc/net/udp (probing with a bind of our own is ambiguous when the
// other socket set SO_REUSEADDR).
func udpBound(port int) bool {
	_, ok := udpRxQueue(port)
	return ok
}

// udpRxQueue returns the bytes waiting in the receive queue of the socket
// bound to 127.0.0.1:port (the rx_queue column of /proc/net/udp, hex;
// Linux net/ipv4/udp.c udp4_format_sock), and whether there is one.
func udpRxQueue(port int) (int, bool) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, false
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[1] != local {
			continue
		}
		_, rx, ok := strings.Cut(f[4], ":")
		if !ok {
			return 0, true
		}
		n, err := strconv.ParseInt(rx, 16, 64)
		if err != nil {
			return 0, true
		}
		return int(n), true
	}
	return 0, false
}

func startNfcapd(t *testing.T) *nfcapd { return startNfcapdOn(t, freeUDPPort(t)) }

func freeUDPPort(t *testing.T) int {
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}

func startNfcapdOn(t *testing.T, port int) *nfcapd {
	t.Helper()
	bin, err := exec.LookPath("nfcapd")
	if err != nil {
		t.Fatal("nfcapd not found: install it (apt-get install -y nfdump; ./run.sh does)")
	}
	if _, err := exec.LookPath("nfdump"); err != nil {
		t.Fatal("nfdump not found: install it (apt-get install -y nfdump; ./run.sh does)")
	}
	n := &nfcapd{t: t, dir: t.TempDir(), port: port}
	// -t: files rotate hourly, so one file holds the run; SIGTERM closes it.
	n.cmd = exec.Command(bin, "-b", "127.0.0.1", "-p", strconv.Itoa(n.port), "-w", n.dir, "-t", "3600")
	n.cmd.Stdout, n.cmd.Stderr = &n.stderr, &n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		}
	})
	// Ready once it holds the port (slow to start on a loaded machine).
	deadline := time.Now().Add(30 * time.Second)
	for !udpBound(n.port) {
		if time.Now().After(deadline) {
			t.Fatalf("nfcapd did not bind port %d: %s", n.port, n.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func (n *nfcapd) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// drained waits until nfcapd has read every datagram sent to it: a
// moment for loopback to deliver what the exporter wrote, then until its
// socket's receive queue is empty. nfcapd drops what is still queued when
// it stops, and on a loaded machine it may not have run for a while (a
// fixed sleep lost datagrams that way).
func (n *nfcapd) drained() {
	n.t.Helper()
	time.Sleep(200 * time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for {
		q, ok := udpRxQueue(n.port)
		if !ok {
			n.t.Fatalf("nfcapd's socket on port %d is gone: %s", n.port, n.stderr.String())
		}
		if q == 0 {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("nfcapd left %d bytes unread on port %d for 30 s: %s", q, n.port, n.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends nfcapd (SIGTERM: it writes out and closes its file) and
// returns the file.
func (n *nfcapd) stop() string {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // it writes its file first; slow on a loaded machine
		n.t.Fatalf("nfcapd did not stop in 30 s: %s", n.stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(n.dir, "nfcapd.2*"))
	if len(files) != 1 {
		all, _ := os.ReadDir(n.dir)
		n.t.Fatalf("nfcapd files %v (directory: %v); its output: %s", files, all, n.stderr.String())
	}
	return files[0]
}

// nfRow is one flow as nfdump prints it.
type nfRow struct {
	proto, src, dst, sport, dport, in, out, pkts, bytes, flags, vlan, smac, dmac string
}

const nfFormat = "fmt:%pr|%sa|%da|%sp|%dp|%in|%out|%pkt|%byt|%flg|%svln|%ismc|%idmc"

func nfdump(t *testing.T, file string) []nfRow {
	t.Helper()
	out, err := exec.Command("nfdump", "-r", file, "-q", "-N", "-o", nfFormat).CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump -r: %v: %s", err, out)
	}
	var rows []nfRow
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 13 {
			t.Fatalf("nfdump line %q", l)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		rows = append(rows, nfRow{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12]})
	}
	return rows
}

// TestNfdump exports known traffic to a real collector, nfcapd, and reads
// it back with nfdump: the flows it lists are exactly those the switch
// forwarded, packets and bytes equal to the switch's port counters for
// that traffic.
func TestNfdump(t *testing.T) {
	nc := startNfcapd(t)
	n := newTestNet(t, nil)
	e := New(n.sw, Options{})
	if err := e.Apply(Config{Enabled: true, Collectors: []string{nc.addr()}}); err != nil {
		t.Fatal(err)
	}
	before := map[string]vswitch.PortCounters{"a": n.a.Counters(), "b": n.b.Counters()}
	ip := netip.MustParseAddr
	type traffic struct {
		in    *vswitch.PortHandle
		f     pktbuild.Frame
		count int
		want  nfRow // what nfdump prints; pkts and bytes from count and f.Size
	}
	ab := func(f pktbuild.Frame) pktbuild.Frame { f.Src, f.Dst = n.ma, n.mb; return f }
	ba := func(f pktbuild.Frame) pktbuild.Frame { f.Src, f.Dst = n.mb, n.ma; return f }
	const macA, macB = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
	syn := ab(pktbuild.Frame{SrcIP: ip("10.0.0.1"), DstIP: ip("10.0.0.2"), Proto: pktbuild.TCP, SPort: 40000, DPort: 22, TCPFlags: 0x02, Size: 74})
	data := syn
	data.TCPFlags, data.Size = 0x18, 1514
	fin := syn
	fin.TCPFlags, fin.Size = 0x11, 66
	icmp := ab(pktbuild.Frame{SrcIP: ip("10.0.0.1"), DstIP: ip("10.0.0.2"), Proto: pktbuild.ICMP, ICMPType: 8, Size: 98})
	tr := []traffic{
		{n.a, syn, 1, nfRow{}},
		{n.a, data, 100, nfRow{}},
		{n.a, fin, 1, nfRow{proto: "6", src: "10.0.0.1", dst: "10.0.0.2", sport: "40000", dport: "22", in: "1", out: "2", flags: "...AP.SF", vlan: "10", smac: macA, dmac: macB}},
		{n.b, ba(pktbuild.Frame{SrcIP: ip("10.0.0.2"), DstIP: ip("10.0.0.1"), Proto: pktbuild.UDP, SPort: 53, DPort: 5353, Size: 200}), 50,
			nfRow{proto: "17", src: "10.0.0.2", dst: "10.0.0.1", sport: "53", dport: "5353", in: "2", out: "1", flags: "........", vlan: "10", smac: macB, dmac: macA}},
		{n.a, icmp, 10, nfRow{proto: "1", src: "10.0.0.1", dst: "10.0.0.2", sport: "0", dport: "8.0", in: "1", out: "2", flags: "........", vlan: "10", smac: macA, dmac: macB}},
		{n.a, ab(pktbuild.Frame{SrcIP: ip("fd00::a"), DstIP: ip("fd00::b"), Proto: pktbuild.UDP, SPort: 1000, DPort: 2000, Size: 300}), 20,
			nfRow{proto: "17", src: "fd00::a", dst: "fd00::b", sport: "1000", dport: "2000", in: "1", out: "2", flags: "........", vlan: "10", smac: macA, dmac: macB}},
		{n.b, ba(pktbuild.Frame{SrcIP: ip("fd00::b"), DstIP: ip("fd00::a"), Proto: pktbuild.ICMPv6, ICMPType: 129, Size: 118}), 5,
			nfRow{proto: "58", src: "fd00::b", dst: "fd00::a", sport: "0", dport: "129.0", in: "2", out: "1", flags: "........", vlan: "10", smac: macB, dmac: macA}},
		// Not IP: broadcast, flooded (egress 0).
		{n.a, pktbuild.Frame{Src: n.ma, Dst: vswitch.Broadcast, EtherType: 0x88b5, Size: 100}, 3,
			nfRow{proto: "0", src: "0.0.0.0", dst: "0.0.0.0", sport: "0", dport: "0", in: "1", out: "0", flags: "........", vlan: "10", smac: macA, dmac: "ff:ff:ff:ff:ff:ff"}},
	}
	// Send the flows interleaved, in batches, as guests would.
	for round := 0; ; round++ {
		sent := false
		for _, x := range tr {
			if k := min(x.count-round*8, 8); k > 0 {
				n.send(x.in, x.f, k)
				sent = true
			}
		}
		if !sent {
			break
		}
	}
	// Expected rows: one per flow (the TCP frames are one flow), packets
	// and octets (IP: the frame less its 14-byte Ethernet header) summed.
	var want []nfRow
	var pk, by uint64
	for _, x := range tr {
		pk += uint64(x.count)
		by += uint64(x.count * (x.f.Size - 14))
		if x.want.proto == "" {
			continue
		}
		w := x.want
		w.pkts, w.bytes = strconv.FormatUint(pk, 10), strconv.FormatUint(by, 10)
		want = append(want, w)
		pk, by = 0, 0
	}
	e.Close() // every flow out
	// The switch's own counters for this traffic.
	var swPk, swBy uint64
	for name, h := range map[string]*vswitch.PortHandle{"a": n.a, "b": n.b} {
		c := h.Counters()
		swPk += c.RxPackets - before[name].RxPackets
		swBy += c.RxBytes - before[name].RxBytes
	}
	nc.drained()
	file := nc.stop()
	t.Logf("nfcapd: %s", nc.stderr.String())
	got := nfdump(t, file)
	key := func(r nfRow) string { return r.proto + r.src + r.sport }
	slices.SortFunc(got, func(a, b nfRow) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(want, func(a, b nfRow) int { return strings.Compare(key(a), key(b)) })
	if len(got) != len(want) {
		t.Fatalf("nfdump lists %d flows, want %d:\n%v", len(got), len(want), got)
	}
	var nfPk, nfBy uint64
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("flow %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
		p, _ := strconv.ParseUint(got[i].pkts, 10, 64)
		b, _ := strconv.ParseUint(got[i].bytes, 10, 64)
		nfPk, nfBy = nfPk+p, nfBy+b
	}
	// nfdump's bytes are IP octets (octetDeltaCount); the switch counts
	// frames, 14 bytes of Ethernet header more each.
	if nfPk != swPk || nfBy+14*nfPk != swBy {
		t.Errorf("nfdump: %d packets, %d bytes (+14 per packet: %d); switch counters: %d packets, %d bytes", nfPk, nfBy, nfBy+14*nfPk, swPk, swBy)
	}
	t.Logf("%d flows, %d packets, %d IP bytes, %d frame bytes: as the switch counted", len(got), nfPk, nfBy, swBy)
}

// TestNfdumpSampling: with 1-in-10 sampling nfdump scales the counts
// back by the samplingInterval the exporter announces.
func TestNfdumpSampling(t *testing.T) {
	nc := startNfcapd(t)
	n := newTestNet(t, nil)
	e := New(n.sw, Options{})
	if err := e.Apply(Config{Enabled: true, Collectors: []string{nc.addr()}, Sampling: 10}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		n.send(n.a, n.udp(9, 500), 50)
	}
	e.Close()
	nc.drained()
	rows := nfdump(t, nc.stop())
	if len(rows) != 1 || rows[0].pkts != "1000" || rows[0].bytes != strconv.Itoa(1000*(500-14)) {
		t.Fatalf("1000 frames sampled 1 in 10: nfdump lists %+v", rows)
	}
}

// TestNfdumpTemplateRefresh: a collector that starts after the exporter
// (or restarts) missed the templates; it reads the flows once they are
// sent again (RFC 7011 §8.4), TemplateRefresh after the last time.
//
// The exporter's ticker is off (Tick of an hour): templates go out only in
// Apply and in the test's Flush calls, so nothing is sent while nfcapd
// starts, however long that takes. Should its start outlast the refresh
// interval (a loaded machine), the first flow's Flush carries templates,
// the premise is gone, and the test runs again with a longer interval.
func TestNfdumpTemplateRefresh(t *testing.T) {
	for _, refresh := range []time.Duration{500 * time.Millisecond, 5 * time.Second, 30 * time.Second} {
		if nfdumpTemplateRefresh(t, refresh) {
			return
		}
	}
	t.Fatal("nfcapd never started within the template refresh interval (30 s)")
}

// nfdumpTemplateRefresh runs TestNfdumpTemplateRefresh's case with the
// given refresh interval; false: nfcapd took longer than it to start.
func nfdumpTemplateRefresh(t *testing.T, refresh time.Duration) bool {
	port := freeUDPPort(t)
	n := newTestNet(t, nil)
	e := New(n.sw, Options{Tick: time.Hour})
	defer e.Close()
	if err := e.Apply(Config{Enabled: true, Collectors: []string{"127.0.0.1:" + strconv.Itoa(port)}, TemplateRefresh: refresh}); err != nil {
		t.Fatal(err)
	}
	applied := time.Now() // the first templates went out before, to nobody
	if st := e.Stats(); st.Templates != 1 {
		t.Fatalf("%d template messages after Apply, want 1", st.Templates)
	}
	nc := startNfcapdOn(t, port)
	n.send(n.a, n.udp(1, 100), 5)
	e.Flush() // data nfcapd cannot read yet
	if st := e.Stats(); st.Templates != 1 {
		t.Logf("nfcapd took longer to start than the template refresh (%v): the first flow went out with templates; again with a longer refresh", refresh)
		nc.stop()
		return false
	}
	time.Sleep(refresh - time.Since(applied)) // the refresh is due (the exporter reads the same clock)
	n.send(n.a, n.udp(2, 100), 7)
	e.Flush() // the templates again, then this flow
	if st := e.Stats(); st.Templates < 2 {
		t.Fatalf("%d template messages: no refresh %v after the first", st.Templates, refresh)
	}
	nc.drained()
	rows := nfdump(t, nc.stop())
	if len(rows) != 1 || rows[0].sport != "2" || rows[0].pkts != "7" {
		t.Fatalf("after the refresh nfdump lists %+v, want the second flow (7 packets)", rows)
	}
	return true
}
