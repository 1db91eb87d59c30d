package uplink

import (
	"bytes"
	"encoding/binary"
	"os/exec"
	"testing"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"

	"golang.org/x/sys/unix"
)

// fakeBlock lays out a TPACKET_V3 block as the kernel does: n frames, each
// with a tpacket3_hdr, a virtio_net_hdr right before the frame at tp_mac.
func fakeBlock(frames [][]byte, vlan uint32, tpid uint16, off frame.Offload) []byte {
	blk := make([]byte, 256<<10)
	ne.PutUint32(blk[bdNumPkts:], uint32(len(frames)))
	const first = 48
	ne.PutUint32(blk[bdFirstPkt:], first)
	pos := first
	for i, f := range frames {
		h := blk[pos:]
		const mac = 92
		status := uint32(unix.TP_STATUS_USER)
		if vlan != 0 {
			status |= unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_VLAN_TPID_VALID
			ne.PutUint32(h[h3VlanTCI:], vlan)
			ne.PutUint16(h[h3VlanTPID:], tpid)
		}
		ne.PutUint32(h[h3Snaplen:], uint32(len(f)))
		ne.PutUint32(h[h3Len:], uint32(len(f)))
		ne.PutUint32(h[h3Status:], status)
		ne.PutUint16(h[h3Mac:], mac)
		off.Encode(h[mac-frame.VnetHdrLen:])
		copy(h[mac:], f)
		next := (mac + len(f) + 15) &^ 15
		if i < len(frames)-1 {
			ne.PutUint32(h[h3Next:], uint32(next))
		}
		pos += next
	}
	return blk
}

func testFrame(n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = byte(i)
	}
	return f
}

// recorder is a vswitch.Port that keeps copies of what it is sent.
type recorder struct{ got []vswitch.Frame }

func (r *recorder) Send(fs []vswitch.Frame) int {
	for _, f := range fs {
		r.got = append(r.got, vswitch.Frame{Data: bytes.Clone(f.Data), Off: f.Off})
	}
	return len(fs)
}
func (r *recorder) Caps() vswitch.Caps {
	return vswitch.CapCsum | vswitch.CapGSOTCPv4 | vswitch.CapGSOTCPv6
}

type discard struct{}

func (discard) Send(fs []vswitch.Frame) int { return len(fs) }
func (discard) Caps() vswitch.Caps {
	return vswitch.CapCsum | vswitch.CapGSOTCPv4 | vswitch.CapGSOTCPv6
}

func TestWalkBlockRestoresVLANTag(t *testing.T) {
	for _, tc := range []struct {
		name string
		tpid uint16
	}{{"802.1Q", 0x8100}, {"802.1ad", 0x88a8}} {
		t.Run(tc.name, func(t *testing.T) {
			sw := vswitch.New(vswitch.Config{})
			h, _ := sw.AddPort(vswitch.PortConfig{Name: "up", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10}}, discard{})
			rec := &recorder{}
			mode := vswitch.ModeAccess
			if tc.tpid == 0x88a8 {
				mode = vswitch.ModeDot1QTunnel
			}
			sw.AddPort(vswitch.PortConfig{Name: "g", Mode: mode, PVID: 10}, rec)
			in := testFrame(100)
			off := frame.Offload{Flags: frame.NeedsCsum, CsumStart: 34, CsumOffset: 6}
			var c rxCounts
			walkBlock(fakeBlock([][]byte{in, in}, 0x2000|10, tc.tpid, off), make([]vswitch.Frame, 0, 1), h, &c)
			if c.frames != 2 || c.vlan != 2 || c.bad != 0 {
				t.Fatalf("counts = %+v; want 2 frames, 2 VLAN restored", c)
			}
			if len(rec.got) != 2 {
				t.Fatalf("guest got %d frames; want 2", len(rec.got))
			}
			// The switch classified the restored tag (VLAN 10) and popped
			// it for the access/tunnel port: the guest sees the original.
			if g := rec.got[0]; !bytes.Equal(g.Data, in) || g.Off.CsumStart != 34 {
				t.Errorf("guest frame = % x (csum_start %d); want % x (34)", g.Data[:16], g.Off.CsumStart, in[:16])
			}
		})
	}
}

func TestRXFrameTag(t *testing.T) {
	in := testFrame(60)
	blk := fakeBlock([][]byte{in}, 0xa00a, 0x88a8, frame.Offload{GSOType: frame.GSOTCPv4, HdrLen: 54, GSOSize: 1448, Flags: 1, CsumStart: 34, CsumOffset: 16})
	hdr := blk[48:]
	f := rxFrame(hdr, 92, 60, ne.Uint32(hdr[h3Status:]))
	if len(f.Data) != 64 || binary.BigEndian.Uint16(f.Data[12:]) != 0x88a8 || binary.BigEndian.Uint16(f.Data[14:]) != 0xa00a {
		t.Fatalf("tag = % x; want 88 a8 a0 0a", f.Data[12:16])
	}
	if !bytes.Equal(f.Data[:12], in[:12]) || !bytes.Equal(f.Data[16:], in[12:]) {
		t.Errorf("frame around the tag changed")
	}
	if f.Off.CsumStart != 38 || f.Off.HdrLen != 58 || f.Off.GSOSize != 1448 {
		t.Errorf("offload = %+v; want csum_start 38, hdr_len 58", f.Off)
	}
}

func TestWalkBlockRejectsBadOffsets(t *testing.T) {
	in := testFrame(100)
	for _, tc := range []struct {
		name  string
		patch func(h []byte)
	}{
		{"mac before headers", func(h []byte) { ne.PutUint16(h[h3Mac:], 10) }},
		{"snaplen past block", func(h []byte) { ne.PutUint32(h[h3Snaplen:], 1<<30); ne.PutUint32(h[h3Len:], 1<<30) }},
		{"truncated", func(h []byte) { ne.PutUint32(h[h3Len:], 5000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blk := fakeBlock([][]byte{in}, 0, 0, frame.Offload{})
			tc.patch(blk[48:])
			var c rxCounts
			walkBlock(blk, make([]vswitch.Frame, 0, 4), nil, &c)
			if c.bad != 1 || c.frames != 0 {
				t.Errorf("counts = %+v; want 1 bad, 0 frames", c)
			}
		})
	}
	blk := fakeBlock([][]byte{in}, 0, 0, frame.Offload{})
	ne.PutUint32(blk[bdFirstPkt:], uint32(len(blk)-8))
	var c rxCounts
	walkBlock(blk, make([]vswitch.Frame, 0, 4), nil, &c)
	if c.bad != 1 {
		t.Errorf("first packet offset past the block: counts %+v; want 1 bad", c)
	}
}

func TestVnetHdrRoundTrip(t *testing.T) {
	o := frame.Offload{Flags: 1, GSOType: frame.GSOTCPv6 | frame.GSOECN, HdrLen: 74, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}
	var b [frame.VnetHdrLen]byte
	o.Encode(b[:])
	if got := frame.DecodeOffload(b[:]); got != o {
		t.Errorf("decode(encode(%+v)) = %+v", o, got)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{{RXWorkers: 100}, {BlockSize: 5000}, {Blocks: 1}, {Batch: 5000}, {TX: 9}} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("withDefaults(%+v) accepted", c)
		}
	}
	if _, err := (Config{}).withDefaults(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

// BenchmarkWalkBlock: frames from a ring block through the switch to
// another port, 64 per block. No allocation per frame.
func BenchmarkWalkBlock(b *testing.B) {
	sw := vswitch.New(vswitch.Config{})
	h, _ := sw.AddPort(vswitch.PortConfig{Name: "up", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10}}, discard{})
	sw.AddPort(vswitch.PortConfig{Name: "g", Mode: vswitch.ModeAccess, PVID: 10}, discard{})
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = testFrame(64)
	}
	blk := fakeBlock(frames, 10, 0x8100, frame.Offload{})
	pristine := bytes.Clone(blk)
	fs := make([]vswitch.Frame, 0, 64)
	b.ReportAllocs()
	b.SetBytes(64 * 64)
	for b.Loop() {
		copy(blk, pristine[:16<<10]) // undo the in-place tag restore
		var c rxCounts
		walkBlock(blk, fs, h, &c)
	}
}

// BenchmarkSend: 64 frames per Send over a veth pair, ring vs sendmmsg.
func BenchmarkSend(b *testing.B) {
	netnstest.Need(b)
	netnstest.Run(b, "ip", "link", "add", "bs0", "type", "veth", "peer", "name", "bs1")
	b.Cleanup(func() { exec.Command("ip", "link", "del", "bs0").Run() })
	netnstest.Run(b, "ip", "link", "set", "bs0", "up")
	netnstest.Run(b, "ip", "link", "set", "bs1", "up")
	for _, mode := range []TXMode{TXRing, TXSendmmsg} {
		b.Run(mode.String(), func(b *testing.B) {
			p, err := Open("bs0", Config{TX: mode, QdiscBypass: true})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			fs := make([]vswitch.Frame, 64)
			for i := range fs {
				fs[i].Data = testFrame(64)
			}
			b.ReportAllocs()
			b.SetBytes(64 * 64)
			for b.Loop() {
				p.Send(fs)
			}
		})
	}
}
