package vhost

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hvnet/hvnet/frame"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// Tenant isolation through the real backend: a frontend written
// from scratch rewrites its in-flight frames from another thread while the
// switch forwards them. Headers, tags and offload fields change between any
// two reads the daemon could make. Whatever it does: the process lives,
// nothing leaves its VLAN, and two other ports keep forwarding.

// racer rewrites the frame buffers at addrs in a guest's memory, flipping
// each between its valid bytes and one of the mutations, as fast as it
// can, until stop is closed.
type racer struct {
	mem       []byte // the attacker's memory (mmap'd: the race detector does not see it)
	base      uint64 // its guest-physical address
	addrs     []uint64
	valid     [][]byte // per address: header and frame head as sent
	mutations [][]int  // offset, value, offset, value, ...: set together, then restored
	stop      chan struct{}
	flips     atomic.Int64
	wg        sync.WaitGroup
}

func (r *racer) run() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for k := 0; ; k++ {
			select {
			case <-r.stop:
				return
			default:
			}
			r.flip(k)
		}
	}()
}

// flip applies mutation k to every frame and restores it.
func (r *racer) flip(k int) {
	m := r.mutations[k%len(r.mutations)]
	for j, a := range r.addrs {
		b, valid := r.mem[a-r.base:], r.valid[j]
		for i := 0; i < len(m); i += 2 {
			b[m[i]] = byte(m[i+1])
		}
		for i := 0; i < len(m); i += 2 {
			b[m[i]] = valid[m[i]]
		}
	}
	r.flips.Add(1)
}

func (r *racer) end() { close(r.stop); r.wg.Wait() }

// observer keeps n receive buffers posted on g and calls see for every
// frame received, until stop is closed.
func observe(g *guest, n int, stop chan struct{}, see func([]byte)) *sync.WaitGroup {
	heads := make([]uint16, n)
	for i := range heads {
		heads[i] = g.rx.AddChain(virtiotest.Buf{Len: 2048, Write: true})
	}
	g.rx.Push(heads...)
	g.kick[0].Signal()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			got := false
			for {
				u, ok := g.rx.PopUsed()
				if !ok {
					break
				}
				got = true
				d := g.rx.BufAddr(uint16(u.ID), 0)
				if u.Len > hdrLen {
					see(g.rx.Bytes(d.Addr, uint64(u.Len))[hdrLen:])
				}
				g.rx.Push(uint16(u.ID))
			}
			if got {
				g.kick[0].Signal()
				continue
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	return &wg
}

func isTagType(et uint16) bool {
	return et == 0x8100 || et == 0x88a8 || et == 0x9100 || et == 0x9200 || et == 0x9300
}

// attackFrames builds the attacker's frames behind their virtio-net
// headers: a plain IPv4 frame and a TCP/IPv4 TSO frame of 4000 payload
// bytes at MSS 1000 (partial checksum, as Linux sends it).
func attackFrames(src byte) (plain, tso []byte) {
	eth := func(b []byte) []byte {
		b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, src)
		return binary.BigEndian.AppendUint16(b, 0x0800)
	}
	ip := func(b []byte, l4 int) []byte {
		h := []byte{0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
		binary.BigEndian.PutUint16(h[2:], uint16(20+l4))
		return append(b, h...)
	}
	plain = make([]byte, hdrLen)
	plain = ip(eth(plain), 80)
	plain = append(plain, make([]byte, 80)...)

	const payload, mss = 4000, 1000
	h := vnet.Header{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, HdrLen: 54, GSOSize: mss, CsumStart: 34, CsumOffset: 16}
	tso = make([]byte, hdrLen)
	h.Encode(tso)
	tso = ip(eth(tso), 20+payload)
	tcp := make([]byte, 20+payload)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	tcp[12], tcp[13] = 5<<4, 0x18
	// The pseudo-header sum, folded, in the checksum field (NEEDS_CSUM).
	sum := uint32(0x0a00+0x0001+0x0a00+0x0002) + 6 + uint32(len(tcp))
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(tcp[16:], uint16(sum))
	return plain, append(tso, tcp...)
}

// armAttacker writes g's 32 attack chains (plain and TSO frames from
// source MAC ...:src, alternating) and returns their heads and a racer
// over them with every mutation TestRacingFrontend describes.
func armAttacker(g *guest, src byte) ([]uint16, *racer) {
	plain, tso := attackFrames(src)
	var heads []uint16
	r := &racer{mem: g.mem.Data, base: guestBase, stop: make(chan struct{})}
	for i := range 32 {
		fr := plain
		if i%2 == 1 {
			fr = tso
		}
		h := g.tx.AddChain(virtiotest.Buf{Data: fr})
		heads = append(heads, h)
		r.addrs = append(r.addrs, g.tx.BufAddr(h, 0).Addr)
		r.valid = append(r.valid, fr[:hdrLen+60])
	}
	tagAt := hdrLen + 12
	for _, tp := range []uint16{0x8100, 0x88a8, 0x9100, 0x9200} {
		r.mutations = append(r.mutations, []int{tagAt, int(tp >> 8), tagAt + 1, int(tp & 0xff), tagAt + 2, 0, tagAt + 3, 20})
	}
	ipAt := hdrLen + 14
	r.mutations = append(r.mutations,
		[]int{4, 1, 5, 0},                // gso_size 1
		[]int{2, 0xff, 3, 0xff},          // hdr_len 65535
		[]int{6, 0xf0, 7, 0xff},          // csum_start past the frame
		[]int{1, int(frame.GSOTCPv6)},    // gso_type against the frame
		[]int{0, 0},                      // flags: NEEDS_CSUM off
		[]int{ipAt, 0x4f},                // IHL 60
		[]int{ipAt, 0x41},                // IHL 4
		[]int{ipAt + 2, 0, ipAt + 3, 20}, // total length 20
		[]int{ipAt + 20 + 12, 0xf0},      // TCP data offset 60
		[]int{ipAt + 9, 17},              // UDP under a TCP GSO type
	)
	return heads, r
}

// attackerFeatures are the offloads the attacker negotiates: partial
// checksums and TSO, so its GSO headers reach the switch.
var attackerFeatures = vnet.Features(vnet.FCsum, vnet.FHostTSO4, vnet.FHostTSO6, vnet.FHostECN)

// racingNeighbour is BenchmarkNextToHostile's racing mode: one session
// that every neighbourPace sends its 32 attack frames and races them
// (flipping as TestRacingFrontend does) until the backend has used them
// all. The racer runs only while its frames are in flight, as a guest's
// vCPU would: the benchmark measures what the attack costs the victims,
// not a core spinning in the benchmark's own process.
type racingNeighbour struct {
	sock   string
	rounds atomic.Int64
	err    error
}

// racerSpins bounds the flips per round: a racing guest spends its own
// vCPU, not the host's, so the benchmark's racer must not take a core.
const racerSpins = 256

func (n *racingNeighbour) run(stop <-chan struct{}) {
	f, err := frontend.Dial(n.sock)
	if err != nil {
		n.err = err
		return
	}
	g, err := newGuest(f)
	if err != nil {
		n.err = err
		return
	}
	defer g.close()
	if n.err = g.negotiateFeatures(attackerFeatures); n.err != nil {
		return
	}
	heads, r := armAttacker(g, 0x0b)
	next := time.Now()
	for k := 0; ; {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(neighbourPace)
		g.tx.Push(heads...)
		g.kick[1].Signal()
		deadline := time.Now().Add(10 * time.Second)
		for spins := 0; g.tx.UsedIdx() != g.tx.AvailIdx(); spins++ {
			if time.Now().After(deadline) {
				n.err = errors.New("racing neighbour: chains not used in 10 s")
				return
			}
			if spins < racerSpins {
				r.flip(k)
				k++
			} else {
				time.Sleep(20 * time.Microsecond)
			}
		}
		g.tx.DiscardUsed()
		n.rounds.Add(1)
	}
}

// TestRacingFrontend: the attacker (access port, VLAN 10) sends broadcast
// frames, plain and TSO (segmented in software for the receivers, which
// negotiated no offloads), while its racer thread rewrites bytes 12-15 of
// the frame (the EtherType becomes a tag of VLAN 20 under every TPID), the
// IP and TCP header lengths and total length, and the virtio-net header's
// flags, gso_type, gso_size, hdr_len and csum_start, setting and restoring
// them as fast as it can. The trunk "up" (native VLAN 10) must see only
// untagged frames, the VLAN 20 port nothing, and ports c and d (VLAN 30)
// keep forwarding to each other throughout. The attacker's port counts
// what it dropped.
func TestRacingFrontend(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockAtk := testPort(t, sw, "atk", 10)
	upSock := filepath.Join(t.TempDir(), "up.sock")
	startPort(t, sw, PortConfig{Port: vswitch.PortConfig{Name: "up", Mode: vswitch.ModeTrunk, NativeVLAN: 10, AllowedVLANs: []uint16{10, 20}}, Socket: upSock})
	_, sock20 := testPort(t, sw, "v20", 20)
	_, sockC := testPort(t, sw, "c", 30)
	_, sockD := testPort(t, sw, "d", 30)
	atk, up, v20, c, d := dialGuest(t, sockAtk), dialGuest(t, upSock), dialGuest(t, sock20), dialGuest(t, sockC), dialGuest(t, sockD)
	if err := atk.negotiateFeatures(attackerFeatures); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*guest{up, v20, c, d} {
		g.mustNegotiate()
	}

	stop := make(chan struct{})
	var upFrames, upTagged, v20Frames, dFromC atomic.Int64
	var watchers []*sync.WaitGroup
	watchers = append(watchers, observe(up, qSize, stop, func(b []byte) {
		upFrames.Add(1)
		if isTagType(binary.BigEndian.Uint16(b[12:])) {
			upTagged.Add(1)
		}
	}))
	watchers = append(watchers, observe(v20, qSize, stop, func([]byte) { v20Frames.Add(1) }))
	watchers = append(watchers, observe(d, qSize, stop, func(b []byte) {
		if b[11] == 0x0c {
			dFromC.Add(1)
		}
	}))

	heads, r := armAttacker(atk, 0x0a)
	r.run()

	const rounds = 300
	sentC := 0
	for round := range rounds {
		atk.tx.Push(heads...)
		atk.kick[1].Signal()
		deadline := time.Now().Add(10 * time.Second)
		for atk.tx.UsedIdx() != atk.tx.AvailIdx() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the attacker's chains were not used in 10 s", round)
			}
			time.Sleep(50 * time.Microsecond)
		}
		atk.tx.DiscardUsed()
		if round%10 == 0 {
			c.send(ethFrame(0xff, 0x0c, byte(round)))
			c.waitTxDone()
			sentC++
		}
	}
	r.end()
	deadline := time.Now().Add(10 * time.Second)
	for dFromC.Load() < int64(sentC) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	for _, w := range watchers {
		w.Wait()
	}
	var atkDrops uint64
	for _, pc := range sw.Counters() {
		if pc.Name == "atk" {
			atkDrops = pc.Drops[vswitch.DropVLAN] + pc.Drops[vswitch.DropMalformed]
		}
	}
	t.Logf("racer flips %d; up received %d frames; attacker drops (vlan+malformed) %d; c->d %d of %d",
		r.flips.Load(), upFrames.Load(), atkDrops, dFromC.Load(), sentC)
	if n := upTagged.Load(); n != 0 {
		t.Errorf("%d frames left the native-VLAN trunk carrying a tag", n)
	}
	if n := v20Frames.Load(); n != 0 {
		t.Errorf("%d frames reached VLAN 20", n)
	}
	if upFrames.Load() == 0 {
		t.Errorf("no attacker frame reached the trunk: the attack did not run")
	}
	if atkDrops == 0 {
		t.Errorf("the attacker's port counted no drops: the racer never struck")
	}
	if got := dFromC.Load(); got != int64(sentC) {
		t.Errorf("c->d delivered %d of %d frames during the attack", got, sentC)
	}
}
