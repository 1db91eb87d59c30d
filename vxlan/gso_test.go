package vxlan

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// gsoRun cuts a batch into runs that may leave as one super-packet: one
// VTEP, one flow, one length but a shorter last, at most gsoMaxSegs and
// an IP packet's worth of bytes.
func TestGSORun(t *testing.T) {
	p := &Port{ipLen: ipv4Len}
	a, c := vtepAddr{15: 1}, vtepAddr{15: 2}
	type msg struct {
		dst  vtepAddr
		fh   uint64
		ilen int32
	}
	cases := []struct {
		name string
		msgs []msg
		want []int // the ends of the runs
	}{
		{"one", []msg{{a, 1, 100}}, []int{1}},
		{"same", []msg{{a, 1, 100}, {a, 1, 100}, {a, 1, 100}}, []int{3}},
		{"shorter last", []msg{{a, 1, 100}, {a, 1, 100}, {a, 1, 60}, {a, 1, 100}}, []int{3, 4}},
		{"longer ends", []msg{{a, 1, 100}, {a, 1, 200}, {a, 1, 200}}, []int{1, 3}},
		{"other VTEP", []msg{{a, 1, 100}, {c, 1, 100}, {c, 1, 100}}, []int{1, 3}},
		{"other flow", []msg{{a, 1, 100}, {a, 2, 100}, {a, 1, 100}}, []int{1, 2, 3}},
	}
	for _, tc := range cases {
		b := newTxBatch(len(tc.msgs), false)
		for i, m := range tc.msgs {
			b.dst[i], b.fh[i], b.ilen[i] = m.dst, m.fh, m.ilen
		}
		var got []int
		for k := 0; k < len(tc.msgs); {
			k = p.gsoRun(b, k, len(tc.msgs))
			got = append(got, k)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: runs end at %v, want %v", tc.name, got, tc.want)
		}
	}
	// Bounds: segments, and the IP packet's 65535 bytes.
	b := newTxBatch(200, false)
	for i := range 200 {
		b.dst[i], b.fh[i], b.ilen[i] = a, 1, 64
	}
	if e := p.gsoRun(b, 0, 200); e != gsoMaxSegs {
		t.Errorf("64-byte frames: a run of %d, want %d", e, gsoMaxSegs)
	}
	for i := range 200 {
		b.ilen[i] = 9000
	}
	if e, want := p.gsoRun(b, 0, 200), (ipMax-ipv4Len-udpLen)/(HdrLen+9000); e != want {
		t.Errorf("9000-byte frames: a run of %d, want %d", e, want)
	}
}

// recorder is a switch port that keeps a copy of every frame.
type recorder struct {
	mu  sync.Mutex
	got [][]byte
}

func (r *recorder) Caps() vswitch.Caps { return 0 }
func (r *recorder) Send(fs []vswitch.Frame) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range fs {
		r.got = append(r.got, append([]byte(nil), f.Data...))
	}
	return len(fs)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = nil
}

func (r *recorder) frames() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.got...)
}

// tunnel opens port A (in the test's namespace, local la, not started)
// and port B (in namespace ns, local lb, started on a switch whose other
// port is to), VNI 100 as the native VLAN 10 on both, each flooding to
// the other; noGSO is A's Config.NoUDPGSO. The caller closes both.
func tunnel(t testing.TB, ns string, la, lb netip.Addr, noGSO bool, to vswitch.Port) (pa, pb *Port) {
	t.Helper()
	vnis := map[uint32]uint16{100: 10}
	pa, err := Open(Config{Local: la, VNIs: vnis, NativeVLAN: 10, Remotes: []netip.Addr{lb}, NoUDPGSO: noGSO})
	if err != nil {
		t.Fatal(err)
	}
	if err := inNetns(t, ns, func() (err error) {
		pb, err = Open(Config{Local: lb, VNIs: vnis, NativeVLAN: 10, Remotes: []netip.Addr{la}})
		return err
	}); err != nil {
		pa.Close()
		t.Fatal(err)
	}
	sw := vswitch.New(vswitch.Config{})
	ph, err := sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeAccess, PVID: 10}, pb)
	if err == nil {
		_, err = sw.AddPort(vswitch.PortConfig{Name: "to", Mode: vswitch.ModeAccess, PVID: 10}, to)
	}
	if err != nil {
		pa.Close()
		pb.Close()
		t.Fatal(err)
	}
	pb.Start(ph)
	return pa, pb
}

// gsoPair is tunnel with A started and a recorder behind B, closed when
// the test ends, and A's path to B warmed up: single frames are sent
// until B has one and, with resolve, A has its next hop (a single packet
// left through the device). While the kernel resolves B's address, it
// holds only so much for the neighbour (unres_qlen_bytes) and drops the
// rest, as for its own vxlan device; the tests count exactly only what
// they send after this, so what the warm-up lost and what still arrives
// of it (the recorder is emptied once B's count settles) is not theirs.
func gsoPair(t *testing.T, ns string, la, lb netip.Addr, noGSO, resolve bool) (pa, pb *Port, rec *recorder) {
	t.Helper()
	rec = &recorder{}
	pa, pb = tunnel(t, ns, la, lb, noGSO, rec)
	t.Cleanup(func() { pa.Close(); pb.Close() })
	pa.Start(nil) // resolves next hops; receives nothing here
	if !waitFor(30*time.Second, func() bool {
		sendAll(t, pa, burst(0, 1))
		return len(rec.frames()) > 0 && (!resolve || pa.Stats().TxDirect > 0)
	}) {
		t.Fatalf("A's path to B not warmed up in 30 s: A %+v; B %+v", pa.Stats(), pb.Stats())
	}
	for prev := -1; prev != len(rec.frames()); time.Sleep(300 * time.Millisecond) {
		prev = len(rec.frames())
	}
	rec.reset()
	return pa, pb, rec
}

// underlay is a veth pair NAME0 (here, 10.N.0.1/24) and NAME1 (in a new
// namespace, 10.N.0.2/24), of MTU mtu unless 0.
func underlay(t testing.TB, name string, n int, mtu int) (ns string, la, lb netip.Addr) {
	t.Helper()
	netnstest.Need(t)
	ns = netnstest.New(t, name)
	netnstest.Veth(t, name+"0", ns, name+"1")
	if mtu > 0 {
		netnstest.Run(t, "ip", "link", "set", name+"0", "mtu", fmt.Sprint(mtu))
		netnstest.Run(t, "ip", "-n", ns, "link", "set", name+"1", "mtu", fmt.Sprint(mtu))
	}
	la, lb = netip.AddrFrom4([4]byte{10, byte(n), 0, 1}), netip.AddrFrom4([4]byte{10, byte(n), 0, 2})
	netnstest.Run(t, "ip", "addr", "add", la.String()+"/24", "dev", name+"0")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", lb.String()+"/24", "dev", name+"1")
	return ns, la, lb
}

// sendAll sends frames fs through p and fails the test unless it took
// them all.
func sendAll(t testing.TB, p *Port, fs [][]byte) {
	t.Helper()
	frames := make([]vswitch.Frame, len(fs))
	for i := range fs {
		frames[i] = vswitch.Frame{Data: fs[i]}
	}
	if got := p.Send(frames); got != len(fs) {
		t.Fatalf("Send took %d of %d frames: %+v", got, len(fs), p.Stats())
	}
}

// burst is n UDP frames of one flow, marked with the burst and their
// place in it, 1000 bytes each but the last (600).
func burst(round byte, n int) [][]byte { return burstOf(round, n, 1000) }

// burstOf is burst with frames of size bytes (the last 600).
func burstOf(round byte, n, size0 int) [][]byte {
	fs := make([][]byte, n)
	for i := range fs {
		size := size0
		if i == n-1 {
			size = 600
		}
		f := make([]byte, size)
		copy(f[0:6], []byte{2, 0, 0, 0, 0xbb, 1}) // unknown unicast: B's flood list
		copy(f[6:12], []byte{2, 0, 0, 0, 0xaa, 1})
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := f[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		copy(ip[12:], []byte{192, 168, 0, 1, 192, 168, 0, 2})
		binary.BigEndian.PutUint16(ip[20:], 5000)
		binary.BigEndian.PutUint16(ip[22:], 6000)
		for j := 28; j < len(ip); j++ {
			ip[j] = byte(j) ^ round
		}
		ip[28], ip[29] = round, byte(i)
		fs[i] = f
	}
	return fs
}

// Two hvnet ports over a veth pair, IPv4 and IPv6 underlays: bursts of
// one flow leave A as UDP GSO super-packets (once A has resolved B's
// MAC) and reach B's switch as they were sent, every frame, in order,
// byte for byte, through B's UDP GRO.
func TestGSOPair(t *testing.T) {
	netnstest.Need(t)
	ns := netnstest.New(t, "vxg")
	netnstest.Veth(t, "vxg0", ns, "vxg1")
	netnstest.Run(t, "ip", "addr", "add", "10.12.0.1/24", "dev", "vxg0")
	netnstest.Run(t, "ip", "addr", "add", "fd00:12::1/64", "dev", "vxg0", "nodad")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.12.0.2/24", "dev", "vxg1")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "fd00:12::2/64", "dev", "vxg1", "nodad")
	for _, fam := range []struct {
		name string
		a, b netip.Addr
	}{
		{"v4", netip.MustParseAddr("10.12.0.1"), netip.MustParseAddr("10.12.0.2")},
		{"v6", netip.MustParseAddr("fd00:12::1"), netip.MustParseAddr("fd00:12::2")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			for _, off := range []bool{false, true} {
				t.Run(map[bool]string{false: "gso", true: "nogso"}[off], func(t *testing.T) {
					testGSOPair(t, ns, fam.a, fam.b, off)
				})
			}
		})
	}
}

func testGSOPair(t *testing.T, ns string, la, lb netip.Addr, off bool) {
	pa, pb, rec := gsoPair(t, ns, la, lb, off, !off)
	const n = 40
	round := byte(0)
	send := func() [][]byte {
		round++
		fs := burst(round, n)
		sendAll(t, pa, fs)
		return fs
	}
	baseA, baseB := pa.Stats().TxPackets, pb.Stats().RxPackets
	last := send()
	want := n
	if !waitFor(30*time.Second, func() bool { return len(rec.frames()) >= want }) {
		t.Fatalf("B got %d of %d frames; A %+v; B %+v", len(rec.frames()), want, pa.Stats(), pb.Stats())
	}
	got := rec.frames()
	if len(got) != want {
		t.Errorf("B got %d frames, want %d", len(got), want)
	}
	for i, f := range got[len(got)-n:] {
		if !bytes.Equal(f, last[i]) {
			t.Errorf("frame %d of the last burst differs:\n got % x\nwant % x", i, f[:min(len(f), 64)], last[i][:64])
		}
	}
	// A burst of n flows, one frame each: single packets, through the
	// AF_PACKET socket too (with UDP GSO on), the UDP checksum over IPv6
	// completed by the kernel (B's would drop a wrong or zero one).
	round++
	single := burst(round, n)
	for i := range single {
		binary.BigEndian.PutUint16(single[i][14+20:], uint16(7000+i))
	}
	direct := pa.Stats().TxDirect
	sendAll(t, pa, single)
	want += n
	if !waitFor(30*time.Second, func() bool { return len(rec.frames()) >= want }) {
		t.Fatalf("B got %d of %d frames; A %+v; B %+v", len(rec.frames()), want, pa.Stats(), pb.Stats())
	}
	got = rec.frames()
	for i, f := range got[len(got)-n:] {
		if !bytes.Equal(f, single[i]) {
			t.Errorf("single frame %d differs:\n got % x\nwant % x", i, f[:min(len(f), 64)], single[i][:64])
		}
	}
	if d := pa.Stats().TxDirect - direct; off && d != 0 || !off && d != n {
		t.Errorf("UDP GSO off %v: %d of %d single packets written to the device", off, d, n)
	}
	sa, sb := pa.Stats(), pb.Stats()
	t.Logf("gso off %v: %d bursts; A: %d packets, %d GSO packets, %d fallbacks; B: %d packets, %d GRO datagrams",
		off, round, sa.TxPackets, sa.TxGSOPackets, sa.TxGSOFallbacks, sb.RxPackets, sb.RxGROPackets)
	switch {
	case off && (sa.TxGSOPackets != 0 || sb.RxGROPackets != 0):
		t.Errorf("UDP GSO off, yet A sent %d super-packets and B received %d", sa.TxGSOPackets, sb.RxGROPackets)
	case !off && (sa.TxGSOPackets == 0 || sb.RxGROPackets == 0):
		t.Errorf("A sent %d super-packets, B received %d coalesced datagrams: want both", sa.TxGSOPackets, sb.RxGROPackets)
	case sa.TxErrors != 0 || sa.TxGSOFallbacks != 0:
		t.Errorf("A: %d errors, %d super-packets refused", sa.TxErrors, sa.TxGSOFallbacks)
	case sa.TxPackets-baseA != 2*n || sb.RxPackets-baseB != 2*n:
		t.Errorf("after the warm-up A sent %d packets, B received %d: want %d", sa.TxPackets-baseA, sb.RxPackets-baseB, 2*n)
	}
}

// Linux's vxlan device (whose socket has no UDP GRO) receives
// super-packets as the packets they carry: a burst of 40 echo requests
// of one flow (the same ICMP checksum: the flow hash reads it) leaves
// hvnet as super-packets and the kernel answers every one.
func TestGSOKernel(t *testing.T) {
	ns := kernelPeer(t)
	r := newRig(t, Config{Learning: true})
	target := [4]byte{192, 168, 100, 2}
	if !pingOut(t, r.h10, target) {
		t.Fatal("no echo reply from the kernel's VXLAN")
	}
	_ = ns
	var mac [6]byte
	for _, f := range r.h10.frames() {
		if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && [4]byte(f[28:32]) == target {
			mac = [6]byte(f[22:28])
		}
	}
	const n = 40
	var id uint16 = 0x5000
	replies := func(id uint16) int {
		seen := map[uint16]bool{}
		for _, f := range r.h10.frames() {
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 1 && f[34] == 0 &&
				binary.BigEndian.Uint16(f[38:]) == id {
				seen[binary.BigEndian.Uint16(f[40:])] = true
			}
		}
		return len(seen)
	}
	ok := waitFor(10*time.Second, func() bool {
		id++
		fs := make([]vswitch.Frame, n)
		for i := range fs {
			f := echoRequest(mac, r.h10.mac, r.h10.ip, target, id)
			icmp := f[34:]
			// seq i and its complement in the data: the checksum, and so
			// the flow hash, are the same for the whole burst.
			binary.BigEndian.PutUint16(icmp[6:], uint16(i))
			binary.BigEndian.PutUint16(icmp[8:], ^uint16(i))
			binary.BigEndian.PutUint16(icmp[2:], 0)
			binary.BigEndian.PutUint16(icmp[2:], ^csum(icmp))
			fs[i] = vswitch.Frame{Data: f}
		}
		gso := r.vx.Stats().TxGSOPackets
		r.h10.h.Input(fs)
		return r.vx.Stats().TxGSOPackets > gso
	})
	if !ok {
		t.Fatalf("no super-packet sent: %+v", r.vx.Stats())
	}
	if !waitFor(30*time.Second, func() bool { return replies(id) == n }) {
		t.Errorf("the kernel answered %d of the %d echo requests sent as super-packets: %+v", replies(id), n, r.vx.Stats())
	}
	if st := r.vx.Stats(); st.TxGSOFallbacks != 0 || st.TxErrors != 0 {
		t.Errorf("refused: %+v", st)
	}
}

// group puts each (VTEP, flow)'s messages together, in their order, and
// moves every message's pointers with it: random batches.
func TestGroup(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		n := 1 + rng.IntN(txBatchSize)
		b := newTxBatch(txBatchSize, false)
		nflows := 1 + rng.IntN(8)
		if round%5 == 0 {
			nflows = 1 + rng.IntN(txBatchSize)
		}
		for k := range n {
			f := rng.IntN(nflows)
			b.dst[k] = vtepAddr{15: byte(f % 3)}
			b.fh[k] = uint64(f / 3)
			b.frame[k] = int32(k)
			b.ilen[k] = int32(1000 + k)
		}
		b.group(n)
		seen := map[[2]uint64]bool{}
		last := map[[2]uint64]int32{}
		slots := map[int32]bool{}
		for k := range n {
			key := [2]uint64{uint64(b.dst[k][15]), b.fh[k]}
			if k > 0 && seen[key] && (b.dst[k-1] != b.dst[k] || b.fh[k-1] != b.fh[k]) {
				t.Fatalf("round %d: the messages of %v are not together", round, key)
			}
			seen[key] = true
			if l, ok := last[key]; ok && b.frame[k] <= l {
				t.Fatalf("round %d: %v's messages out of order", round, key)
			}
			last[key] = b.frame[k]
			s := b.slot[k]
			if s != b.frame[k] || b.ilen[k] != 1000+s || slots[s] {
				t.Fatalf("round %d: message %d: slot %d, frame %d, length %d", round, k, s, b.frame[k], b.ilen[k])
			}
			slots[s] = true
			if b.msgs[k].Hdr.Iov != &b.iovs[2*s] || b.msgs[k].Hdr.Name != (*byte)(unsafe.Pointer(&b.names[s])) {
				t.Fatalf("round %d: message %d does not point at slot %d", round, k, s)
			}
		}
	}
}

// Two flows interleaved frame by frame still leave as super-packets
// (the batch is grouped by flow), and each flow's frames arrive in
// their order.
func TestGSOInterleaved(t *testing.T) {
	ns, la, lb := underlay(t, "vxi", 14, 0)
	pa, _, rec := gsoPair(t, ns, la, lb, false, true)
	const n = 30
	sent := 0
	round := byte(0)
	ok := waitFor(10*time.Second, func() bool {
		round++
		a, c := burst(round, n), burst(round, n)
		fs := make([][]byte, 0, 2*n)
		for i := range n {
			binary.BigEndian.PutUint16(c[i][14+20:], 5001) // the second flow: another source port
			fs = append(fs, a[i], c[i])
		}
		before := pa.Stats().TxGSOPackets
		sendAll(t, pa, fs)
		sent += 2 * n
		return pa.Stats().TxGSOPackets >= before+2
	})
	if !ok {
		t.Fatalf("no super-packets for two interleaved flows: %+v", pa.Stats())
	}
	if !waitFor(30*time.Second, func() bool { return len(rec.frames()) >= sent }) {
		t.Fatalf("B got %d of %d frames", len(rec.frames()), sent)
	}
	// Per flow (inner UDP source port), the places in the burst come in
	// order, burst after burst.
	next := map[uint16]int{}
	for _, f := range rec.frames() {
		sport := binary.BigEndian.Uint16(f[14+20:])
		at := int(f[14+28])<<8 | int(f[14+29])
		if at < next[sport] {
			t.Fatalf("flow %d: frame %d after %d", sport, at, next[sport])
		}
		next[sport] = at + 1
	}
}

// A link whose MTU is below underlay-mtu: runs whose packets the link
// carries leave as super-packets; longer ones go one by one through the
// raw socket (which fragments them, as before UDP GSO), never as
// segments the link would drop.
func TestGSOLinkMTU(t *testing.T) {
	ns, la, lb := underlay(t, "vxm", 15, 1100)
	pa, _, rec := gsoPair(t, ns, la, lb, false, true)
	const n = 20
	sent := 0
	round := byte(0)
	send := func(size int) {
		round++
		sendAll(t, pa, burstOf(round, n, size))
		sent += n
	}
	// 1000-byte frames: 1036-byte packets, which the link carries.
	if !waitFor(10*time.Second, func() bool { send(1000); return pa.Stats().TxGSOPackets > 0 }) {
		t.Fatalf("no super-packets on a link of MTU 1100: %+v", pa.Stats())
	}
	gso := pa.Stats().TxGSOPackets
	send(1200) // 1236-byte packets: fragmented by the raw socket
	if !waitFor(30*time.Second, func() bool { return len(rec.frames()) >= sent }) {
		t.Fatalf("B got %d of %d frames: %+v", len(rec.frames()), sent, pa.Stats())
	}
	if st := pa.Stats(); st.TxGSOPackets != gso {
		t.Errorf("packets longer than the link's MTU left as %d super-packets", st.TxGSOPackets-gso)
	}
}

// A VTEP behind a multipath route gets no super-packets (the kernel
// spreads the flows over the next hops by source port; one next hop for
// every super-packet would not), and its packets still arrive.
func TestGSOMultipath(t *testing.T) {
	netnstest.Need(t)
	ns := netnstest.New(t, "vxe")
	netnstest.Veth(t, "vxe0", ns, "vxe0p")
	netnstest.Veth(t, "vxe1", ns, "vxe1p")
	netnstest.Run(t, "ip", "addr", "add", "10.16.0.1/24", "dev", "vxe0")
	netnstest.Run(t, "ip", "addr", "add", "10.16.1.1/24", "dev", "vxe1")
	netnstest.Run(t, "ip", "addr", "add", "10.16.9.1/32", "dev", "vxe0")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.16.0.2/24", "dev", "vxe0p")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.16.1.2/24", "dev", "vxe1p")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.16.9.2/32", "dev", "vxe0p")
	netnstest.Run(t, "ip", "route", "add", "10.16.9.2/32", "nexthop", "via", "10.16.0.2", "dev", "vxe0", "nexthop", "via", "10.16.1.2", "dev", "vxe1")
	netnstest.Run(t, "ip", "-n", ns, "route", "add", "10.16.9.1/32", "via", "10.16.0.1", "dev", "vxe0p")
	la, lb := netip.MustParseAddr("10.16.9.1"), netip.MustParseAddr("10.16.9.2")
	// No next hop of its own for a multipath route: warmed up through
	// the raw socket only.
	pa, _, rec := gsoPair(t, ns, la, lb, false, false)
	const n = 20
	for round := range byte(15) {
		sendAll(t, pa, burst(round, n))
		time.Sleep(100 * time.Millisecond) // past a lookup of the next hop
	}
	if !waitFor(30*time.Second, func() bool { return len(rec.frames()) >= 15*n }) {
		t.Fatalf("B got %d of %d frames: %+v", len(rec.frames()), 15*n, pa.Stats())
	}
	if st := pa.Stats(); st.TxGSOPackets != 0 {
		t.Errorf("%d super-packets to a VTEP behind a multipath route", st.TxGSOPackets)
	}
}
