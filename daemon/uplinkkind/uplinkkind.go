// Package uplinkkind is the daemon's uplink port kind: an AF_PACKET
// socket on a host interface (package uplink), the switch's way to the
// physical network.
package uplinkkind

import (
	"context"
	"fmt"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

func init() { daemon.Register(kind{}) }

type kind struct{}

func (kind) Name() string    { return api.KindUplink }
func (kind) Summary() string { return "an AF_PACKET uplink on a host interface" }

func (kind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "if", Value: "IFACE", Help: "the host interface", Required: true},
		{Key: "tx", Value: "ring|sendmmsg", Help: "how frames are sent: the TPACKET ring (default) or sendmmsg"},
	}
}

type spec struct {
	iface string
	tx    uplink.TXMode
}

func (kind) Parse(v daemon.Values, _ vswitch.PortConfig) (daemon.Spec, error) {
	s := &spec{iface: v.Get("if")}
	if t := v.Get("tx"); t != "" {
		m, err := uplink.ParseTXMode(t)
		if err != nil {
			return nil, daemon.Bad("tx", t, "is not ring or sendmmsg")
		}
		s.tx = m
	}
	return s, nil
}

// LinkSpeed is the interface's speed as the kernel reports it: rate=link.
func (kind) LinkSpeed(v daemon.Values) (int64, error) { return uplink.LinkSpeed(v.Get("if")) }

func (s *spec) Claims() []string { return []string{daemon.ClaimInterface(s.iface)} }

// Start opens the uplink's sockets and rings and starts it.
func (s *spec) Start(_ context.Context, h *daemon.Host, name string, attach vswitch.AttachFunc) (daemon.Backend, error) {
	p, err := uplink.Open(s.iface, uplink.Config{Logger: h.Log.Named("uplink").With("port", name), TX: s.tx})
	if err != nil {
		return nil, fmt.Errorf("uplink %q: %w", name, err)
	}
	ph, err := attach(p)
	if err != nil {
		p.Close()
		return nil, err
	}
	if err := p.Start(ph); err != nil {
		p.Close()
		return nil, fmt.Errorf("uplink %q: %w", name, err)
	}
	h.Log.Info("port ready", "port", name, "kind", api.KindUplink, "interface", s.iface, "tx", s.tx.String())
	return backend{p}, nil
}

type backend struct{ p *uplink.Port }

// Close closes the uplink's sockets and rings.
func (b backend) Close() error { return b.p.Close() }

// DeviceCounters are the uplink's own losses and re-attachments.
func (b backend) DeviceCounters() *api.DeviceCounters {
	return &api.DeviceCounters{Kind: api.KindUplink, UplinkCounters: Counters(b.p.Stats())}
}

// Counters are an uplink's own losses and re-attachments as the API
// shows them.
func Counters(st uplink.Stats) *api.UplinkCounters {
	return &api.UplinkCounters{RxDropBad: st.RxBad, RxDropKernel: st.RxKernelDrops, RxSocketErrors: st.RxSocketErrors,
		TxErrors: st.TxErrors, Attaches: st.Attaches}
}
