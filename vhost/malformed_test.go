package vhost

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// badCase is one malformed message. prelude runs first (a valid start-up
// prefix); then msg is sent raw.
type badCase struct {
	name    string
	prelude func(g *guest) error
	send    func(g *guest) error
}

func raw(req proto.Request, payload []byte, fds ...int) func(g *guest) error {
	return func(g *guest) error { return g.f.Conn().WriteMsg(req, proto.Version, payload, fds...) }
}

func withMemory(g *guest) error {
	if err := g.f.SetFeatures(virtio.Feature(virtio.FVersion1) | 1<<proto.FProtocolFeatures); err != nil {
		return err
	}
	return g.f.SetMemTable(g.mem.Region())
}

func region(g *guest, gpa, size, uva uint64) []byte {
	return proto.EncodeMemTable([]proto.MemRegion{{GPA: gpa, Size: size, UVA: uva}})
}

var badCases = []badCase{
	{name: "WrongSize", send: raw(proto.SetFeatures, []byte{1, 2, 3, 4})},
	{name: "UnknownRequest", send: raw(proto.Request(99), nil)},
	{name: "PayloadTooBig", send: func(g *guest) error {
		var h [proto.HeaderSize]byte
		proto.Header{Request: proto.SetFeatures, Flags: proto.Version, Size: proto.MaxPayload + 1}.Encode(h[:])
		return g.f.Conn().WriteRaw(h[:])
	}},
	{name: "BadVersion", send: func(g *guest) error { return g.f.Conn().WriteMsg(proto.GetFeatures, 2, nil) }},
	{name: "MissingFD", send: func(g *guest) error {
		return raw(proto.SetMemTable, region(g, guestBase, guestSize, g.mem.Region().UVA))(g)
	}},
	{name: "ExtraFD", send: func(g *guest) error {
		return raw(proto.SetFeatures, proto.PutU64(virtio.Feature(virtio.FVersion1)), g.mem.FD)(g)
	}},
	{name: "KickWithoutFD", send: raw(proto.SetVringKick, proto.PutU64(0))},
	{name: "OverlappingRegions", send: func(g *guest) error {
		r := g.mem.Region()
		tbl := proto.EncodeMemTable([]proto.MemRegion{
			{GPA: guestBase, Size: guestSize, UVA: r.UVA},
			{GPA: guestBase + guestSize/2, Size: guestSize, UVA: r.UVA + 4*guestSize},
		})
		return raw(proto.SetMemTable, tbl, g.mem.FD, g.mem.FD)(g)
	}},
	{name: "OverflowingRegion", send: func(g *guest) error {
		return raw(proto.SetMemTable, region(g, 1<<64-0x1000, 0x2000, 0x1000), g.mem.FD)(g)
	}},
	{name: "RingOutsideMemory", prelude: func(g *guest) error {
		if err := withMemory(g); err != nil {
			return err
		}
		return g.f.SetVringNum(1, qSize)
	}, send: raw(proto.SetVringAddr, proto.VringAddr{Index: 1, Desc: 0x1000, Avail: 0x2000, Used: 0x3000}.Encode())},
	{name: "QueueIndexOutOfRange", send: raw(proto.SetVringNum, proto.VringState{Index: 7, Num: 64}.Encode())},
	{name: "QueueSizeNotPowerOfTwo", send: raw(proto.SetVringNum, proto.VringState{Index: 0, Num: 100}.Encode())},
	{name: "QueueSizeTooLarge", send: raw(proto.SetVringNum, proto.VringState{Index: 0, Num: 1 << 15}.Encode())},
	{name: "FeaturesNotOffered", send: raw(proto.SetFeatures, proto.PutU64(1<<63))},
	{name: "ReplyBitOnRequest", send: func(g *guest) error {
		return g.f.Conn().WriteMsg(proto.SetOwner, proto.Version|proto.FlagReply, nil)
	}},
}

// Each malformed message closes only its own connection, with a log line;
// the other ports keep forwarding.
func TestMalformed(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	ev := newEvents()
	cfg := PortConfig{Port: vswitch.PortConfig{Name: "victim", PVID: 1}, Socket: filepath.Join(t.TempDir(), "v.sock")}
	ev.hook(&cfg)
	startPort(t, sw, cfg)
	a, b := dialGuest(t, sockA), dialGuest(t, sockB)
	a.mustNegotiate()
	b.mustNegotiate()
	for i, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			g := dialGuest(t, cfg.Socket)
			waitFor(t, ev.up, "session start")
			if tc.prelude != nil {
				if err := tc.prelude(g); err != nil {
					t.Fatalf("prelude: %v", err)
				}
			}
			if err := tc.send(g); err != nil {
				t.Fatalf("sending: %v", err)
			}
			if m, err := g.f.Conn().ReadMsg(); err == nil {
				t.Fatalf("backend answered %v (% x) instead of closing the connection", m.Request, m.Payload)
			}
			waitFor(t, ev.down, "session end")
			g.close()
			// The other ports still forward.
			b.postRx(1)
			f := ethFrame(0xff, 1, byte(i))
			a.send(f)
			if got := b.recv(1); !bytes.Equal(got[0], f) {
				t.Fatalf("after %s: b received % x, want % x", tc.name, got[0], f)
			}
		})
	}
}

// With REPLY_ACK negotiated an invalid value is NACKed and the session
// goes on.
func TestMalformedReplyAck(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sock := testPort(t, sw, "a", 1)
	g := dialGuest(t, sock)
	if err := g.f.SetProtocolFeatures(1 << proto.PFReplyAck); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"QueueIndexOutOfRange", g.f.SetVringNum(9, 64)},
		{"QueueSizeNotPowerOfTwo", g.f.SetVringNum(0, 100)},
		{"OverflowingRegion", g.f.SetMemTable(frontend.Region{MemRegion: proto.MemRegion{GPA: 1<<64 - 0x1000, Size: 0x2000}, FD: g.mem.FD})},
	} {
		if !errors.Is(tc.err, frontend.ErrRejected) {
			t.Errorf("%s: error %v, want ErrRejected", tc.name, tc.err)
		}
	}
	g.mustNegotiate() // the same session still works
}

// Removing the memory running rings live in stops them instead of letting
// the dataplane touch unmapped memory; with REPLY_ACK the frontend hears
// nothing is wrong with the request itself, and the port goes on.
func TestRemoveMemoryUnderRunningRings(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	a, b := dialGuest(t, sockA), dialGuest(t, sockB)
	a.mustNegotiate()
	b.mustNegotiate()
	b.postRx(4)
	a.send(ethFrame(0xff, 1, 1))
	b.recv(1)
	// REM_MEM_REG and ADD_MEM_REG need CONFIGURE_MEM_SLOTS (the shared
	// start-up sequence does not negotiate it).
	if err := b.f.SetProtocolFeatures(1<<proto.PFReplyAck | 1<<proto.PFMQ | 1<<proto.PFLogSHMFD | 1<<proto.PFConfigureMemSlots); err != nil {
		t.Fatal(err)
	}
	if err := b.f.RemMemReg(b.mem.Region()); err != nil {
		t.Fatalf("REM_MEM_REG: %v", err)
	}
	a.send(ethFrame(0xff, 1, 2)) // b has no memory: dropped, nothing crashes
	a.waitTxDone()
	// b maps its memory again and restarts its rings; traffic resumes.
	if err := b.f.AddMemReg(b.mem.Region()); err != nil {
		t.Fatal(err)
	}
	for q := uint32(0); q < 2; q++ {
		if _, err := b.f.GetVringBase(q); err != nil {
			t.Fatal(err)
		}
	}
	b.close()
	b = dialGuest(t, sockB)
	b.mustNegotiate()
	b.postRx(1)
	f := ethFrame(0xff, 1, 3)
	a.send(f)
	if got := b.recv(1); !bytes.Equal(got[0], f) {
		t.Fatalf("got % x", got[0])
	}
}
