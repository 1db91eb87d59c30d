package vxlan

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// tagRig is a switch with a VXLAN port (a trunk of VLANs 10, native, and
// 20; VNI 100 = VLAN 10, VNI 200 = VLAN 20; local 127.0.0.1, flooding to
// 127.0.0.2, where a UDP socket catches what it sends) and three tenant
// ports: an access port of VLAN 10, a trunk of VLANs 10 and 20 without a
// native VLAN, and a dot1q-tunnel port of S-VLAN 20.
type tagRig struct {
	sw            *vswitch.Switch
	vx            *Port
	acc, trk, q1q *vswitch.PortHandle
	catch         int // the UDP socket at 127.0.0.2
}

func newTagRig(t *testing.T) *tagRig {
	t.Helper()
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	port := uint16(4900 + udpSeq.Add(1))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 2}}); err != nil {
		t.Fatal(err)
	}
	vx, err := Open(Config{Local: netip.MustParseAddr("127.0.0.1"), Port: port, VNIs: map[uint32]uint16{100: 10, 200: 20},
		NativeVLAN: 10, Remotes: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, NoUDPGSO: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vx.Close() })
	r := &tagRig{sw: vswitch.New(vswitch.Config{}), vx: vx, catch: fd}
	if _, err := r.sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}, NativeVLAN: 10}, vx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		h   **vswitch.PortHandle
		cfg vswitch.PortConfig
	}{
		{&r.acc, vswitch.PortConfig{Name: "acc", Mode: vswitch.ModeAccess, PVID: 10}},
		{&r.trk, vswitch.PortConfig{Name: "trk", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}}},
		{&r.q1q, vswitch.PortConfig{Name: "q1q", Mode: vswitch.ModeDot1QTunnel, PVID: 20}},
	} {
		if *p.h, err = r.sw.AddPort(p.cfg, sinkPort{}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// tagged2 is a broadcast frame from a source of its own (mark), with the
// tags given as TPID, TCI pairs, outermost first, then EtherType 0x88b5
// and mark.
func tagged2(mark byte, tags ...uint16) []byte {
	f := make([]byte, 12, 64)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0x7a, mark})
	for _, t := range tags {
		f = binary.BigEndian.AppendUint16(f, t)
	}
	f = binary.BigEndian.AppendUint16(f, 0x88b5)
	f = append(f, mark)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// caught is a packet the rig's socket got: its VNI and inner frame.
type caught struct {
	vni   uint32
	inner []byte
}

// catchAll reads what arrives at the rig's socket until nothing has for
// wait (the port sends in Send, before the switch's Input returns).
func (r *tagRig) catchAll(t *testing.T, waitMS int64) []caught {
	t.Helper()
	tv := unix.NsecToTimeval(waitMS * 1e6)
	if err := unix.SetsockoptTimeval(r.catch, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var out []caught
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(r.catch, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		vni, ok := parseHeader(buf[:n])
		if n < HdrLen+ethLen || !ok {
			t.Fatalf("not a VXLAN packet: % x", buf[:n])
		}
		out = append(out, caught{vni, append([]byte(nil), buf[HdrLen:n]...)})
	}
}

// A frame of a VLAN leaves in that VLAN's VNI, untagged, whichever TPID
// tags it (the switch re-tags with the TPID a frame came with: 0x8100,
// or 0x88a8 from an S-tagged trunk or a dot1q-tunnel port); a frame that
// would carry a tag inside the VNI (a tag behind its VLAN's, or untagged
// with a tag TPID's EtherType) is dropped and counted, never sent as the
// native VLAN's or with the tag inside.
func TestSendTags(t *testing.T) {
	r := newTagRig(t)
	type tc struct {
		name string
		in   *vswitch.PortHandle // nil: handed to Send, as the switch would
		f    []byte
		vni  uint32 // 0: must not leave
	}
	cases := []tc{
		{"access VLAN 10, untagged", r.acc, tagged2(1), 100},
		{"trunk 0x8100 VID 20", r.trk, tagged2(2, 0x8100, 20), 200},
		{"trunk 0x88a8 VID 20", r.trk, tagged2(3, 0x88a8, 20), 200},
		{"trunk 0x9100 VID 20", r.trk, tagged2(4, 0x9100, 20), 0},
		{"dot1q-tunnel, untagged", r.q1q, tagged2(5), 200},
		{"dot1q-tunnel, C-tag 0x8100 VID 5", r.q1q, tagged2(6, 0x8100, 5), 0},
		{"dot1q-tunnel, 0x9100 VID 5", r.q1q, tagged2(7, 0x9100, 5), 0},
		{"dot1q-tunnel, customer S-tag 0x88a8 VID 30", r.q1q, tagged2(8, 0x88a8, 30), 0},
		{"trunk 0x8100 VID 20, 0x8100 VID 10 behind", r.trk, tagged2(9, 0x8100, 20, 0x8100, 10), 0},
		{"trunk 0x88a8 VID 20, 0x8100 VID 10 behind", r.trk, tagged2(10, 0x88a8, 20, 0x8100, 10), 0},
		{"trunk 0x8100 VID 20, 0x9200 VID 10 behind", r.trk, tagged2(11, 0x8100, 20, 0x9200, 10), 0},
		{"Send: 0x88a8 VID 20", nil, tagged2(12, 0x88a8, 20), 200},
		{"Send: untagged, 0x9100 VID 20 (native VLAN)", nil, tagged2(13, 0x9100, 20), 0},
		{"Send: untagged, 0x9200 VID 20", nil, tagged2(14, 0x9200, 20), 0},
		{"Send: untagged, 0x9300 VID 20", nil, tagged2(15, 0x9300, 20), 0},
		{"Send: 0x8100 VID 10, 0x88a8 VID 20 behind", nil, tagged2(16, 0x8100, 10, 0x88a8, 20), 0},
		{"Send: 0x88a8 VID 10, 0x8100 VID 20 behind", nil, tagged2(17, 0x88a8, 10, 0x8100, 20), 0},
		{"Send: 0x8100 cut short", nil, tagged2(18, 0x8100, 20)[:16], 0},
		{"Send: 0x88a8 cut short", nil, tagged2(19, 0x88a8, 20)[:17], 0},
	}
	// The drops the port must count: frames that reach it (the switch
	// drops a 0x9100 tag on a trunk itself).
	wantDrops := uint64(0)
	for _, c := range cases {
		if c.vni == 0 && !(c.in == r.trk && binary.BigEndian.Uint16(c.f[12:]) == 0x9100) {
			wantDrops++
		}
	}
	for _, c := range cases {
		before := r.vx.Stats()
		if c.in != nil {
			c.in.Input([]vswitch.Frame{{Data: append([]byte(nil), c.f...)}})
		} else if n := r.vx.Send([]vswitch.Frame{{Data: append([]byte(nil), c.f...)}}); (n == 1) != (c.vni != 0) {
			t.Errorf("%s: Send = %d", c.name, n)
		}
		got := r.catchAll(t, 200)
		st := r.vx.Stats()
		mark := c.f[11]
		if c.vni == 0 {
			for _, g := range got {
				t.Errorf("%s: left in VNI %d: % x", c.name, g.vni, g.inner[:min(len(g.inner), 20)])
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s: %d packets, want 1", c.name, len(got))
			continue
		}
		g := got[0]
		if g.vni != c.vni || g.inner[11] != mark || binary.BigEndian.Uint16(g.inner[12:]) != 0x88b5 || g.inner[14] != mark {
			t.Errorf("%s: VNI %d, inner % x; want VNI %d, untagged, EtherType 0x88b5", c.name, g.vni, g.inner[:min(len(g.inner), 20)], c.vni)
		}
		if st.TxDropInnerTag != before.TxDropInnerTag {
			t.Errorf("%s: counted as an inner tag, yet sent", c.name)
		}
	}
	if st := r.vx.Stats(); st.TxDropInnerTag != wantDrops || st.TxDropNoVNI != 0 {
		t.Errorf("TxDropInnerTag = %d, TxDropNoVNI = %d; want %d, 0", st.TxDropInnerTag, st.TxDropNoVNI, wantDrops)
	}
	// What the port did not send, the switch counted at the port too.
	if pc := r.sw.Port("vx").Counters(); pc.TxPackets != 4 {
		t.Errorf("the switch's VXLAN port sent %d frames, want the 4 that went through the switch and fit a VNI", pc.TxPackets)
	}
}

// A batch's frames are judged one by one: in one Send the good frames
// leave in their order and the tagged ones are moved behind, counted.
func TestSendTagsBatch(t *testing.T) {
	r := newTagRig(t)
	fs := []vswitch.Frame{
		{Data: tagged2(1, 0x88a8, 20, 0x8100, 10)},
		{Data: tagged2(2, 0x88a8, 20)},
		{Data: tagged2(3, 0x9100, 20)},
		{Data: tagged2(4)},
		{Data: tagged2(5, 0x8100, 20, 0x9300, 10)},
	}
	if n := r.vx.Send(fs); n != 2 || fs[0].Data[11] != 2 || fs[1].Data[11] != 4 {
		t.Errorf("Send = %d, first frames %d, %d; want 2: frames 2 and 4", n, fs[0].Data[11], fs[1].Data[11])
	}
	got := r.catchAll(t, 200)
	if len(got) != 2 || got[0].vni != 200 || got[0].inner[11] != 2 || got[1].vni != 100 || got[1].inner[11] != 4 {
		t.Errorf("on the wire: %+v; want frame 2 in VNI 200, frame 4 in VNI 100", got)
	}
	if st := r.vx.Stats(); st.TxDropInnerTag != 3 {
		t.Errorf("TxDropInnerTag = %d, want 3", st.TxDropInnerTag)
	}
	// Neither the S-tagged frames nor the drops allocate.
	if a := testing.AllocsPerRun(50, func() { r.vx.Send(fs) }); a != 0 {
		t.Errorf("%.1f allocations per Send", a)
	}
}
