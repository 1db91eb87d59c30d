package vxlan

import (
	"encoding/binary"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// host is a switch port with an IPv4 address that answers ARP requests
// and ICMP echo requests for it, as a guest's stack would, and keeps
// every frame it gets.
type host struct {
	mac [6]byte
	ip  [4]byte
	h   *vswitch.PortHandle
	out chan []byte

	mu  sync.Mutex
	got [][]byte
}

func newHost(mac [6]byte, ip [4]byte) *host {
	return &host{mac: mac, ip: ip, out: make(chan []byte, 64)}
}

func (h *host) Caps() vswitch.Caps { return 0 }

func (h *host) Send(fs []vswitch.Frame) int {
	for _, f := range fs {
		d := append([]byte(nil), f.Data...)
		h.mu.Lock()
		h.got = append(h.got, d)
		h.mu.Unlock()
		if r := h.answer(d); r != nil {
			select {
			case h.out <- r:
			default:
			}
		}
	}
	return len(fs)
}

// run sends the answers into the switch (Send must not call Input).
func (h *host) run(done <-chan struct{}) {
	for {
		select {
		case r := <-h.out:
			h.h.Input([]vswitch.Frame{{Data: r}})
		case <-done:
			return
		}
	}
}

func (h *host) frames() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.got...)
}

// answer returns the reply to an ARP request or ICMP echo request for
// h's address, nil for anything else.
func (h *host) answer(d []byte) []byte {
	if len(d) < 14 {
		return nil
	}
	switch binary.BigEndian.Uint16(d[12:]) {
	case 0x0806:
		if len(d) < 42 || binary.BigEndian.Uint16(d[20:]) != 1 || [4]byte(d[38:42]) != h.ip {
			return nil
		}
		r := append([]byte(nil), d[:42]...)
		copy(r[0:6], d[6:12])
		copy(r[6:12], h.mac[:])
		binary.BigEndian.PutUint16(r[20:], 2)
		copy(r[22:28], h.mac[:])
		copy(r[28:32], h.ip[:])
		copy(r[32:38], d[22:28])
		copy(r[38:42], d[28:32])
		return r
	case 0x0800:
		ihl := int(d[14]&0xf) * 4
		if len(d) < 14+ihl+8 || d[23] != 1 || [4]byte(d[30:34]) != h.ip || d[14+ihl] != 8 {
			return nil
		}
		r := append([]byte(nil), d...)
		copy(r[0:6], d[6:12])
		copy(r[6:12], h.mac[:])
		copy(r[26:30], d[30:34])
		copy(r[30:34], d[26:30])
		r[14+ihl] = 0 // echo reply
		binary.BigEndian.PutUint16(r[14+ihl+2:], 0)
		binary.BigEndian.PutUint16(r[14+ihl+2:], ^csum(r[14+ihl:]))
		return r
	}
	return nil
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// kernelPeer is a namespace whose Linux VXLAN device (VNI 100, no
// learning, remote hvnet's address) carries 192.168.100.2/24, reached
// over a veth pair from the test's namespace (10.9.0.1 here, 10.9.0.2
// there).
func kernelPeer(t *testing.T) string {
	t.Helper()
	netnstest.Need(t)
	ns := netnstest.New(t, "vxk")
	// No IPv6 in there: the kernel's neighbour discovery would cross the
	// tunnel beside the tests' own frames.
	netnstest.Exec(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	netnstest.Veth(t, "vx0", ns, "vx0p")
	netnstest.Run(t, "ip", "addr", "add", "10.9.0.1/24", "dev", "vx0")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.9.0.2/24", "dev", "vx0p")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.9.0.3/24", "dev", "vx0p") // a stranger, for the VTEP check
	netnstest.Run(t, "ip", "-n", ns, "link", "add", "vxlan100", "type", "vxlan", "id", "100", "local", "10.9.0.2",
		"remote", "10.9.0.1", "dstport", "4789", "nolearning")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "192.168.100.2/24", "dev", "vxlan100")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "vxlan100", "up")
	return ns
}

type rig struct {
	sw       *vswitch.Switch
	vx       *Port
	h10, h20 *host
}

// newRig: a switch with the VXLAN port (VNI 100 = VLAN 10, VNI 200 =
// VLAN 20, flooding to the kernel's VTEP) and a host in each VLAN.
func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	if cfg.Local == (netip.Addr{}) {
		cfg.Local = netip.MustParseAddr("10.9.0.1")
	}
	if cfg.VNIs == nil {
		cfg.VNIs = map[uint32]uint16{100: 10, 200: 20}
	}
	if cfg.Remotes == nil {
		cfg.Remotes = []netip.Addr{netip.MustParseAddr("10.9.0.2")}
	}
	vx, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vx.Close() })
	r := &rig{sw: vswitch.New(vswitch.Config{}), vx: vx,
		h10: newHost([6]byte{2, 0, 0, 0, 0, 0x10}, [4]byte{192, 168, 100, 1}),
		h20: newHost([6]byte{2, 0, 0, 0, 0, 0x20}, [4]byte{192, 168, 100, 1})}
	ph, err := r.sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}}, vx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for _, h := range []struct {
		h    *host
		vlan uint16
	}{{r.h10, 10}, {r.h20, 20}} {
		hh, err := r.sw.AddPort(vswitch.PortConfig{Name: "h" + string(rune('0'+h.vlan/10)), Mode: vswitch.ModeAccess, PVID: h.vlan}, h.h)
		if err != nil {
			t.Fatal(err)
		}
		h.h.h = hh
		go h.h.run(done)
	}
	vx.Start(ph)
	return r
}

// Linux's VXLAN reaches a host behind hvnet's VXLAN port and back: the
// kernel's ARP broadcast arrives through the flood list, hvnet learns
// the kernel's MAC behind its VTEP, and the echo replies go to it.
func TestKernelPing(t *testing.T) {
	ns := kernelPeer(t)
	r := newRig(t, Config{Learning: true})
	out, err := netnstestExec(ns, "ping", "-c", "3", "-W", "2", "-i", "0.2", "192.168.100.1")
	if err != nil {
		t.Fatalf("ping from the kernel's VXLAN: %v\n%s", err, out)
	}
	st := r.vx.Stats()
	if st.RxPackets < 4 || st.TxPackets < 4 || st.RemoteMACs != 1 {
		t.Errorf("stats after the pings: %+v", st)
	}
	for _, f := range r.h20.frames() {
		t.Errorf("VLAN 20's host got a frame of VNI 100: % x", f[:min(len(f), 42)])
	}
	if ms := r.vx.RemoteMACs(); len(ms) != 1 || ms[0].VNI != 100 || ms[0].VTEP != netip.MustParseAddr("10.9.0.2") || !ms[0].Learned {
		t.Errorf("remote MACs = %+v", ms)
	}
}

// netnstestExec runs a command in ns and returns its output.
func netnstestExec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// udpFrom sends payload to 10.9.0.1:4789 from src:port in ns (a socket
// made in that namespace).
func udpFrom(t *testing.T, ns, src string, payload []byte) {
	t.Helper()
	var fd int
	if err := inNetns(t, ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(src).As4()}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: 4789, Addr: [4]byte{10, 9, 0, 1}}); err != nil {
		t.Fatal(err)
	}
}

// vxPacket is a VXLAN packet of vni carrying a broadcast frame from
// src (ethertype 0x88b5, the local experimental type).
func vxPacket(vni uint32, src byte, ethertype uint16) []byte {
	b := make([]byte, HdrLen+60)
	putHeader(b, vni)
	f := b[HdrLen:]
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], []byte{2, 0, 0, 0, 0x77, src})
	binary.BigEndian.PutUint16(f[12:], ethertype)
	return b
}

// Bad input from the underlay is a counted drop and reaches no port; a
// VNI's frames reach only its VLAN.
func TestBadInput(t *testing.T) {
	ns := kernelPeer(t)
	r := newRig(t, Config{})
	bad := vxPacket(100, 1, 0x88b5)
	bad[0] = 0x0c // a flag besides I
	badRes := vxPacket(100, 2, 0x88b5)
	badRes[7] = 1 // reserved byte after the VNI
	noI := vxPacket(100, 3, 0x88b5)
	noI[0] = 0
	tagged := vxPacket(100, 4, 0x8100)
	for _, c := range []struct {
		src     string
		payload []byte
	}{
		{"10.9.0.2", []byte{8, 0, 0, 0}},            // short
		{"10.9.0.2", vxPacket(100, 5, 0x88b5)[:20]}, // short: half an Ethernet header
		{"10.9.0.2", bad}, {"10.9.0.2", badRes}, {"10.9.0.2", noI},
		{"10.9.0.2", vxPacket(300, 6, 0x88b5)}, // unknown VNI
		{"10.9.0.3", vxPacket(100, 7, 0x88b5)}, // not a known VTEP
		{"10.9.0.2", tagged},                   // an inner tag
		{"10.9.0.2", vxPacket(200, 8, 0x88b5)}, // good: VNI 200, VLAN 20 only
	} {
		udpFrom(t, ns, c.src, c.payload)
	}
	want := Stats{RxPackets: 1, RxDropShort: 2, RxDropFlags: 3, RxDropUnknownVNI: 1, RxDropUnknownVTEP: 1, RxDropInnerTag: 1}
	deadline := time.Now().Add(30 * time.Second) // ends early: room for a loaded machine
	var st Stats
	for time.Now().Before(deadline) {
		st = r.vx.Stats()
		if st.RxPackets+st.RxDropShort+st.RxDropFlags+st.RxDropUnknownVNI+st.RxDropUnknownVTEP+st.RxDropInnerTag == 9 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.RxBytes = 0
	if st != want {
		t.Errorf("stats = %+v\nwant %+v", st, want)
	}
	crafted := func(fs [][]byte) (n int) { // the packets above: source 02:00:00:00:77:xx
		for _, f := range fs {
			if len(f) > 12 && f[6] == 2 && f[10] == 0x77 {
				n++
			}
		}
		return n
	}
	// The tunnel counts a packet before the switch delivers its frame,
	// and the switch counts a batch after delivering it: wait for both
	// (on a loaded machine the stats above can be seconds ahead). The bad
	// packets went before the good one on the same socket: once it is
	// delivered, any of theirs would have been too.
	waitFor(30*time.Second, func() bool {
		return crafted(r.h20.frames()) == 1 && r.sw.Port("vx").Counters().RxPackets == 1
	})
	if n := crafted(r.h10.frames()); n != 0 {
		t.Errorf("VLAN 10's host got %d frames from bad packets", n)
	}
	if n := crafted(r.h20.frames()); n != 1 {
		t.Fatalf("VLAN 20's host got %d frames, want the one of VNI 200", n)
	}
	if pc := r.sw.Port("vx").Counters(); pc.RxPackets != 1 {
		t.Errorf("the switch port got %d frames, want 1", pc.RxPackets)
	}
}

// A frame whose outer packet would not fit the underlay is dropped and
// counted, not truncated; one that fits goes.
func TestOversize(t *testing.T) {
	kernelPeer(t)
	r := newRig(t, Config{UnderlayMTU: 1500})
	frame := func(payload int) []byte {
		f := make([]byte, 14+payload)
		copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(f[6:12], r.h10.mac[:])
		binary.BigEndian.PutUint16(f[12:], 0x88b5)
		return f
	}
	r.h10.h.Input([]vswitch.Frame{{Data: frame(1500 - Overhead - 14)}, {Data: frame(1500 - Overhead - 14 + 1)}})
	st := r.vx.Stats()
	if st.TxPackets != 1 || st.TxDropOversize != 1 {
		t.Errorf("stats = %+v: want the frame that fits sent, the other counted", st)
	}
	if pc := r.sw.Port("vx").Counters(); pc.TxPackets != 1 || pc.Drops[vswitch.DropNoBuffer] != 1 {
		t.Errorf("switch port counters = %+v", pc)
	}
}

func TestHeaderAndSourcePort(t *testing.T) {
	b := make([]byte, HdrLen)
	putHeader(b, 0xabcdef)
	if vni, ok := parseHeader(b); !ok || vni != 0xabcdef || b[0] != 0x08 {
		t.Errorf("header % x: vni %#x ok %v", b, vni, ok)
	}
	// One flow, one port; several flows, several ports, all in range.
	flow := func(sport byte) []byte {
		ip := make([]byte, 2+28)
		binary.BigEndian.PutUint16(ip, 0x0800)
		ip[2] = 0x45
		ip[2+9] = 17
		copy(ip[2+12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		ip[2+20+1] = sport
		return ip
	}
	macs := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if sourcePort(macs, flow(1)) != sourcePort(macs, flow(1)) {
		t.Error("one flow, two source ports")
	}
	seen := map[uint16]bool{}
	for i := range 64 {
		p := sourcePort(macs, flow(byte(i)))
		if p < sportLo {
			t.Fatalf("source port %d below %d", p, sportLo)
		}
		seen[p] = true
	}
	if len(seen) < 32 {
		t.Errorf("64 flows took %d source ports", len(seen))
	}
}

func TestOpenErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "local address"},
		{Config{Local: netip.MustParseAddr("127.0.0.1")}, "no VNIs"},
		{Config{Local: netip.MustParseAddr("127.0.0.1"), VNIs: map[uint32]uint16{0: 10}}, "VNI 0"},
		{Config{Local: netip.MustParseAddr("127.0.0.1"), VNIs: map[uint32]uint16{1 << 24: 10}}, "VNI 16777216"},
		{Config{Local: netip.MustParseAddr("127.0.0.1"), VNIs: map[uint32]uint16{5: 4095}}, "VLAN 4095"},
		{Config{Local: netip.MustParseAddr("127.0.0.1"), VNIs: map[uint32]uint16{5: 10, 6: 10}}, "VLAN 10 is mapped to VNIs"},
		{Config{Local: netip.MustParseAddr("127.0.0.1"), VNIs: map[uint32]uint16{5: 10}, UnderlayMTU: 100}, "underlay MTU"},
	} {
		if _, err := Open(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}

// inNetns runs f on a thread in the named namespace ns (sockets f opens
// stay there), then puts the thread back.
func inNetns(t testing.TB, ns string, f func() error) error {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic(err) // this thread must not go back to the scheduler in the wrong namespace
	}
	return ferr
}

// marked is a broadcast frame from src with a marker byte.
func marked(dst, src [6]byte, mark byte) []byte {
	f := make([]byte, 60)
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x88b5)
	f[14] = mark
	return f
}

func countMark(h *host, mark byte) (n int) {
	for _, f := range h.frames() {
		if len(f) > 14 && binary.BigEndian.Uint16(f[12:]) == 0x88b5 && f[14] == mark {
			n++
		}
	}
	return n
}

// Three hvnet switches, each in its own namespace on an underlay bridge,
// joined by VXLAN with static flood lists (a full mesh): a broadcast
// reaches every other host of its VNI exactly once, never its own host or
// another VNI; the answer, unicast to a MAC learned behind a VTEP, goes to
// that VTEP alone.
func TestThreeVTEPs(t *testing.T) {
	netnstest.Need(t)
	ul := netnstest.New(t, "vxu")
	netnstest.Run(t, "ip", "-n", ul, "link", "add", "br0", "type", "bridge")
	netnstest.Run(t, "ip", "-n", ul, "link", "set", "br0", "up")
	type hostSide struct {
		ns       string
		vx       *Port
		h10, h20 *host
	}
	var hs []*hostSide
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 8, 0, byte(i + 1)}) }
	for i := range 3 {
		ns := netnstest.New(t, "vxh")
		netnstest.Run(t, "ip", "-n", ns, "link", "add", "u0", "type", "veth", "peer", "name", "b"+string(rune('0'+i)), "netns", ul)
		netnstest.Run(t, "ip", "-n", ns, "addr", "add", addr(i).String()+"/24", "dev", "u0")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "u0", "up")
		netnstest.Run(t, "ip", "-n", ul, "link", "set", "b"+string(rune('0'+i)), "master", "br0", "up")
		hs = append(hs, &hostSide{ns: ns})
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for i, hs := range hs {
		var remotes []netip.Addr
		for j := range 3 {
			if j != i {
				remotes = append(remotes, addr(j))
			}
		}
		cfg := Config{Local: addr(i), VNIs: map[uint32]uint16{100: 10, 200: 20}, Remotes: remotes, Learning: true}
		if err := inNetns(t, hs.ns, func() (err error) { hs.vx, err = Open(cfg); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hs.vx.Close() })
		sw := vswitch.New(vswitch.Config{})
		ph, err := sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}}, hs.vx)
		if err != nil {
			t.Fatal(err)
		}
		hs.h10 = newHost([6]byte{2, 0, 0, 0, byte(i + 1), 0x10}, [4]byte{192, 168, 100, byte(i + 1)})
		hs.h20 = newHost([6]byte{2, 0, 0, 0, byte(i + 1), 0x20}, [4]byte{192, 168, 100, byte(i + 1)})
		for _, h := range []struct {
			h    *host
			vlan uint16
		}{{hs.h10, 10}, {hs.h20, 20}} {
			hh, err := sw.AddPort(vswitch.PortConfig{Name: "h" + string(rune('0'+h.vlan/10)), Mode: vswitch.ModeAccess, PVID: h.vlan}, h.h)
			if err != nil {
				t.Fatal(err)
			}
			h.h.h = hh
			go h.h.run(done)
		}
		hs.vx.Start(ph)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 30 s", what)
			}
		}
	}
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	hs[0].h10.h.Input([]vswitch.Frame{{Data: marked(bcast, hs[0].h10.mac, 1)}})
	wait("the broadcast at hosts 2 and 3", func() bool { return countMark(hs[1].h10, 1) == 1 && countMark(hs[2].h10, 1) == 1 })
	// The answer: unicast from host 2 to host 1's MAC, learned behind 10.8.0.1.
	hs[1].h10.h.Input([]vswitch.Frame{{Data: marked(hs[0].h10.mac, hs[1].h10.mac, 2)}})
	wait("the answer at host 1", func() bool { return countMark(hs[0].h10, 2) == 1 })
	time.Sleep(200 * time.Millisecond) // time for anything extra to arrive
	for i, h := range hs {
		want1 := map[bool]int{true: 0, false: 1}[i == 0]
		if n := countMark(h.h10, 1); n != want1 {
			t.Errorf("host %d got the broadcast %d times, want %d", i+1, n, want1)
		}
		if n := countMark(h.h10, 2); n != map[bool]int{true: 1, false: 0}[i == 0] {
			t.Errorf("host %d got the unicast answer %d times", i+1, n)
		}
		if n := countMark(h.h20, 1) + countMark(h.h20, 2); n != 0 {
			t.Errorf("host %d's VLAN 20 got %d frames of VNI 100", i+1, n)
		}
	}
	if st := hs[0].vx.Stats(); st.TxPackets != 2 || st.TxFloodCopies != 2 {
		t.Errorf("host 1 sent %d packets (%d flood copies), want the broadcast to each of 2 VTEPs", st.TxPackets, st.TxFloodCopies)
	}
	if st := hs[1].vx.Stats(); st.TxPackets != 1 || st.TxFloodCopies != 0 {
		t.Errorf("host 2 sent %d packets (%d flood copies), want the answer to host 1 alone", st.TxPackets, st.TxFloodCopies)
	}
}
