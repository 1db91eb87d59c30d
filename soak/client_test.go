package soak

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost"
	"github.com/hvnet/hvnet/vhostuser/frontend"
)

// A client-mode port: the frontend listens on the socket and hvnet's port
// connects to it. The "daemon restart" fault closes the vhost.Port (the
// backend side: session, rings, workers) and creates a new one on the same
// socket while traffic runs; the frontend sees the hang-up, accepts the new
// connection and carries on. The switch port stays (a relay that forwards
// to whichever vhost.Port is current), so its counters span restarts; while
// no backend is there the relay accepts nothing: counted "no_buffer" drops.

// relay is the switch's Port for a restartable vhost.Port.
type relay struct {
	mu  sync.RWMutex
	cur vswitch.Port
}

func (r *relay) set(p vswitch.Port) {
	r.mu.Lock()
	r.cur = p
	r.mu.Unlock()
}

func (r *relay) Send(frames []vswitch.Frame) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cur == nil {
		return 0
	}
	return r.cur.Send(frames)
}

func (r *relay) Caps() vswitch.Caps {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cur == nil {
		return 0
	}
	return r.cur.Caps()
}

// daemon is the restartable backend of one client-mode port.
type daemon struct {
	sw     *vswitch.Switch
	cfg    vhost.PortConfig
	relay  relay
	handle *vswitch.PortHandle
	port   *vhost.Port
	done   chan struct{}
	starts int
}

func (d *daemon) start() error {
	p, err := vhost.NewPortAttached(d.cfg, func(vp vswitch.Port) (*vswitch.PortHandle, error) {
		d.relay.set(vp)
		if d.handle == nil {
			h, err := d.sw.AddPort(d.cfg.Port, &d.relay)
			if err != nil {
				return nil, err
			}
			d.handle = h
		}
		return d.handle, nil
	})
	if err != nil {
		return err
	}
	d.port, d.done = p, make(chan struct{})
	d.starts++
	go func() { defer close(d.done); p.Run(context.Background()) }()
	return nil
}

// stop closes the backend and waits until it released everything.
func (d *daemon) stop() {
	d.port.Close()
	<-d.done
	d.relay.set(nil)
}

func newDaemon(sw *vswitch.Switch, name, sock string) (*daemon, error) {
	d := &daemon{sw: sw, cfg: vhost.PortConfig{
		Port:   vswitch.PortConfig{Name: name, PVID: 1},
		Socket: sock, Mode: vhost.Client, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Error}),
	}}
	return d, d.start()
}

// listener is the frontend side of a client-mode port: it accepts the
// backend's connection and sets a session up; the returned channel closes
// when the backend hangs up.
func listener(ln *net.UnixListener) func(ctx context.Context) (*guest, <-chan struct{}, error) {
	return func(ctx context.Context) (*guest, <-chan struct{}, error) {
		ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
		c, err := ln.AcceptUnix()
		if err != nil {
			return nil, nil, err
		}
		g, err := newGuest(frontend.New(c))
		if err != nil {
			return nil, nil, err
		}
		// After set-up the backend sends nothing (no backend channel): a
		// read returns only at hang-up (or when the guest closes c).
		hup := make(chan struct{})
		go func() {
			var b [1]byte
			c.Read(b[:])
			close(hup)
		}()
		return g, hup, nil
	}
}
