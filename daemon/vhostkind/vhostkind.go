// Package vhostkind is the daemon's vhost-user port kind: a unix socket
// a QEMU, DPDK or libvirt frontend connects to (or that hvnet connects
// to, in client mode), served by package vhost.
package vhostkind

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

func init() { daemon.Register(kind{}, "port") }

// kind is the vhost-user kind.
type kind struct{}

func (kind) Name() string    { return api.KindVhostUser }
func (kind) Summary() string { return "a vhost-user socket for a QEMU, DPDK or libvirt frontend" }

func (kind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "socket", Value: "PATH", Help: "the unix socket", Required: true},
		{Key: "mode", Value: "server|client", Help: "hvnet listens (server, the default) or connects and reconnects (client)"},
		{Key: "queues", Value: "1..16", Help: "queue pairs offered to the frontend (default 1)"},
		{Key: "mac", Value: "MAC", Help: "the NIC's MAC, in its config space; with port security the only source MAC accepted"},
		{Key: "socket-mode", Value: "OCTAL", Help: "a server socket's mode (0660: its group may connect)"},
		{Key: "socket-owner", Value: "USER", Help: "a server socket's owner, by name or number"},
		{Key: "socket-group", Value: "GROUP", Help: "a server socket's group (libvirt-qemu, kvm), by name or number"},
	}
}

// spec is a parsed vhost-user port.
type spec struct{ c vhost.PortConfig }

func (kind) Parse(v daemon.Values, port vswitch.PortConfig) (daemon.Spec, error) {
	c := vhost.PortConfig{Socket: v.Get("socket"), Port: port}
	switch m := v.Get("mode"); m {
	case "", "server":
	case "client":
		c.Mode = vhost.Client
	default:
		return nil, daemon.Bad("mode", m, "is not server or client")
	}
	if q := v.Get("queues"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 16 {
			return nil, daemon.Bad("queues", q, "is not a number of queue pairs (1..16)")
		}
		c.QueuePairs = n
	}
	if m := v.Get("mac"); m != "" {
		mac, err := vswitch.ParseStationMAC(m)
		if err != nil {
			return nil, fmt.Errorf("field \"mac\": %w", err)
		}
		c.MAC = mac
	}
	a, err := daemon.ParseSocketAccess(v.Get("socket-mode"), v.Get("socket-owner"), v.Get("socket-group"),
		[3]string{"socket-mode", "socket-owner", "socket-group"})
	if err != nil {
		return nil, err
	}
	if c.Mode == vhost.Client && (a.Mode != 0 || a.Owner != nil || a.Group != nil) {
		return nil, daemon.Bad("socket-mode", "", "socket-mode, socket-owner and socket-group are for mode=server (a client's socket is the frontend's)")
	}
	c.SocketMode, c.SocketOwner, c.SocketGroup = a.Mode, a.Owner, a.Group
	if port.MTU >= 68 && port.MTU <= 65535 {
		c.MTU = uint16(port.MTU)
	}
	sock, err := filepath.Abs(c.Socket)
	if err != nil {
		return nil, daemon.Bad("socket", c.Socket, err.Error())
	}
	c.Socket = sock
	return &spec{c: c}, nil
}

// Claims: a server's socket is its own; a client's belongs to the
// frontend, which may serve several.
func (s *spec) Claims() []string {
	if s.c.Mode == vhost.Server {
		return []string{daemon.ClaimSocket(s.c.Socket)}
	}
	return nil
}

// Start makes the port and serves it until the daemon ends or the port
// is removed.
func (s *spec) Start(_ context.Context, h *daemon.Host, name string, attach vswitch.AttachFunc) (daemon.Backend, error) {
	c := s.c
	c.Port.Name = name
	if c.Mode == vhost.Server {
		// NewPort replaces a stale socket file: make sure it is stale.
		if conn, err := net.Dial("unix", c.Socket); err == nil {
			conn.Close()
			return nil, fmt.Errorf("port %q: socket %s is in use by another process", name, c.Socket)
		}
		if err := os.MkdirAll(filepath.Dir(c.Socket), 0o755); err != nil {
			return nil, fmt.Errorf("port %q: %w", name, err)
		}
	}
	c.Logger = h.Log.Named("vhost")
	sw := h.Switch
	c.OnDisconnect = func() { sw.Flush(name, 0) } // forget its MACs (the port may be gone: ignored)
	p, err := vhost.NewPortAttached(c, attach)
	if err != nil {
		return nil, err
	}
	b := &backend{p: p, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		if err := p.Run(h.Ctx); err != nil {
			h.Log.Error("vhost-user port stopped", "port", name, "error", err)
		}
	}()
	h.Log.Info("port ready", "port", name, "kind", api.KindVhostUser, "socket", c.Socket, "mode", c.Mode.String())
	return b, nil
}

// backend is a serving vhost-user port.
type backend struct {
	p    *vhost.Port
	done chan struct{} // closed when p.Run returned
}

// Close ends the port's session, removes a server's socket and waits for
// the port to stop.
func (b *backend) Close() error {
	err := b.p.Close()
	<-b.done
	return err
}

// DeviceCounters are the port's totals: its device over every session,
// the requests, memory and notification descriptors refused.
func (b *backend) DeviceCounters() *api.DeviceCounters {
	p := b.p
	n := p.NotifyStats()
	vc := &api.VhostCounters{
		Sessions: p.Sessions(), Connected: p.Connected(),
		RefusedFDs: n.RefusedFDs, RefusedMemFDs: n.RefusedMemFDs, RefusedMappings: n.RefusedMappings, RejectedRequests: n.RejectedRequests,
		NotifyStalls: n.NotifyStalls, NotifyErrors: n.NotifyErrors,
		NotifiersAbandoned: n.NotifiersAbandoned, WorkersAbandoned: n.WorkersAbandoned, KickHangups: n.KickHangups,
		SessionsRefused: n.SessionsRefused, Stuck: n.Stuck,
	}
	if f, pairs, ok := p.Negotiated(); ok && f != 0 {
		vc.Features, vc.ActivePairs = vnet.FeatureNames(f), pairs
	}
	return &api.DeviceCounters{Kind: api.KindVhostUser, VirtioCounters: daemon.VirtioCounters(p.DeviceStats()), VhostCounters: vc}
}
