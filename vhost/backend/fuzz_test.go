package backend

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// fakeConn replays messages from fuzz input: each is one byte of
// descriptor count (mod 4), then a header and size bytes of payload.
// Descriptors are fresh eventfds for the vring requests and 1 MiB memfds
// otherwise, as a frontend would send.
type fakeConn struct {
	data    []byte
	replies int
	nacks   int
}

const fuzzMemSize = 1 << 20

func (c *fakeConn) ReadMsg() (*proto.Msg, error) {
	if len(c.data) < 1+proto.HeaderSize {
		return nil, io.EOF
	}
	nfd := int(c.data[0] % 4)
	h, err := proto.DecodeHeader(c.data[1:])
	if err != nil {
		return nil, err
	}
	c.data = c.data[1+proto.HeaderSize:]
	n := min(int(h.Size), len(c.data))
	m := &proto.Msg{Header: h, Payload: append([]byte(nil), c.data[:n]...)}
	c.data = c.data[n:]
	for range nfd {
		var fd int
		switch h.Request {
		case proto.SetVringKick, proto.SetVringCall, proto.SetVringErr:
			fd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		default:
			fd, err = unix.MemfdCreate("fuzz", unix.MFD_CLOEXEC)
			if err == nil {
				err = unix.Ftruncate(fd, fuzzMemSize)
			}
		}
		if err != nil {
			panic(err)
		}
		m.FDs = append(m.FDs, fd)
	}
	return m, nil
}

func (c *fakeConn) WriteMsg(req proto.Request, flags uint32, payload []byte, fds ...int) error {
	c.replies++
	if len(payload) == 8 && proto.U64(payload) != 0 && req != proto.GetFeatures && req != proto.GetProtocolFeatures && req != proto.GetVringBase {
		c.nacks++
	}
	return nil
}

// seedMsg encodes one message for the fake connection.
func seedMsg(nfd byte, req proto.Request, flags uint32, payload []byte) []byte {
	b := []byte{nfd}
	var h [proto.HeaderSize]byte
	proto.Header{Request: req, Flags: flags, Size: uint32(len(payload))}.Encode(h[:])
	return append(append(b, h[:]...), payload...)
}

// seedSession is a valid start-up sequence with one ring pair in the
// frontend's memory at UVA 0x7f00_0000_0000, GPA 0.
func seedSession() []byte {
	const uva = 0x7f00_0000_0000
	v := uint32(proto.Version | proto.FlagNeedReply)
	var b []byte
	add := func(nfd byte, req proto.Request, p []byte) { b = append(b, seedMsg(nfd, req, v, p)...) }
	add(0, proto.GetFeatures, nil)
	add(0, proto.GetProtocolFeatures, nil)
	add(0, proto.SetProtocolFeatures, proto.PutU64(1<<proto.PFReplyAck|1<<proto.PFLogSHMFD|1<<proto.PFConfigureMemSlots))
	add(0, proto.SetOwner, nil)
	add(0, proto.SetFeatures, proto.PutU64(virtio.Feature(virtio.FVersion1)|1<<proto.FProtocolFeatures|virtio.Feature(virtio.FEventIdx)))
	add(1, proto.SetMemTable, proto.EncodeMemTable([]proto.MemRegion{{GPA: 0, Size: fuzzMemSize, UVA: uva}}))
	for q := uint32(0); q < 2; q++ {
		base := uint64(q) * 0x10000
		add(0, proto.SetVringNum, proto.VringState{Index: q, Num: 64}.Encode())
		add(0, proto.SetVringBase, proto.VringState{Index: q}.Encode())
		add(0, proto.SetVringAddr, proto.VringAddr{Index: q, Desc: uva + base, Avail: uva + base + 0x400, Used: uva + base + 0x1000}.Encode())
		add(1, proto.SetVringCall, proto.PutU64(uint64(q)))
		add(1, proto.SetVringKick, proto.PutU64(uint64(q)))
		add(0, proto.SetVringEnable, proto.VringState{Index: q, Num: 1}.Encode())
	}
	add(1, proto.SetLogBase, proto.LogDesc{Size: 4096}.Encode())
	add(0, proto.GetConfig, proto.Config{Data: make([]byte, 12)}.Encode())
	add(0, proto.GetVringBase, proto.VringState{Index: 1}.Encode())
	add(1, proto.AddMemReg, proto.EncodeMemReg(proto.MemRegion{GPA: 1 << 30, Size: fuzzMemSize, UVA: uva + 1<<30}))
	add(0, proto.RemMemReg, proto.EncodeMemReg(proto.MemRegion{GPA: 1 << 30, Size: fuzzMemSize, UVA: uva + 1<<30}))
	add(0, proto.ResetOwner, nil)
	return b
}

// seedRemoveAll starts the rings, then removes the memory they live in.
func seedRemoveAll() []byte {
	b := seedSession()
	i := len(b) - len(seedMsg(0, proto.ResetOwner, 0, nil))
	return append(b[:i:i], seedMsg(0, proto.RemMemReg, proto.Version,
		proto.EncodeMemReg(proto.MemRegion{GPA: 0, Size: fuzzMemSize, UVA: 0x7f00_0000_0000}))...)
}

func openFDs(t testing.TB) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// FuzzSession feeds arbitrary message sequences through the decoder and the
// handlers: nothing may panic, and every descriptor received is closed by
// the time Serve returns.
func FuzzSession(f *testing.F) {
	f.Add(seedSession())
	f.Add(seedRemoveAll())
	f.Add(seedMsg(0, proto.SetVringNum, proto.Version, proto.VringState{Index: 0, Num: 100}.Encode()))
	f.Add(seedMsg(2, proto.SetMemTable, proto.Version, proto.EncodeMemTable([]proto.MemRegion{
		{GPA: 0, Size: 4096, UVA: 0}, {GPA: 2048, Size: 4096, UVA: 8192}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := openFDs(t)
		s, err := New(Config{Name: "fuzz", Sink: vnet.SinkFunc(func([]vnet.Frame) {})})
		if err != nil {
			t.Fatal(err)
		}
		s.Serve(&fakeConn{data: data})
		if after := openFDs(t); after != before {
			t.Fatalf("%d descriptors open after the session, %d before", after, before)
		}
	})
}

// The seed is a valid session end to end: every message accepted.
func TestSeedSessionIsValid(t *testing.T) {
	s, err := New(Config{Name: "seed", Sink: vnet.SinkFunc(func([]vnet.Frame) {})})
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeConn{data: seedSession()}
	if err := s.Serve(c); err != nil {
		t.Fatalf("Serve(seed) = %v", err)
	}
	if c.replies < 20 || c.nacks != 0 {
		t.Errorf("%d replies, %d NACKs; want one per message (REPLY_ACK), none failed", c.replies, c.nacks)
	}
}

// TestWriteSeedCorpus regenerates testdata/fuzz/FuzzSession/seed-session
// when HVNET_WRITE_CORPUS=1.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("HVNET_WRITE_CORPUS") != "1" {
		t.Skip("set HVNET_WRITE_CORPUS=1 to rewrite the checked-in seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzSession")
	os.MkdirAll(dir, 0o755)
	body := "go test fuzz v1\n[]byte(" + quote(seedSession()) + ")\n"
	if err := os.WriteFile(filepath.Join(dir, "seed-session"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func quote(b []byte) string {
	s := []byte{'"'}
	for _, c := range b {
		s = append(s, '\\', 'x')
		const hex = "0123456789abcdef"
		s = append(s, hex[c>>4], hex[c&15])
	}
	return string(append(s, '"'))
}
