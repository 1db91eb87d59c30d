package vxlan

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// The IPv6 underlay: hvnet at fd00:9::1 here, Linux's VXLAN at fd00:9::2
// in a namespace, fd00:9::3 a stranger there.
var (
	v6Local    = netip.MustParseAddr("fd00:9::1")
	v6Kernel   = netip.MustParseAddr("fd00:9::2")
	v6Stranger = netip.MustParseAddr("fd00:9::3")
)

// kernelPeer6 is kernelPeer over IPv6: a namespace whose Linux VXLAN
// device (VNI 100, no learning, remote hvnet's address, extra ip link
// options such as udp6zerocsumtx) carries 192.168.100.2/24, reached over
// a veth pair (vx6 here, vx6p there). The addresses skip duplicate
// address detection (nodad): a tentative address cannot be bound.
func kernelPeer6(t *testing.T, extra ...string) string {
	t.Helper()
	netnstest.Need(t)
	ns := netnstest.New(t, "vxk6")
	netnstest.Veth(t, "vx6", ns, "vx6p")
	netnstest.Run(t, "ip", "addr", "add", v6Local.String()+"/64", "dev", "vx6", "nodad")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", v6Kernel.String()+"/64", "dev", "vx6p", "nodad")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", v6Stranger.String()+"/64", "dev", "vx6p", "nodad")
	args := []string{"ip", "-n", ns, "link", "add", "vxlan100", "type", "vxlan", "id", "100", "local", v6Kernel.String(),
		"remote", v6Local.String(), "dstport", "4789", "nolearning"}
	netnstest.Run(t, append(args, extra...)...)
	// No IPv6 inside the tunnel: the kernel's neighbour discovery would
	// cross it beside the tests' own frames.
	netnstest.Exec(t, ns, "sysctl", "-qw", "net.ipv6.conf.vxlan100.disable_ipv6=1")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "192.168.100.2/24", "dev", "vxlan100")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "vxlan100", "up")
	return ns
}

func newRig6(t *testing.T, cfg Config) *rig {
	t.Helper()
	cfg.Local = v6Local
	if cfg.Remotes == nil {
		cfg.Remotes = []netip.Addr{v6Kernel}
	}
	return newRig(t, cfg)
}

// arpRequest is a broadcast ARP request from mac/ip for target.
func arpRequest(mac [6]byte, ip, target [4]byte) []byte {
	f := make([]byte, 60)
	copy(f[0:6], broadcast[:])
	copy(f[6:12], mac[:])
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1)
	copy(a[8:14], mac[:])
	copy(a[14:18], ip[:])
	copy(a[24:28], target[:])
	return f
}

// echoRequest is an ICMP echo request (id, seq 1, 32 bytes of data).
func echoRequest(dst, src [6]byte, from, to [4]byte, id uint16) []byte {
	f := make([]byte, 14+20+8+32)
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8], ip[9] = 64, 1
	copy(ip[12:16], from[:])
	copy(ip[16:20], to[:])
	binary.BigEndian.PutUint16(ip[10:], ^csum(ip[:20]))
	icmp := ip[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	binary.BigEndian.PutUint16(icmp[2:], ^csum(icmp))
	return f
}

// pingOut pings target from host h, behind hvnet's tunnel, as its stack
// would: an ARP request (flooded to the VTEPs), then an echo request to
// the MAC that answered. It reports whether the echo reply came.
func pingOut(t *testing.T, h *host, target [4]byte) bool {
	t.Helper()
	h.h.Input([]vswitch.Frame{{Data: arpRequest(h.mac, h.ip, target)}})
	var mac [6]byte
	found := waitFor(30*time.Second, func() bool {
		for _, f := range h.frames() {
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 && [4]byte(f[28:32]) == target {
				mac = [6]byte(f[22:28])
				return true
			}
		}
		return false
	})
	if !found {
		t.Errorf("no ARP reply from %v", netip.AddrFrom4(target))
		return false
	}
	const id = 0x4242
	h.h.Input([]vswitch.Frame{{Data: echoRequest(mac, h.mac, h.ip, target, id)}})
	return waitFor(30*time.Second, func() bool {
		for _, f := range h.frames() {
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 1 && [4]byte(f[26:30]) == target &&
				f[34] == 0 && binary.BigEndian.Uint16(f[38:]) == id {
				return true
			}
		}
		return false
	})
}

// waitFor polls cond until it holds (true) or d passes (false). The tests
// give it 30 s where cond normally holds in milliseconds: a loaded machine
// under -race delays sockets and goroutines by seconds, and a poll that
// succeeds ends at once.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// Linux's VXLAN over IPv6 and hvnet's ping each other through the
// tunnel, both ways: the kernel checks the UDP checksum hvnet's packets
// carry (it refuses zero by default) and hvnet learns the kernel's MAC
// behind its IPv6 VTEP.
func TestKernelPing6(t *testing.T) {
	ns := kernelPeer6(t)
	r := newRig6(t, Config{Learning: true})
	if out, err := netnstestExec(ns, "ping", "-c", "3", "-W", "2", "-i", "0.2", "192.168.100.1"); err != nil {
		t.Fatalf("ping from the kernel's VXLAN: %v\n%s", err, out)
	}
	if !pingOut(t, r.h10, [4]byte{192, 168, 100, 2}) {
		t.Fatal("no echo reply from the kernel's side")
	}
	st := r.vx.Stats()
	if st.RxPackets < 5 || st.TxPackets < 5 || st.RemoteMACs != 1 || st.TxErrors != 0 {
		t.Errorf("stats after the pings: %+v", st)
	}
	if ms := r.vx.RemoteMACs(); len(ms) != 1 || ms[0].VNI != 100 || ms[0].VTEP != v6Kernel || !ms[0].Learned {
		t.Errorf("remote MACs = %+v", ms)
	}
	for _, f := range r.h20.frames() {
		t.Errorf("VLAN 20's host got a frame of VNI 100: % x", f[:min(len(f), 42)])
	}
	// The kernel refused nothing (its UDP checksum errors stay 0).
	if out := netnstest.Exec(t, ns, "nstat", "-az", "Udp6InCsumErrors"); !strings.Contains(out, "Udp6InCsumErrors                0") {
		t.Errorf("the kernel counted UDP checksum errors:\n%s", out)
	}
}

// Zero UDP checksums over IPv6 (RFC 6935/6936) only where both ends say
// so, as Linux's udp6zerocsumtx/rx: a kernel that sends zero is not heard
// by a port that does not accept it (the kernel drops the packets before
// the port, as Udp6InCsumErrors) and is by one that does; a port that
// sends zero reaches a kernel that accepts it.
func TestZeroChecksum6(t *testing.T) {
	ns := kernelPeer6(t, "udp6zerocsumtx", "udp6zerocsumrx")
	ping := func() error {
		_, err := netnstestExec(ns, "ping", "-c", "2", "-W", "1", "-i", "0.2", "192.168.100.1")
		return err
	}
	t.Run("refused", func(t *testing.T) {
		r := newRig6(t, Config{Learning: true})
		if ping() == nil {
			t.Error("ping went through a port that refuses zero checksums")
		}
		if st := r.vx.Stats(); st.RxPackets != 0 {
			t.Errorf("the port received %d packets with zero checksums", st.RxPackets)
		}
		r.vx.Close()
	})
	t.Run("accepted", func(t *testing.T) {
		r := newRig6(t, Config{Learning: true, UDP6ZeroCsumRx: true, UDP6ZeroCsumTx: true})
		if err := ping(); err != nil {
			t.Fatalf("ping with zero checksums both ways: %v", err)
		}
		if !pingOut(t, r.h10, [4]byte{192, 168, 100, 2}) {
			t.Error("no echo reply from the kernel's side")
		}
	})
}

// What hvnet puts on an IPv6 underlay, read off the wire: UDP to 4789
// from a port of the inner flow (49152..65535), a correct UDP checksum, a
// flow label of the inner flow (the same for one flow, several for
// several), the frame whole behind the VXLAN header.
func TestWire6(t *testing.T) {
	ns := kernelPeer6(t)
	r := newRig6(t, Config{})
	var fd int
	if err := inNetns(t, ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IPV6)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		t.Fatal(err)
	}
	flow := func(sport uint16) []byte {
		f := make([]byte, 14+20+8+100)
		copy(f[0:6], broadcast[:])
		copy(f[6:12], r.h10.mac[:])
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := f[14:]
		ip[0], ip[9] = 0x45, 17
		copy(ip[12:], []byte{192, 168, 100, 1, 192, 168, 100, 9})
		binary.BigEndian.PutUint16(ip[20:], sport)
		binary.BigEndian.PutUint16(ip[22:], 9)
		f[len(f)-1] = 0x5a
		return f
	}
	var got []seen6
	partial := 0
	// Two passes: the first while the port's next hop to the kernel is
	// (most likely) not yet resolved, so its packets go through the raw
	// socket; the second once it is, through the underlay device.
	for pass := range 2 {
		if pass == 1 {
			if !waitFor(20*time.Second, func() bool {
				r.h10.h.Input([]vswitch.Frame{{Data: flow(999)}})
				return r.vx.Stats().TxDirect > 0
			}) {
				t.Fatal("the next hop to the kernel was not resolved in 20 s")
			}
			drain(fd)
			partial = 0
		}
		direct := r.vx.Stats().TxDirect
		got = wire6Pass(t, fd, r, flow, got[:0], &partial)
		if pass == 1 && (partial != len(got) || r.vx.Stats().TxDirect-direct != uint64(len(got))) {
			t.Errorf("%d of %d packets through the device, %d with the checksum to complete",
				r.vx.Stats().TxDirect-direct, len(got), partial)
		}
	}
	// The kernel took every packet's checksum, whichever way it came.
	if out := netnstest.Exec(t, ns, "nstat", "-az", "Udp6InCsumErrors"); !strings.Contains(out, "Udp6InCsumErrors                0") {
		t.Errorf("the kernel counted UDP checksum errors:\n%s", out)
	}
}

// drain reads fd until nothing is left in it.
func drain(fd int) {
	buf := make([]byte, 2048)
	for {
		if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
			return
		}
	}
}

// wire6Pass sends TestWire6's flows and checks each outer packet captured
// on fd, appending what it saw to got.
func wire6Pass(t *testing.T, fd int, r *rig, flow func(uint16) []byte, got []seen6, partial *int) []seen6 {
	t.Helper()
	for _, sp := range []uint16{1000, 1000, 2000, 3000, 4000, 5000} {
		sent := flow(sp)
		r.h10.h.Input([]vswitch.Frame{{Data: sent}})
		buf, oob := make([]byte, 2048), make([]byte, 256)
		for {
			n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			p := buf[14:n]
			if len(p) < 40+8 || p[6] != 17 || netip.AddrFrom16([16]byte(p[8:24])) != v6Local {
				continue
			}
			udp := p[40:]
			if binary.BigEndian.Uint16(udp[2:]) != DefaultPort {
				continue
			}
			if l := int(binary.BigEndian.Uint16(udp[4:])); l != len(udp) || l != udpLen+HdrLen+len(sent) {
				t.Fatalf("UDP length %d, datagram %d, want %d", l, len(udp), udpLen+HdrLen+len(sent))
			}
			if binary.BigEndian.Uint16(udp[6:]) == 0 {
				t.Error("UDP checksum zero")
			}
			if csumNotReady(t, oob[:oobn]) {
				// A packet handed to the underlay device with its checksum
				// to complete (CHECKSUM_PARTIAL) crosses a veth so: the
				// field holds the pseudo-header's sum, and whoever puts it
				// on a wire (the NIC, or the kernel before a device without
				// the offload) sums the datagram from it. Do that here.
				binary.BigEndian.PutUint16(udp[6:], ^csum(udp))
				*partial++
			}
			if udpChecksum6(p[8:24], p[24:40], udp) != 0 {
				t.Errorf("UDP checksum %#04x is not right", binary.BigEndian.Uint16(udp[6:]))
			}
			if vni, ok := parseHeader(udp[udpLen:]); !ok || vni != 100 || string(udp[udpLen+HdrLen:]) != string(sent) {
				t.Errorf("VXLAN header or frame wrong: % x", udp[udpLen:udpLen+HdrLen+20])
			}
			s := seen6{binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint32(p[0:]) & 0xfffff}
			if s.sport < sportLo || s.label == 0 {
				t.Errorf("source port %d, flow label %#x", s.sport, s.label)
			}
			got = append(got, s)
			break
		}
	}
	if got[0] != got[1] {
		t.Errorf("one flow, two outer headers: %+v %+v", got[0], got[1])
	}
	ports, labels := map[uint16]bool{}, map[uint32]bool{}
	for _, s := range got {
		ports[s.sport], labels[s.label] = true, true
	}
	if len(ports) < 4 || len(labels) < 4 {
		t.Errorf("5 flows took %d source ports and %d flow labels: %+v", len(ports), len(labels), got)
	}
	return got
}

// seen6 is what TestWire6 reads off one outer packet.
type seen6 struct {
	sport uint16
	label uint32
}

// csumNotReady says whether a captured packet's auxiliary data
// (PACKET_AUXDATA) marks its checksum as still to complete.
func csumNotReady(t *testing.T, oob []byte) bool {
	t.Helper()
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		t.Fatalf("capture's control messages: %v", err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
		}
	}
	t.Fatal("capture without PACKET_AUXDATA")
	return false
}

func htons(v uint16) uint16 { return v>>8 | v<<8 }

// udpChecksum6 sums a UDP datagram with its IPv6 pseudo-header (RFC 8200
// §8.1): 0 when its checksum is right.
func udpChecksum6(src, dst, udp []byte) uint16 {
	ph := make([]byte, 0, 40+len(udp))
	ph = append(ph, src...)
	ph = append(ph, dst...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(udp)))
	ph = append(ph, 0, 0, 0, 17)
	ph = append(ph, udp...)
	return ^csum(ph)
}

// udpFrom6 sends payload to hvnet's [fd00:9::1]:4789 from src in ns.
func udpFrom6(t *testing.T, ns string, src netip.Addr, payload []byte) {
	t.Helper()
	var fd int
	if err := inNetns(t, ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: src.As16()}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet6{Port: 4789, Addr: v6Local.As16()}); err != nil {
		t.Fatal(err)
	}
}

// Bad input over IPv6 is a counted drop, as over IPv4, the VTEP check
// included: a stranger's packets do not enter, and neither does a VNI's
// frame reach another VLAN.
func TestBadInput6(t *testing.T) {
	ns := kernelPeer6(t)
	r := newRig6(t, Config{})
	bad := vxPacket(100, 1, 0x88b5)
	bad[0] = 0x0c
	badRes := vxPacket(100, 2, 0x88b5)
	badRes[7] = 1
	noI := vxPacket(100, 3, 0x88b5)
	noI[0] = 0
	for _, c := range []struct {
		src     netip.Addr
		payload []byte
	}{
		{v6Kernel, []byte{8, 0, 0, 0}},
		{v6Kernel, vxPacket(100, 5, 0x88b5)[:20]},
		{v6Kernel, bad}, {v6Kernel, badRes}, {v6Kernel, noI},
		{v6Kernel, vxPacket(300, 6, 0x88b5)},
		{v6Stranger, vxPacket(100, 7, 0x88b5)},
		{v6Kernel, vxPacket(100, 4, 0x8100)},
		{v6Kernel, vxPacket(200, 8, 0x88b5)}, // good: VNI 200, VLAN 20 only
	} {
		udpFrom6(t, ns, c.src, c.payload)
	}
	want := Stats{RxPackets: 1, RxDropShort: 2, RxDropFlags: 3, RxDropUnknownVNI: 1, RxDropUnknownVTEP: 1, RxDropInnerTag: 1}
	var st Stats
	waitFor(30*time.Second, func() bool {
		st = r.vx.Stats()
		return st.RxPackets+st.RxDropShort+st.RxDropFlags+st.RxDropUnknownVNI+st.RxDropUnknownVTEP+st.RxDropInnerTag == 9
	})
	st.RxBytes = 0
	if st != want {
		t.Errorf("stats = %+v\nwant %+v", st, want)
	}
	crafted := func(fs [][]byte) (n int) {
		for _, f := range fs {
			if len(f) > 12 && f[6] == 2 && f[10] == 0x77 {
				n++
			}
		}
		return n
	}
	// The tunnel counts a packet before the switch delivers its frame:
	// wait for the good one (the bad ones went before it on the socket).
	waitFor(30*time.Second, func() bool { return crafted(r.h20.frames()) == 1 })
	if n := crafted(r.h10.frames()); n != 0 {
		t.Errorf("VLAN 10's host got %d frames from bad packets", n)
	}
	if n := crafted(r.h20.frames()); n != 1 {
		t.Errorf("VLAN 20's host got %d frames, want the one of VNI 200", n)
	}
	// A control plane's VTEP of the other family is refused and counted.
	if err := r.vx.AddFloodVTEP(100, netip.MustParseAddr("10.9.0.2")); err == nil || !strings.Contains(err.Error(), "want an IPv6 address") {
		t.Errorf("AddFloodVTEP(IPv4) on an IPv6 port: %v", err)
	}
	if err := r.vx.SetRemoteMAC(100, [6]byte{2, 1, 2, 3, 4, 5}, netip.MustParseAddr("10.9.0.2")); err == nil {
		t.Error("SetRemoteMAC(IPv4) on an IPv6 port: no error")
	}
	if st := r.vx.Stats(); st.WrongFamily != 2 {
		t.Errorf("WrongFamily = %d, want 2", st.WrongFamily)
	}
	// A VTEP added for a VNI is known: its packets enter.
	if err := r.vx.AddFloodVTEP(100, v6Stranger); err != nil {
		t.Fatal(err)
	}
	udpFrom6(t, ns, v6Stranger, vxPacket(100, 9, 0x88b5))
	if !waitFor(30*time.Second, func() bool { return crafted(r.h10.frames()) == 1 }) {
		t.Errorf("a packet from a VTEP added to the flood list did not enter: %+v", r.vx.Stats())
	}
	if vs := r.vx.RemoteVTEPs()[100]; len(vs) != 2 || vs[1] != v6Stranger {
		t.Errorf("VNI 100's flood list = %v", vs)
	}
}

// Over IPv6 the overhead is 56 bytes (70 with the inner Ethernet
// header): a frame that fits goes, one byte more is dropped and counted.
func TestOversize6(t *testing.T) {
	kernelPeer6(t)
	r := newRig6(t, Config{UnderlayMTU: 1500})
	frame := func(payload int) []byte {
		f := make([]byte, 14+payload)
		copy(f[0:6], broadcast[:])
		copy(f[6:12], r.h10.mac[:])
		binary.BigEndian.PutUint16(f[12:], 0x88b5)
		return f
	}
	r.h10.h.Input([]vswitch.Frame{{Data: frame(1500 - Overhead6 - 14)}, {Data: frame(1500 - Overhead6 - 14 + 1)}})
	st := r.vx.Stats()
	if st.TxPackets != 1 || st.TxDropOversize != 1 || st.TxErrors != 0 {
		t.Errorf("stats = %+v: want the frame that fits sent, the other counted", st)
	}
}

func TestOpenErrors6(t *testing.T) {
	vnis := map[uint32]uint16{5: 10}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Local: netip.MustParseAddr("fe80::1"), VNIs: vnis}, "not link-local"},
		{Config{Local: netip.MustParseAddr("ff02::1"), VNIs: vnis}, "want a unicast address"},
		{Config{Local: netip.MustParseAddr("::"), VNIs: vnis}, "want a unicast address"},
		{Config{Local: netip.MustParseAddr("2001:db8::1"), VNIs: vnis, Remotes: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
			"remote 10.0.0.1: want an IPv6 address, as local 2001:db8::1: one address family per port"},
		{Config{Local: netip.MustParseAddr("10.0.0.1"), VNIs: vnis, Remotes: []netip.Addr{netip.MustParseAddr("2001:db8::2")}},
			"remote 2001:db8::2: want an IPv4 address, as local 10.0.0.1"},
		{Config{Local: netip.MustParseAddr("2001:db8::1"), VNIs: vnis, Remotes: []netip.Addr{netip.MustParseAddr("fe80::2")}}, "not link-local"},
	} {
		if _, err := Open(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%v, %v) = %v, want %q", c.cfg.Local, c.cfg.Remotes, err, c.want)
		}
	}
	netnstest.Need(t)
	// An address that is not there yet: the error says what to check.
	_, err := Open(Config{Local: netip.MustParseAddr("2001:db8::77"), VNIs: vnis})
	if err == nil || !strings.Contains(err.Error(), "duplicate address detection") {
		t.Errorf("Open on an absent IPv6 address: %v", err)
	}
}

// Where a process of the namespace holds a flow label exclusively, the
// kernel refuses every label it does not own (net/ipv6/ip6_flowlabel.c,
// fl6_sock_lookup): the port then sends unlabelled, loses nothing and
// counts no error.
func TestFlowLabelRefused6(t *testing.T) {
	ns := kernelPeer6(t)
	r := newRig6(t, Config{Learning: true})
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// struct in6_flowlabel_req (include/uapi/linux/in6.h): destination,
	// label (network order), action GET, share EXCL, flags CREATE.
	const ipv6FlowlabelMgr, flActionGet, flShareExcl, flFlagCreate = 32, 0, 1, 1
	req := make([]byte, 32)
	binary.BigEndian.PutUint32(req[16:], 0x12345)
	req[20], req[21] = flActionGet, flShareExcl
	binary.NativeEndian.PutUint16(req[22:], flFlagCreate)
	if err := unix.SetsockoptString(fd, unix.IPPROTO_IPV6, ipv6FlowlabelMgr, string(req)); err != nil {
		// Some kernels (this project's build host's 6.18) refuse to make
		// one at all: then nothing can make the port's labels refused.
		t.Skipf("cannot hold a flow label exclusively here (IPV6_FLOWLABEL_MGR: %v)", err)
	}
	if out, err := netnstestExec(ns, "ping", "-c", "3", "-W", "2", "-i", "0.2", "192.168.100.1"); err != nil {
		t.Fatalf("ping from the kernel's VXLAN with labels refused: %v\n%s", err, out)
	}
	if st := r.vx.Stats(); st.TxPackets < 4 || st.TxErrors != 0 || r.vx.labels.Load() {
		t.Errorf("stats %+v, labels still on: %v", st, r.vx.labels.Load())
	}
}
