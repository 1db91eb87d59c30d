package vswitch

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/songgao/packets/ethernet"

	"github.com/hvnet/hvnet/frame"
)

// sink is a Port that records copies of what it is sent, whole (a tail,
// which only a sink with CapTail may get, read with frame.ReadTail).
type sink struct {
	mu     sync.Mutex
	caps   Caps
	accept int // frames accepted per Send; <0 means all
	got    []Frame

	tails      int // frames that came with a tail
	badTails   int // ... to a sink without CapTail
	tailFaults int // tails that faulted when read
}

func newSink(c Caps) *sink { return &sink{caps: c, accept: -1} }

func (s *sink) Send(frames []Frame) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(frames)
	if s.accept >= 0 && s.accept < n {
		n = s.accept
	}
	for _, f := range frames[:n] {
		b := append([]byte(nil), f.Data...)
		if f.Tail != nil {
			s.tails++
			if s.caps&CapTail == 0 {
				s.badTails++
			}
			b = append(b, make([]byte, len(f.Tail))...)
			if !frame.ReadTail(b[len(f.Data):], f.Tail) {
				s.tailFaults++
				continue
			}
		}
		s.got = append(s.got, Frame{Data: b, Off: f.Off})
	}
	return n
}

func (s *sink) Caps() Caps { return s.caps }

func (s *sink) take() []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.got
	s.got = nil
	return g
}

var _ Port = (*sink)(nil)

func mac(last byte) MAC { return MAC{0x02, 0, 0, 0, 0, last} }

// eth builds an untagged frame with payload of n bytes (songgao/packets'
// ethernet.Frame lays out the header).
func eth(dst, src MAC, etype uint16, n int) []byte {
	var f ethernet.Frame
	f.Prepare(dst[:], src[:], ethernet.NotTagged, ethernet.Ethertype{byte(etype >> 8), byte(etype)}, n)
	p := f[14:] // not f.Payload(): it reads 0x8100/0x88a8 in etype as tags
	for i := range p {
		p[i] = byte(i)
	}
	return f
}

// tag inserts an 802.1Q/802.1ad tag after the MACs.
func tag(f []byte, tpid uint16, pcp uint8, vid uint16) []byte {
	b := make([]byte, 0, len(f)+4)
	b = append(b, f[:12]...)
	b = binary.BigEndian.AppendUint16(b, tpid)
	b = binary.BigEndian.AppendUint16(b, uint16(pcp)<<13|vid)
	return append(b, f[12:]...)
}

type testSwitch struct {
	t     *testing.T
	sw    *Switch
	clock *ManualClock
	h     map[string]*PortHandle
	s     map[string]*sink
}

func newTestSwitch(t *testing.T, cfgs ...PortConfig) *testSwitch {
	t.Helper()
	ts := &testSwitch{t: t, clock: NewManualClock(1_000_000_000_000), h: map[string]*PortHandle{}, s: map[string]*sink{}}
	ts.sw = New(Config{Clock: ts.clock})
	for _, c := range cfgs {
		ts.add(c, 0)
	}
	return ts
}

func (ts *testSwitch) add(c PortConfig, caps Caps) {
	ts.t.Helper()
	s := newSink(caps)
	h, err := ts.sw.AddPort(c, s)
	if err != nil {
		ts.t.Fatalf("AddPort(%q) = %v", c.Name, err)
	}
	ts.h[c.Name], ts.s[c.Name] = h, s
}

func (ts *testSwitch) in(port string, frames ...[]byte) {
	fs := make([]Frame, len(frames))
	for i, f := range frames {
		fs[i].Data = f
	}
	ts.h[port].Input(fs)
}

func (ts *testSwitch) drops(port string, r DropReason) uint64 {
	return ts.h[port].Counters().Drops[r]
}

func (ts *testSwitch) advance(d time.Duration) { ts.clock.Advance(d) }

func access(name string, pvid uint16) PortConfig {
	return PortConfig{Name: name, Mode: ModeAccess, PVID: pvid}
}

func trunk(name string, native uint16, vids ...uint16) PortConfig {
	return PortConfig{Name: name, Mode: ModeTrunk, NativeVLAN: native, AllowedVLANs: vids}
}

// Independent checkers: 16 bits at a time, straight from RFC 1071's
// description, sharing no code with csum.go.
func refSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func refFold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// checkTCP verifies the IP (v4) header checksum and the TCP checksum of a
// packet starting at ip and returns the TCP header and payload.
func checkTCP(t *testing.T, ip []byte) (tcp []byte, payload []byte) {
	t.Helper()
	var pseudo []byte
	var l4 []byte
	switch ip[0] >> 4 {
	case 4:
		ihl := int(ip[0]&0xf) * 4
		tot := int(ip[2])<<8 | int(ip[3])
		if tot != len(ip) {
			t.Fatalf("ipv4 total length %d, packet %d", tot, len(ip))
		}
		if refFold(refSum(ip[:ihl])) != 0xffff {
			t.Fatalf("bad ipv4 header checksum")
		}
		l4 = ip[ihl:]
		pseudo = append(append(append([]byte{}, ip[12:20]...), 0, 6), byte(len(l4)>>8), byte(len(l4)))
	case 6:
		pl := int(ip[4])<<8 | int(ip[5])
		if pl+40 != len(ip) {
			t.Fatalf("ipv6 payload length %d, packet %d", pl, len(ip))
		}
		l4 = ip[40:]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, 6)
	default:
		t.Fatalf("not IP: version %d", ip[0]>>4)
	}
	if refFold(refSum(pseudo)+refSum(l4)) != 0xffff {
		t.Fatalf("bad TCP checksum")
	}
	thl := int(l4[12]>>4) * 4
	return l4[:thl], l4[thl:]
}

// tcpFrame builds an Ethernet+IP+TCP frame with payload bytes of payload,
// with a partial checksum and GSO metadata as a Linux guest sends it (the
// TCP checksum field holding the pseudo-header sum).
func tcpFrame(v6 bool, tags [][2]uint16, payload int, mss uint16, flags byte) Frame {
	var b []byte
	b = append(b, 0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1)
	for _, tg := range tags {
		b = binary.BigEndian.AppendUint16(b, tg[0])
		b = binary.BigEndian.AppendUint16(b, tg[1])
	}
	l3 := len(b) + 2
	var iphl int
	if v6 {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(20+payload))
		ip[6], ip[7] = 6, 64
		for i := range 16 {
			ip[8+i], ip[24+i] = 0xfd, byte(i)
		}
		b = append(b, ip...)
		iphl = 40
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+20+payload))
		binary.BigEndian.PutUint16(ip[10:], ^refFold(refSum(ip)))
		b = append(b, ip...)
		iphl = 20
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // wraps during the test
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	b = append(b, tcp...)
	for i := range payload {
		b = append(b, byte(i*7))
	}
	// Pseudo-header sum in the checksum field (virtio NEEDS_CSUM convention).
	l4len := 20 + payload
	var ps uint32
	if v6 {
		ps = refSum(b[l3+8:l3+40]) + uint32(l4len) + 6
	} else {
		ps = refSum(b[l3+12:l3+20]) + uint32(l4len) + 6
	}
	binary.BigEndian.PutUint16(b[l3+iphl+16:], refFold(ps))
	off := frame.Offload{Flags: frame.NeedsCsum, CsumStart: uint16(l3 + iphl), CsumOffset: 16, HdrLen: uint16(l3 + iphl + 20)}
	if mss > 0 {
		off.GSOSize = mss
		off.GSOType = frame.GSOTCPv4
		if v6 {
			off.GSOType = frame.GSOTCPv6
		}
	}
	return Frame{Data: b, Off: off}
}
