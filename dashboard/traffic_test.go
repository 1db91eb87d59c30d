package dashboard_test

import (
	"context"
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
)

// trafficKind is a port kind of these tests, registered as any kind's
// package does: a port that sends IPv4/UDP frames of its own MAC to its
// peers at a rate that swells and ebbs (so the page's charts have
// something to draw), some of them tagged with a VLAN the port does not
// carry (dropped: reason vlan), and takes whatever the switch sends it.
type trafficKind struct{}

func init() { daemon.Register(trafficKind{}) }

func (trafficKind) Name() string    { return "test-traffic" }
func (trafficKind) Summary() string { return "a port that sends frames to its peers (tests)" }
func (trafficKind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "mac", Value: "MAC", Help: "the port's source MAC", Required: true},
		{Key: "peer", Value: "MAC", Help: "a destination (repeatable)", Repeat: true},
		{Key: "bad-tag", Value: "VID", Help: "also send frames tagged with this VLAN"},
	}
}

type trafficSpec struct {
	mac    vswitch.MAC
	peers  []vswitch.MAC
	badTag int
}

func (trafficKind) Parse(v daemon.Values, _ vswitch.PortConfig) (daemon.Spec, error) {
	s := &trafficSpec{}
	var err error
	if s.mac, err = vswitch.ParseMAC(v.Get("mac")); err != nil {
		return nil, daemon.Bad("mac", v.Get("mac"), err.Error())
	}
	for _, p := range v["peer"] {
		m, err := vswitch.ParseMAC(p)
		if err != nil {
			return nil, daemon.Bad("peer", p, err.Error())
		}
		s.peers = append(s.peers, m)
	}
	if s.badTag, err = v.Int("bad-tag", 1, 4094); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *trafficSpec) Claims() []string { return nil }

func (s *trafficSpec) Start(_ context.Context, h *daemon.Host, name string, attach vswitch.AttachFunc) (daemon.Backend, error) {
	p := &trafficPort{spec: s, stop: make(chan struct{})}
	ph, err := attach(p)
	if err != nil {
		return nil, err
	}
	p.wg.Add(1)
	go p.run(ph)
	return p, nil
}

type trafficPort struct {
	spec *trafficSpec
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func (p *trafficPort) Send(frames []vswitch.Frame) int { return len(frames) }
func (p *trafficPort) Caps() vswitch.Caps              { return 0 }

func (p *trafficPort) Close() error {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
	return nil
}

// udpFrame is an Ethernet frame of size bytes carrying IPv4/UDP from
// src to dst (addresses 10.0.0.<last byte of the MAC>), tagged with vid
// unless it is 0.
func udpFrame(src, dst vswitch.MAC, vid, size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	if vid != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, uint16(vid))
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	ipLen := size - len(b)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17 // version 4, IHL 5; TTL; UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen))
	copy(ip[12:], []byte{10, 0, 0, src[5]})
	copy(ip[16:], []byte{10, 0, 0, dst[5]})
	var sum uint32 // RFC 791 header checksum: one's complement sum of 16-bit words
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	b = append(b, ip...)
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 40000+uint16(src[5]))
	binary.BigEndian.PutUint16(udp[2:], 5001)
	binary.BigEndian.PutUint16(udp[4:], uint16(ipLen-20))
	b = append(b, udp...)
	return b[:size]
}

// run sends every 20 ms: per peer, 2..18 frames of 1000 bytes (a sine of
// period 8 s: about 1.6 to 7 Mbit/s), and one badly tagged frame.
func (p *trafficPort) run(ph *vswitch.PortHandle) {
	defer p.wg.Done()
	s := p.spec
	var good [][]byte
	for _, peer := range s.peers {
		good = append(good, udpFrame(s.mac, peer, 0, 1000))
	}
	bad := udpFrame(s.mac, vswitch.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, s.badTag, 200)
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	frames := make([]vswitch.Frame, 0, 64)
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		n := 10 + int(8*math.Sin(time.Since(start).Seconds()*2*math.Pi/8))
		frames = frames[:0]
		for _, g := range good {
			for range n {
				frames = append(frames, vswitch.Frame{Data: g})
			}
		}
		if s.badTag != 0 {
			frames = append(frames, vswitch.Frame{Data: bad})
		}
		ph.Input(frames)
	}
}
