package api

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// memPort is an in-memory switch port that records what it is sent.
type memPort struct {
	mu  sync.Mutex
	got [][]byte
}

func (p *memPort) Send(frames []vswitch.Frame) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range frames {
		p.got = append(p.got, append([]byte(nil), f.Data...))
	}
	return len(frames)
}

func (p *memPort) Caps() vswitch.Caps { return 0 }

func (p *memPort) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// fakeFactory makes memPorts for POST /v1/ports.
type fakeFactory struct {
	mu      sync.Mutex
	added   []PortSpec
	removed []string
	handles map[string]*vswitch.PortHandle
	fail    error
	before  func(context.Context) error // called first (a slow backend)
	// evpn and tunnels are the ports' control planes and tunnel states
	// (EVPNReporter, TunnelReporter); set before the first request.
	evpn    map[string]*fakeEVPN
	tunnels map[string]*TunnelInfo
}

func (f *fakeFactory) Add(ctx context.Context, spec PortSpec, attach vswitch.AttachFunc) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if f.before != nil {
		if err := f.before(ctx); err != nil {
			return err
		}
	}
	h, err := attach(&memPort{})
	if err != nil {
		return err
	}
	f.added = append(f.added, spec)
	f.handles[spec.Config.Name] = h
	return nil
}

func (f *fakeFactory) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.handles[name]; !ok {
		return errors.New("not mine")
	}
	delete(f.handles, name)
	f.removed = append(f.removed, name)
	return nil
}

func mac(last byte) vswitch.MAC { return vswitch.MAC{0x02, 0, 0, 0, 0, last} }

// eth builds an untagged IPv4-typed frame with n payload bytes.
func eth(dst, src vswitch.MAC, n int) []byte {
	b := make([]byte, 14+n)
	copy(b, dst[:])
	copy(b[6:], src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	for i := range n {
		b[14+i] = byte(i)
	}
	return b
}

// env is a switch with ports a, b (access VLAN 10) and t (trunk 10, 20),
// served on a unix socket, with a client; file mirrors go to captureDir,
// API vhost-user sockets to socketDir.
type env struct {
	t       *testing.T
	sw      *vswitch.Switch
	clock   *vswitch.ManualClock
	h       map[string]*vswitch.PortHandle
	p       map[string]*memPort
	srv     *Server
	c       *Client
	sock    string
	factory *fakeFactory

	captureDir, socketDir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the server's options changed by opts.
func newEnvWith(t *testing.T, opts func(*Options)) *env {
	t.Helper()
	e := &env{t: t, clock: vswitch.NewManualClock(1_700_000_000_000_000_000),
		h: map[string]*vswitch.PortHandle{}, p: map[string]*memPort{},
		factory: &fakeFactory{handles: map[string]*vswitch.PortHandle{}}}
	e.sw = vswitch.New(vswitch.Config{Clock: e.clock})
	for _, c := range []vswitch.PortConfig{
		{Name: "a", Mode: vswitch.ModeAccess, PVID: 10},
		{Name: "b", Mode: vswitch.ModeAccess, PVID: 10},
		{Name: "t", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}},
	} {
		p := &memPort{}
		h, err := e.sw.AddPort(c, p)
		if err != nil {
			t.Fatal(err)
		}
		e.h[c.Name], e.p[c.Name] = h, p
	}
	e.captureDir, e.socketDir = t.TempDir(), t.TempDir()
	o := Options{Ports: e.factory, CaptureDir: e.captureDir, SocketDir: e.socketDir, FlowExport: ipfix.New(e.sw, ipfix.Options{})}
	if opts != nil {
		opts(&o)
	}
	e.srv = NewServer(e.sw, o)
	e.sock = filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeListener(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeListener: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not stop")
		}
	})
	e.c = NewClient(e.sock)
	return e
}

// send feeds n frames from port `from` (source MAC src) to dst.
func (e *env) send(from string, src, dst vswitch.MAC, n int) {
	frames := make([]vswitch.Frame, n)
	for i := range frames {
		frames[i].Data = eth(dst, src, 50)
	}
	e.h[from].Input(frames)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantError checks err is an *Error with status and field.
func wantError(t *testing.T, err error, status int, field string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *Error %d %q", err, err, status, field)
	}
	if e.Status != status || e.Field != field {
		t.Fatalf("error = %d field %q (%q), want %d field %q", e.Status, e.Field, e.Message, status, field)
	}
}
