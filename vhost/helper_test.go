package vhost

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/frontend/frontendtest"
	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

const (
	guestBase = 0x10_0000
	guestSize = 1 << 20
	qSize     = 64
	hdrLen    = 12 // virtio_net_hdr_v1
)

// testPort starts a server-mode port on sw and stops it at cleanup.
func testPort(t testing.TB, sw *vswitch.Switch, name string, pvid uint16) (*Port, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), name+".sock")
	p := startPort(t, sw, PortConfig{Port: vswitch.PortConfig{Name: name, PVID: pvid}, Socket: sock})
	return p, sock
}

// events counts a port's sessions starting and ending.
type events struct {
	up, down chan struct{}
}

func newEvents() *events {
	return &events{up: make(chan struct{}, 1000), down: make(chan struct{}, 1000)}
}

func (e *events) hook(cfg *PortConfig) {
	cfg.OnConnect = func() { e.up <- struct{}{} }
	cfg.OnDisconnect = func() { e.down <- struct{}{} }
}

// portPair is two server ports, "a" and "b", on one new switch, their
// sockets in a temporary directory, their sessions counted.
type portPair struct {
	a, b     *Port
	ca, cb   PortConfig
	evA, evB *events
}

// startPair starts a portPair with access VLANs vlanA and vlanB; edit, if
// not nil, changes each config before its port starts.
func startPair(t testing.TB, vlanA, vlanB uint16, edit func(*PortConfig)) portPair {
	t.Helper()
	sw := vswitch.New(vswitch.Config{})
	dir := t.TempDir()
	pp := portPair{evA: newEvents(), evB: newEvents(),
		ca: PortConfig{Port: vswitch.PortConfig{Name: "a", PVID: vlanA}, Socket: filepath.Join(dir, "a.sock")},
		cb: PortConfig{Port: vswitch.PortConfig{Name: "b", PVID: vlanB}, Socket: filepath.Join(dir, "b.sock")}}
	pp.evA.hook(&pp.ca)
	pp.evB.hook(&pp.cb)
	if edit != nil {
		edit(&pp.ca)
		edit(&pp.cb)
	}
	pp.a, pp.b = startPort(t, sw, pp.ca), startPort(t, sw, pp.cb)
	return pp
}

// startPort runs a port with cfg until cleanup.
func startPort(t testing.TB, sw *vswitch.Switch, cfg PortConfig) *Port {
	t.Helper()
	name := cfg.Port.Name
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.LevelFromString(envOr("HVNET_TEST_LOG", "warn"))})
	}
	p, err := NewPort(sw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("port %s: Run = %v", name, err)
		}
		p.Remove()
	})
	return p
}

// guest is a frontend with one queue pair driven by virtiotest mocks.
type guest struct {
	t      testing.TB
	fg     *frontendtest.Guest // the shared frontend these fields come from
	f      *frontend.Frontend
	mem    *frontend.Memory
	rx, tx *virtiotest.Driver
	kick   [2]*virtio.EventFD
	call   [2]*virtio.EventFD
}

func dialGuest(t testing.TB, sock string) *guest {
	t.Helper()
	f, err := frontend.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	return dialGuestConn(t, f)
}

// dialGuestConn builds a guest on an established frontend connection.
func dialGuestConn(t testing.TB, f *frontend.Frontend) *guest {
	t.Helper()
	g, err := newGuest(f)
	if err != nil {
		t.Fatal(err)
	}
	g.t = t
	t.Cleanup(g.close)
	return g
}

// newGuest builds a guest on f: memory, rings, eventfds (f is closed on
// error). Its t is nil: the must* helpers need one.
func newGuest(f *frontend.Frontend) (*guest, error) {
	fg, err := frontendtest.New(f, frontendtest.Config{MemSize: guestSize, MemBase: guestBase, QueueSize: qSize})
	if err != nil {
		return nil, err
	}
	return &guest{fg: fg, f: fg.F, mem: fg.Mem, rx: fg.RX, tx: fg.TX, kick: fg.Kick, call: fg.Call}, nil
}

// sync hands the descriptors a test may have replaced (g.call, g.kick)
// back to the shared frontend.
func (g *guest) sync() {
	g.fg.F, g.fg.Mem, g.fg.Kick, g.fg.Call = g.f, g.mem, g.kick, g.call
}

func (g *guest) close() {
	g.sync()
	g.fg.Close()
	g.f, g.mem = nil, nil
}

// negotiate runs the start-up sequence QEMU runs (features, memory, rings).
func (g *guest) negotiate() error { return g.negotiateFeatures(0) }

// negotiateFeatures is negotiate accepting extra virtio-net features too.
func (g *guest) negotiateFeatures(extra uint64) error {
	g.sync()
	return g.fg.Negotiate(extra)
}

func (g *guest) mustNegotiate() {
	g.t.Helper()
	if err := g.negotiate(); err != nil {
		g.t.Fatal(err)
	}
}

// send transmits frames (each behind a zero virtio-net header) and kicks.
func (g *guest) send(frames ...[]byte) {
	g.tx.FreeAll()
	for _, fr := range frames {
		g.tx.Push(g.tx.AddChain(virtiotest.Buf{Data: append(make([]byte, hdrLen), fr...)}))
	}
	if err := g.kick[1].Signal(); err != nil {
		g.t.Fatal(err)
	}
}

// waitTxDone waits until the backend has used every chain sent.
func (g *guest) waitTxDone() {
	g.t.Helper()
	for g.tx.UsedIdx() != g.tx.AvailIdx() {
		if !g.waitCall(1) {
			g.t.Fatal("transmitted chains not used in 10 s")
		}
	}
}

// waitCall blocks until queue i's call eventfd fires (10 s deadlock guard).
func (g *guest) waitCall(i int) bool { return waitFD(g.call[i], 10_000) }

// postRx makes n receive buffers of 2 KiB available.
func (g *guest) postRx(n int) {
	for range n {
		g.rx.Push(g.rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
	}
	g.kick[0].Signal()
}

// recv waits for n received frames and returns them without headers.
func (g *guest) recv(n int) [][]byte {
	g.t.Helper()
	var out [][]byte
	for len(out) < n {
		for {
			u, ok := g.rx.PopUsed()
			if !ok {
				break
			}
			d := g.rx.BufAddr(uint16(u.ID), 0)
			b := g.rx.Bytes(d.Addr, uint64(u.Len))
			out = append(out, append([]byte(nil), b[hdrLen:]...))
		}
		if len(out) < n && !g.waitCall(0) {
			g.t.Fatalf("received %d frames, want %d (no call in 10 s)", len(out), n)
		}
	}
	return out
}

// ethFrame builds a 60-byte Ethernet frame from src to dst carrying seq.
func ethFrame(dst, src byte, seq byte) []byte {
	b := make([]byte, 60)
	if dst == 0xff {
		copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	} else {
		copy(b, []byte{2, 0, 0, 0, 0, dst})
	}
	copy(b[6:], []byte{2, 0, 0, 0, 0, src})
	b[12], b[13] = 0x88, 0xb5 // local experimental ethertype
	b[14] = seq
	return b
}

// waitFor waits for cond, signalled through ch (10 s deadlock guard).
func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
