package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
)

// Daemon owns the port backends: those of its configuration and those
// added through the control API (it is the API's PortFactory,
// DeviceReporter, GuestReporter and KindLister).
type Daemon struct {
	ctx    context.Context // the daemon's life: backends serve until it ends
	log    hclog.Logger
	sw     *vswitch.Switch
	api    string // the API socket, never a port's
	images func(context.Context) (string, string, error)

	// mu serialises adding and removing backends (rare; an add may take
	// a while to open rings or boot a guest) and guards ports and closed.
	mu     sync.Mutex
	ports  map[string]*backend
	byName sync.Map // name → *backend: d.ports for readers that must not wait on d.mu (DeviceCounters)
	closed bool
}

// backend is one port's running backend, what it was made from and what
// it claimed.
type backend struct {
	kind   string
	values Values
	claims []string
	b      Backend
}

var (
	_ api.PortFactory    = (*Daemon)(nil)
	_ api.DeviceReporter = (*Daemon)(nil)
	_ api.GuestReporter  = (*Daemon)(nil)
	_ api.TunnelReporter = (*Daemon)(nil)
	_ api.BondReporter   = (*Daemon)(nil)
	_ api.EVPNReporter   = (*Daemon)(nil)
	_ api.KindLister     = (*Daemon)(nil)
	_ api.SpecReporter   = (*Daemon)(nil)
	_ api.OptionsUpdater = (*Daemon)(nil)
)

// New returns a daemon whose backends live until ctx ends, on sw, with
// its API at apiSock ("" for none; no port may claim it).
func New(ctx context.Context, log hclog.Logger, sw *vswitch.Switch, apiSock string) *Daemon {
	return &Daemon{ctx: ctx, log: log, sw: sw, api: apiSock, ports: map[string]*backend{}}
}

// Preparer specs do slow work before their port is reserved (finding a
// guest's images, say), without holding up other ports' adds.
type Preparer interface {
	Prepare(ctx context.Context, h *Host) error
}

func (d *Daemon) host() *Host {
	return &Host{Ctx: d.ctx, Log: d.log, Switch: d.sw, Images: func(ctx context.Context) (string, string, error) {
		if d.images == nil {
			return "", "", errors.New("no guest images configured (hvnet switch --kernel K --initrd I)")
		}
		return d.images(ctx)
	}}
}

// start reserves p's name and claims, starts its backend and records it.
func (d *Daemon) start(ctx context.Context, p PortSpec, attach vswitch.AttachFunc) error {
	if p.spec == nil {
		return fmt.Errorf("port %q: not parsed (daemon.ParsePort or NewPortSpec)", p.Name())
	}
	h := d.host()
	if pr, ok := p.spec.(Preparer); ok {
		if err := pr.Prepare(ctx, h); err != nil {
			return err
		}
	}
	name, claims := p.Name(), p.spec.Claims()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reserve(name, claims); err != nil {
		return err
	}
	b, err := p.spec.Start(ctx, h, name, attach)
	if err != nil {
		return err
	}
	bp := &backend{kind: p.Kind, values: p.Values, claims: claims, b: b}
	d.ports[name] = bp
	d.byName.Store(name, bp)
	return nil
}

// reserve checks that a new port's name and claims are free; d.mu is
// held.
func (d *Daemon) reserve(name string, claims []string) error {
	if d.closed {
		return errors.New("the daemon is shutting down")
	}
	if _, ok := d.ports[name]; ok {
		return fmt.Errorf("port %q: %w", name, vswitch.ErrPortExists)
	}
	for _, c := range claims {
		if d.api != "" && c == ClaimSocket(d.api) {
			return fmt.Errorf("port %q: %s is the control API's", name, c)
		}
		for n, p := range d.ports {
			for _, o := range p.claims {
				if o == c {
					return fmt.Errorf("port %q: %s is port %q's", name, c, n)
				}
			}
		}
	}
	return nil
}

// ClaimSocket is the claim of a unix socket path (Spec.Claims).
func ClaimSocket(path string) string { return "socket " + path }

// ClaimInterface is the claim of a host network interface (Spec.Claims).
func ClaimInterface(name string) string { return "interface " + name }

// Add makes the backend an API request asks for (api.PortFactory): the
// kind's settings are the request's options.
func (d *Daemon) Add(ctx context.Context, spec api.PortSpec, attach vswitch.AttachFunc) error {
	v := apiValues(spec)
	port, aerr := api.SwitchConfig(spec.Config)
	if aerr != nil {
		return aerr
	}
	p, err := NewPortSpec(spec.Kind, port, v)
	if err != nil {
		return optionsError(err)
	}
	return d.start(ctx, p, attach)
}

// reconfigure offers port name the kind settings p (of the same kind)
// for its backend to take live (Reconfigurer), checking p's claims
// against the other ports first. It reports whether the backend took
// them; then the port's recorded settings and claims are p's.
func (d *Daemon) reconfigure(name string, p PortSpec) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bp, ok := d.ports[name]
	if !ok || bp.kind != p.Kind || p.spec == nil {
		return false, nil
	}
	rc, ok := bp.b.(Reconfigurer)
	if !ok {
		return false, nil
	}
	claims := p.spec.Claims()
	for _, c := range claims {
		if d.api != "" && c == ClaimSocket(d.api) {
			return false, fmt.Errorf("port %q: %s is the control API's", name, c)
		}
		for n, o := range d.ports {
			if n != name && slices.Contains(o.claims, c) {
				return false, fmt.Errorf("port %q: %s is port %q's", name, c, n)
			}
		}
	}
	done, err := rc.Reconfigure(p.spec)
	if err != nil || !done {
		return false, err
	}
	nb := &backend{kind: bp.kind, values: p.Values, claims: claims, b: bp.b}
	d.ports[name] = nb
	d.byName.Store(name, nb)
	return true, nil
}

// UpdateOptions applies new kind settings to a port live
// (api.OptionsUpdater): all its options, as POST /v1/ports takes them.
// Settings its backend cannot take live are refused (409): the port must
// be removed and added again.
func (d *Daemon) UpdateOptions(name string, opts map[string]api.OptionValue, port vswitch.PortConfig) error {
	d.mu.Lock()
	bp, ok := d.ports[name]
	d.mu.Unlock()
	if !ok {
		return &api.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("port %q: not made by this daemon", name)}
	}
	p, err := NewPortSpec(bp.kind, port, apiValues(api.PortSpec{Options: opts}))
	if err != nil {
		return optionsError(err)
	}
	done, err := d.reconfigure(name, p)
	if err != nil {
		return &api.Error{Status: http.StatusConflict, Field: "options", Message: err.Error()}
	}
	if !done {
		return &api.Error{Status: http.StatusConflict, Field: "options",
			Message: fmt.Sprintf("a %s port cannot take these settings live: remove the port and add it again", bp.kind)}
	}
	d.log.Info("port reconfigured live", "port", name, "kind", bp.kind)
	return nil
}

// optionsError is a kind's refusal of a request's options as the API's
// error, naming the field.
func optionsError(err error) *api.Error {
	var oe *OptionError
	var ke *UnknownKindError
	switch {
	case errors.As(err, &oe):
		msg := oe.Msg
		if oe.Value != "" {
			msg = strconv.Quote(oe.Value) + " " + msg
		}
		return &api.Error{Status: http.StatusBadRequest, Field: "options." + oe.Key, Message: msg}
	case errors.As(err, &ke):
		return &api.Error{Status: http.StatusBadRequest, Field: "kind", Message: err.Error()}
	}
	return &api.Error{Status: http.StatusBadRequest, Message: err.Error()}
}

// apiValues are a request's kind settings, their keys spelled as the
// kind declares them ("_" in a JSON key stands for "-").
func apiValues(spec api.PortSpec) Values {
	v := Values{}
	for key, vals := range spec.Options {
		key = strings.ReplaceAll(key, "_", "-")
		v[key] = append(v[key], vals...)
	}
	return v
}

// Remove stops a port's backend (api.PortFactory: the switch port is
// already detached).
func (d *Daemon) Remove(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bp := d.ports[name]
	if bp == nil {
		return nil
	}
	d.forget(name)
	return bp.b.Close()
}

func (d *Daemon) forget(name string) {
	delete(d.ports, name)
	d.byName.Delete(name)
}

// Close stops every backend and detaches its switch port; nothing can be
// added afterwards.
func (d *Daemon) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for name, bp := range d.ports {
		if df, ok := bp.b.(DetachFirst); ok && df.DetachFirst() {
			d.sw.RemovePort(name)
		}
		if err := bp.b.Close(); err != nil {
			d.log.Warn("port did not close cleanly", "port", name, "error", err)
		}
		d.sw.RemovePort(name)
		d.forget(name)
	}
}

// DeviceCounters returns the named port's backend counters
// (api.DeviceReporter): nil for a port that is not the daemon's or whose
// kind keeps none. It never waits on d.mu (held while a port is added,
// which may boot a guest).
func (d *Daemon) DeviceCounters(name string) *api.DeviceCounters {
	v, ok := d.byName.Load(name)
	if !ok {
		return nil
	}
	if r, ok := v.(*backend).b.(DeviceReporter); ok {
		return r.DeviceCounters()
	}
	return nil
}

// Guest reports the state of the guest behind a port (api.GuestReporter).
func (d *Daemon) Guest(name string) *api.GuestInfo {
	v, ok := d.byName.Load(name)
	if !ok {
		return nil
	}
	if r, ok := v.(*backend).b.(GuestReporter); ok {
		return r.Guest()
	}
	return nil
}

// Tunnel reports the state of a tunnel port (api.TunnelReporter).
func (d *Daemon) Tunnel(name string) *api.TunnelInfo {
	v, ok := d.byName.Load(name)
	if !ok {
		return nil
	}
	if r, ok := v.(*backend).b.(TunnelReporter); ok {
		return r.Tunnel()
	}
	return nil
}

// Bond reports the state of a bond port (api.BondReporter).
func (d *Daemon) Bond(name string) *api.BondInfo {
	v, ok := d.byName.Load(name)
	if !ok {
		return nil
	}
	if r, ok := v.(*backend).b.(BondReporter); ok {
		return r.Bond()
	}
	return nil
}

// EVPN returns the BGP EVPN control plane of a tunnel port
// (api.EVPNReporter), nil when it runs none.
func (d *Daemon) EVPN(name string) api.EVPNPort {
	v, ok := d.byName.Load(name)
	if !ok {
		return nil
	}
	if r, ok := v.(*backend).b.(EVPNReporter); ok {
		return r.EVPN()
	}
	return nil
}

// PortSpec says what the named port was made as (api.SpecReporter): its
// kind and its kind settings; "" for a port that is not the daemon's.
func (d *Daemon) PortSpec(name string) (string, map[string][]string) {
	v, ok := d.byName.Load(name)
	if !ok {
		return "", nil
	}
	bp := v.(*backend)
	return bp.kind, bp.values
}

// Kinds lists the port kinds POST /v1/ports can make (api.KindLister).
func (d *Daemon) Kinds() []string { return Kinds() }

// Segment is the VXLAN VNI a tunnel port (kind vxlan) carries vlan in, 0
// for any other port or VLAN: flow export's layer2SegmentId.
func (d *Daemon) Segment(port string, vlan uint16) uint32 {
	v, ok := d.byName.Load(port)
	if !ok {
		return 0
	}
	b := v.(*backend)
	if b.kind != "vxlan" {
		return 0
	}
	for _, s := range b.values["vni"] { // VNI:VLAN, checked by the kind
		vs, ls, _ := strings.Cut(s, ":")
		if l, err := strconv.ParseUint(ls, 10, 16); err == nil && uint16(l) == vlan {
			if n, err := strconv.ParseUint(vs, 10, 32); err == nil {
				return uint32(n)
			}
		}
	}
	return 0
}
