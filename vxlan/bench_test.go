package vxlan

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// sink is a switch port that counts what it gets.
type sink struct{ n atomic.Uint64 }

func (s *sink) Caps() vswitch.Caps { return 0 }
func (s *sink) Send(fs []vswitch.Frame) int {
	s.n.Add(uint64(len(fs)))
	return len(fs)
}

// BenchmarkEncapDecap is the tunnel's own cost per frame, IPv4 underlay
// against IPv6: port A (in the test's namespace) encapsulates batches of
// 32 frames of one size and sends them over a veth pair to port B (in a
// namespace of its own), which decapsulates them into a switch with one
// counting port. ns/op is per frame, from A's Send to B's switch, both
// ends on this machine's CPUs (A's sendmmsg does the veth's and B's IP
// and UDP input inline; B's receive loop the rest). At most 1024 frames
// are in flight, so B's socket does not overflow; "lost" counts what did
// not arrive all the same. cpu-ns/frame is the process's CPU time (user
// and system: both ports' Go code, their system calls and the softirq
// work they do inline) per frame, steadier than ns/op on a machine
// whose other load makes the benchmark wait for a CPU.
func BenchmarkEncapDecap(b *testing.B) {
	netnstest.Need(b)
	ns := netnstest.New(b, "vxb")
	netnstest.Veth(b, "vxb0", ns, "vxb1")
	netnstest.Run(b, "ip", "addr", "add", "10.11.0.1/24", "dev", "vxb0")
	netnstest.Run(b, "ip", "addr", "add", "fd00:11::1/64", "dev", "vxb0", "nodad")
	netnstest.Run(b, "ip", "-n", ns, "addr", "add", "10.11.0.2/24", "dev", "vxb1")
	netnstest.Run(b, "ip", "-n", ns, "addr", "add", "fd00:11::2/64", "dev", "vxb1", "nodad")
	for _, fam := range []struct {
		name string
		a, b netip.Addr
	}{
		{"v4", netip.MustParseAddr("10.11.0.1"), netip.MustParseAddr("10.11.0.2")},
		{"v6", netip.MustParseAddr("fd00:11::1"), netip.MustParseAddr("fd00:11::2")},
	} {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("%s/%dB", fam.name, size), func(b *testing.B) {
				benchEncapDecap(b, ns, fam.a, fam.b, size)
			})
		}
	}
}

func benchEncapDecap(b *testing.B, ns string, la, lb netip.Addr, size int) {
	k := &sink{}
	pa, pb := tunnel(b, ns, la, lb, false, k)
	defer pa.Close()
	defer pb.Close()
	const batch = 32
	frames := make([]vswitch.Frame, batch)
	bufs := make([][]byte, batch)
	for i := range bufs {
		f := make([]byte, size)
		copy(f[0:6], []byte{2, 0, 0, 0, 0xbb, 1}) // unknown unicast: to the sink
		copy(f[6:12], []byte{2, 0, 0, 0, 0xaa, byte(i)})
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := f[14:]
		ip[0], ip[9] = 0x45, 17
		copy(ip[12:], []byte{192, 168, 0, 1, 192, 168, 0, 2})
		binary.BigEndian.PutUint16(ip[20:], uint16(1000+i)) // 32 flows
		bufs[i] = f
	}
	// One warm-up batch: B's switch learns nothing it needs, but the
	// sockets and goroutines are running.
	send := func(n int) uint64 {
		for i := range n {
			frames[i] = vswitch.Frame{Data: bufs[i]}
		}
		return uint64(pa.Send(frames[:n]))
	}
	sent := send(batch)
	waitFor(time.Second, func() bool { return k.n.Load() >= sent })
	base := k.n.Load()
	sent = 0
	b.SetBytes(int64(size))
	cpu0 := cpuTime()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		sent += send(n)
		done += n
		for sent-(k.n.Load()-base) > 1024 {
			time.Sleep(100 * time.Microsecond) // not spinning: the CPU time is the tunnel's
		}
	}
	waitFor(time.Second, func() bool { return k.n.Load()-base >= sent })
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/frame")
	got := k.n.Load() - base
	b.ReportMetric(float64(uint64(b.N)-min(got, uint64(b.N))), "lost")
	if st := pa.Stats(); st.TxErrors != 0 || st.TxDropOversize != 0 {
		b.Errorf("sender: %+v", st)
	}
}

// cpuTime is the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkGuestTSO is what a guest's TCP segmentation offload frame
// costs to cross the tunnel, with the port's UDP GSO and without: a
// 64 KiB TCP/IPv4 frame with GSO metadata (as a virtio-net device hands
// it over) enters switch A, which segments it for the vxlan port (no
// offloads: 47 segments of 1410 bytes, each a 1464-byte frame, the most
// a 1500-byte underlay carries); port A sends the segments, as runs of
// UDP GSO super-packets (gso) or one by one (nogso), over a veth pair to
// port B in another namespace, whose switch delivers them to a counting
// port. ns/op and cpu-ns/op are per 64 KiB frame, cpu-ns/segment per
// segment delivered. (Carrying the frame whole with UDP tunnel offload,
// SKB_GSO_UDP_TUNNEL, is not open to an AF_PACKET socket: its virtio-net
// header has no tunnel GSO types.)
func BenchmarkGuestTSO(b *testing.B) {
	ns, la, lb := underlay(b, "vxt", 13, 0)
	for _, off := range []bool{false, true} {
		name := "gso"
		if off {
			name = "nogso"
		}
		b.Run(name, func(b *testing.B) { benchGuestTSO(b, ns, la, lb, off) })
	}
}

func benchGuestTSO(b *testing.B, ns string, la, lb netip.Addr, off bool) {
	k := &sink{}
	pa, pb := tunnel(b, ns, la, lb, off, k)
	defer pa.Close()
	defer pb.Close()
	swA := vswitch.New(vswitch.Config{})
	pha, err := swA.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeAccess, PVID: 10}, pa)
	if err != nil {
		b.Fatal(err)
	}
	src, err := swA.AddPort(vswitch.PortConfig{Name: "guest", Mode: vswitch.ModeAccess, PVID: 10}, &sink{})
	if err != nil {
		b.Fatal(err)
	}
	pa.Start(pha)

	const payload, mss = 65536 - 54, 1410
	f := make([]byte, 54+payload)
	copy(f[0:6], []byte{2, 0, 0, 0, 0xbb, 1}) // unknown unicast: flooded to the tunnel
	copy(f[6:12], []byte{2, 0, 0, 0, 0xaa, 1})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	copy(ip[12:], []byte{192, 168, 0, 1, 192, 168, 0, 2})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	tcp[12], tcp[13] = 5<<4, 0x18 // PSH, ACK
	off6 := frame.Offload{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, HdrLen: 54, GSOSize: mss, CsumStart: 34, CsumOffset: 16}
	segs := uint64((payload + mss - 1) / mss)
	in := []vswitch.Frame{{Data: f, Off: off6}}
	send := func() { src.Input(in) }
	// Warm up until A has resolved B (the first frames go one by one).
	waitFor(10*time.Second, func() bool {
		send()
		return off || pa.Stats().TxGSOPackets > 0
	})
	waitFor(10*time.Second, func() bool { return k.n.Load() >= segs })
	time.Sleep(100 * time.Millisecond)
	base := k.n.Load()
	cpu0 := cpuTime()
	b.SetBytes(payload)
	b.ResetTimer()
	for i := range b.N {
		send()
		for uint64(i+1)*segs-(k.n.Load()-base) > 1024 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	want := uint64(b.N) * segs
	waitFor(5*time.Second, func() bool { return k.n.Load()-base >= want })
	b.StopTimer()
	cpu := float64(cpuTime() - cpu0)
	b.ReportMetric(cpu/float64(b.N), "cpu-ns/op")
	b.ReportMetric(cpu/float64(want), "cpu-ns/segment")
	got := k.n.Load() - base
	b.ReportMetric(float64(want-min(got, want)), "lost")
	if st := pa.Stats(); st.TxErrors != 0 || st.TxDropOversize != 0 {
		b.Errorf("sender: %+v", st)
	}
}
