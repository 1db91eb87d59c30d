package vswitch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/conntrack"
)

// Switch is an IEEE 802.1Q VLAN-aware bridge with 802.1ad tunnel ports.
// Its methods are safe for concurrent use.
type Switch struct {
	log      hclog.Logger
	clock    Clock
	fdb      *fdb
	macLimit int // ports' MAC limit when theirs is 0 (Config.MACLimit)

	mu     sync.Mutex // control plane: ports, topology rebuilds
	ports  map[string]*PortHandle
	topo   atomic.Pointer[topology]
	mirror atomic.Pointer[mirrorRef]
	ct     *conntrack.Table // security groups' connection tracking (secgroup.go)

	nextIfIndex uint32 // the last port number given (PortHandle.IfIndex); under mu

	// The flow cache (flowcache.go): nil when off. flowMu serialises
	// its scans and its replacement; goneFlows are removed ports whose
	// shards still hold flows to report, flowFullGone their CacheFull
	// counts. Lock order: mu, flowMu, a port's inMu (an input queue's
	// lock comes before inMu, never together with flowMu).
	flows        atomic.Pointer[flowCache]
	flowMu       sync.Mutex
	goneFlows    []*PortHandle
	flowFullGone atomic.Uint64

	decideEach bool // tests: decide every frame afresh (no lastDecision)
}

// topology is an immutable snapshot of the ports, swapped on every change.
type topology struct {
	ports   []*PortHandle
	members [4096][]int32 // per VID: indexes of the ports in its member set
}

// Errors returned by the control plane.
var (
	ErrPortExists = errors.New("port already exists")
	ErrNoSuchPort = errors.New("no such port")
	// ErrOverReserved: the reservations of the ports that may send
	// through a shaped egress would add up past its rate (admission
	// control, sched.go). The request is well formed; other ports'
	// reservations are in the way.
	ErrOverReserved = errors.New("reservations past an egress's capacity")
	ErrNoSuchEntry  = errors.New("no such FDB entry")
)

// AddressedPort is a Port with a MAC address of its own: the one its guest
// was given (a lab guest's NIC, a vhost-user port's mac=). Under port
// security (PortConfig.PortSecurity, on by default) the switch accepts only
// that source MAC from the port, besides AllowedMACs, and the FDB entry
// learned for it never moves to another port while it lives. AddPort asks
// once; the MAC cannot change afterwards.
type AddressedPort interface {
	Port
	// MAC returns the port's MAC and whether it has one.
	MAC() (MAC, bool)
}

// New returns an empty switch.
func New(cfg Config) *Switch {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.AgingTime <= 0 {
		cfg.AgingTime = defaultAgingTime
	}
	if cfg.FDBMaxEntries <= 0 {
		cfg.FDBMaxEntries = DefaultFDBMaxEntries
	}
	cfg.FDBMaxEntries = min(cfg.FDBMaxEntries, MaxFDBEntries)
	switch {
	case cfg.MACLimit == 0:
		cfg.MACLimit = DefaultMACLimit
	case cfg.MACLimit < 0:
		cfg.MACLimit = NoMACLimit
	}
	cfg.MACLimit = min(cfg.MACLimit, MaxMACLimit)
	switch {
	case cfg.MACMoveHoldDown == 0:
		cfg.MACMoveHoldDown = DefaultMACMoveHoldDown
	case cfg.MACMoveHoldDown < 0:
		cfg.MACMoveHoldDown = 0
	}
	cfg.MACMoveHoldDown = min(cfg.MACMoveHoldDown, MaxMACMoveHoldDown)
	s := &Switch{log: cfg.Logger, clock: cfg.Clock, fdb: newFDB(int64(cfg.AgingTime)), macLimit: cfg.MACLimit,
		ports: map[string]*PortHandle{}}
	s.fdb.max.Store(int64(cfg.FDBMaxEntries))
	s.fdb.holdDown.Store(int64(cfg.MACMoveHoldDown))
	s.topo.Store(&topology{})
	s.ct = conntrack.NewTable(cfg.Conntrack)
	return s
}

// defaults fills the switch's defaults into a validated port configuration.
func (s *Switch) defaults(cfg *PortConfig) {
	if cfg.MACLimit == 0 {
		cfg.MACLimit = s.macLimit
	}
}

// rebuild publishes a new topology; s.mu is held.
func (s *Switch) rebuild() {
	tp := &topology{ports: make([]*PortHandle, 0, len(s.ports))}
	for _, h := range s.ports {
		tp.ports = append(tp.ports, h)
	}
	sort.Slice(tp.ports, func(i, j int) bool { return tp.ports[i].name < tp.ports[j].name })
	for i, h := range tp.ports {
		h.index.Store(int32(i))
		h.state.Load().vlans.each(func(v uint16) { tp.members[v] = append(tp.members[v], int32(i)) })
	}
	s.topo.Store(tp)
}

// AttachFunc attaches a port backend to a switch: it calls
// Switch.AddPort with the configuration its caller chose and returns the
// handle the backend feeds. Backends made for a daemon, a lab or an API
// request take one instead of a *Switch.
type AttachFunc func(Port) (*PortHandle, error)

// AddPort attaches p to the switch with cfg and returns the handle its owner
// feeds frames through.
func (s *Switch) AddPort(cfg PortConfig, p Port) (*PortHandle, error) {
	if p == nil {
		return nil, fmt.Errorf("add port %q: nil Port", cfg.Name)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("add port: %w", err)
	}
	s.defaults(&cfg)
	var own MAC
	if ap, ok := p.(AddressedPort); ok {
		if m, ok := ap.MAC(); ok {
			if m[0]&1 != 0 {
				return nil, fmt.Errorf("add port %q: %w: its MAC %v is a group address", cfg.Name, errConfig, m)
			}
			own = m
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ports[cfg.Name]; ok {
		return nil, fmt.Errorf("add port %q: %w", cfg.Name, ErrPortExists)
	}
	if err := s.admit(cfg); err != nil {
		return nil, fmt.Errorf("add port %q: %w", cfg.Name, err)
	}
	s.nextIfIndex++
	h := &PortHandle{sw: s, port: p, name: cfg.Name, mac: own, ifIndex: s.nextIfIndex}
	h.qport, _ = p.(QueuePort)
	h.ingress(0)
	h.index.Store(-1)
	h.state.Store(newPortState(cfg, own))
	h.configureLimits(cfg, s.clock.Now())
	s.ports[cfg.Name] = h
	s.rebuild()
	if own != (MAC{}) {
		s.log.Debug("port added", "port", cfg.Name, "vlan_mode", cfg.Mode.String(), "vlan", cfg.PVID, "mac", own.String(),
			"port_security", cfg.PortSecurity.String())
	} else {
		s.log.Debug("port added", "port", cfg.Name, "vlan_mode", cfg.Mode.String(), "vlan", cfg.PVID)
	}
	return h, nil
}

func (h *PortHandle) configureLimits(cfg PortConfig, now int64) {
	h.inMu.Lock()
	h.police.configure(cfg.Ingress, now)
	h.storm[stormBcast].configure(cfg.Storm.Broadcast, now)
	h.storm[stormMcast].configure(cfg.Storm.Multicast, now)
	h.storm[stormUnknown].configure(cfg.Storm.UnknownUnicast, now)
	h.inMu.Unlock()
	h.shaper.configure(cfg.Egress, cfg.EgressQueue, cfg.Classes, now)
}

// Port returns the handle of the named port, or nil.
func (s *Switch) Port(name string) *PortHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[name]
}

// RemovePort detaches the named port: its FDB entries (static ones too) and
// queued frames go, and in-flight Input calls on it finish first. When it
// returns the switch no longer calls the port's Send: Input calls of other
// ports that may still be sending to it and a shaper drain have finished.
// It must not be called from Port.Send or MirrorSink.Mirror.
func (s *Switch) RemovePort(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.ports[name]
	if !ok {
		return fmt.Errorf("remove port %q: %w", name, ErrNoSuchPort)
	}
	h.removed.Store(true)
	h.waitInputs()
	if set := h.sg.Swap(nil); set != nil {
		defer set.zone.Close() // after the barriers below: no frame tracks into it any more
	}
	delete(s.ports, name)
	s.rebuild()
	s.fdb.sweep(func(e *fdbView) bool { return e.port == h })
	// An Input that loaded the old topology may be delivering to h: wait
	// for each (new ones see h.removed). Lock order s.mu -> a queue's
	// input lock -> inMu -> shaper.mu, as everywhere.
	for _, o := range s.ports {
		o.waitInputs()
	}
	h.shaper.mu.Lock()
	h.shaper.mu.Unlock() //nolint:staticcheck // barrier for a running Poll
	// Its flows are reported by the next scan (no Input runs on it now).
	s.flowMu.Lock()
	if h.flows.n > 0 {
		s.goneFlows = append(s.goneFlows, h)
	}
	s.flowFullGone.Add(h.flows.full.Load())
	s.flowMu.Unlock()
	for _, o := range s.ports {
		o.shaper.forget(h) // its frames queued at shaped egresses
	}
	s.log.Debug("port removed", "port", name)
	return nil
}

// UpdatePort changes the configuration of the port named cfg.Name live: the
// port stays attached, token buckets keep their tokens (clamped to the new
// sizes), queued frames stay queued. If its VLAN membership or its port
// security changed its dynamic FDB entries are flushed.
func (s *Switch) UpdatePort(cfg PortConfig) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("update port: %w", err)
	}
	s.defaults(&cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.ports[cfg.Name]
	if !ok {
		return fmt.Errorf("update port %q: %w", cfg.Name, ErrNoSuchPort)
	}
	if err := s.admit(cfg); err != nil {
		return fmt.Errorf("update port %q: %w", cfg.Name, err)
	}
	st := newPortState(cfg, h.mac)
	h.configureLimits(cfg, s.clock.Now())
	old := h.state.Swap(st)
	if vl := old.vlans != st.vlans || old.native != st.native || old.mode != st.mode; vl || old.own != st.own {
		s.fdb.sweep(func(e *fdbView) bool { return !e.static && e.port == h })
		if vl {
			s.rebuild()
		}
	}
	s.log.Debug("port updated", "port", cfg.Name)
	return nil
}

// Counters returns every port's counters, sorted by name.
func (s *Switch) Counters() []PortCounters {
	tp := s.topo.Load()
	out := make([]PortCounters, 0, len(tp.ports))
	for _, h := range tp.ports {
		out = append(out, h.Counters())
	}
	return out
}

// SwitchCounters returns the switch-wide counters.
func (s *Switch) SwitchCounters() SwitchCounters {
	return SwitchCounters{
		FDBEntries:     s.fdb.size(),
		DynamicEntries: int(s.fdb.dyn.Load()),
		MaxEntries:     int(s.fdb.max.Load()),
		Learned:        s.fdb.learned.Load(),
		Moves:          s.fdb.moves.Load(),
		Aged:           s.fdb.aged.Load(),
	}
}

// FDBEntry is one filtering-database entry, as dumped by FDB.
type FDBEntry struct {
	Port   string
	VLAN   uint16
	MAC    MAC
	Age    time.Duration // since the MAC was last seen; 0 for static entries
	Static bool
	Pinned bool // the port's own MAC under port security: it does not move
}

// FDB dumps the filtering database, sorted by VLAN then MAC. Dynamic
// entries past the aging time that Expire has not removed yet are left out.
func (s *Switch) FDB() []FDBEntry {
	now := s.clock.Now()
	var out []FDBEntry
	s.fdb.each(func(e *fdbView) {
		if !s.fdb.live(e.static, e.seen, now) {
			return
		}
		fe := FDBEntry{Port: e.port.name, VLAN: keyVID(e.key), MAC: keyMAC(e.key), Static: e.static, Pinned: e.pinned}
		if !e.static {
			fe.Age = time.Duration(now - e.seen)
		}
		out = append(out, fe)
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].VLAN != out[j].VLAN {
			return out[i].VLAN < out[j].VLAN
		}
		return macKey(out[i].MAC[:]) < macKey(out[j].MAC[:])
	})
	return out
}

// AddStatic installs a static entry: frames to mac in vid go to port, and
// mac is never learned elsewhere in vid.
func (s *Switch) AddStatic(port string, vid uint16, mac MAC) error {
	if err := checkVID("vlan", vid); err != nil {
		return fmt.Errorf("add static %v vlan %d: %w", mac, vid, err)
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("add static %v vlan %d: %w: group address", mac, vid, errConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.ports[port]
	if !ok {
		return fmt.Errorf("add static %v vlan %d: port %q: %w", mac, vid, port, ErrNoSuchPort)
	}
	s.fdb.setStatic(fdbKey(vid, mac[:]), h)
	return nil
}

// DeleteStatic removes a static entry.
func (s *Switch) DeleteStatic(vid uint16, mac MAC) error {
	if !s.fdb.remove(fdbKey(vid, mac[:]), true) {
		return fmt.Errorf("delete static %v vlan %d: %w", mac, vid, ErrNoSuchEntry)
	}
	return nil
}

// Flush removes dynamic FDB entries of the named port ("" for all ports) in
// vid (0 for all VLANs) and returns how many it removed.
func (s *Switch) Flush(port string, vid uint16) (int, error) {
	var h *PortHandle
	if port != "" {
		if h = s.Port(port); h == nil {
			return 0, fmt.Errorf("flush port %q: %w", port, ErrNoSuchPort)
		}
	}
	return s.fdb.sweep(func(e *fdbView) bool {
		return !e.static && (h == nil || e.port == h) && (vid == 0 || keyVID(e.key) == vid)
	}), nil
}

// Now is the switch's time (Config.Clock), in nanoseconds: what its FDB
// entries and tracked connections age by.
func (s *Switch) Now() int64 { return s.clock.Now() }

// Expire removes dynamic entries older than the aging time and returns how
// many. Lookups already ignore them; this frees their memory and their
// port's MAC-limit slots.
func (s *Switch) Expire() int { return s.fdb.expire(s.clock.Now()) }

// SetAgingTime changes the FDB aging time (0 means 300 s).
func (s *Switch) SetAgingTime(d time.Duration) {
	if d <= 0 {
		d = defaultAgingTime
	}
	s.fdb.aging.Store(int64(d))
}

// SetMirror sets the sink mirrored traffic goes to (nil: none).
func (s *Switch) SetMirror(m MirrorSink) {
	if m == nil {
		s.mirror.Store(nil)
		return
	}
	s.mirror.Store(&mirrorRef{s: m})
}

// Poll drains the egress shapers of all ports at Clock time now and returns
// the earliest time it needs to be called again (0: no frames queued).
func (s *Switch) Poll(now int64) int64 {
	var next int64
	for _, h := range s.topo.Load().ports {
		if t := h.Poll(now); t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	return next
}

// Run polls the shapers every tick (sooner when one of them has frames
// due before: a reservation, a limit or the egress's tokens), expires FDB
// entries every second and timed-out tracked connections every 10 seconds
// of real time until ctx is done. It is for programs using RealClock;
// tests call Poll and Expire with a ManualClock instead.
func (s *Switch) Run(ctx context.Context, tick time.Duration) error {
	t := time.NewTimer(tick)
	defer t.Stop()
	lastExpire, lastSweep := s.clock.Now(), s.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			now := s.clock.Now()
			wait := tick
			if next := s.Poll(now); next != 0 {
				wait = min(wait, max(time.Duration(next-now), minPollWait))
			}
			t.Reset(wait)
			if now-lastExpire >= nano {
				lastExpire = now
				if n := s.Expire(); n > 0 {
					s.log.Trace("fdb entries aged out", "count", n)
				}
			}
			if now-lastSweep >= int64(conntrackSweepEvery) {
				lastSweep = now
				if n := s.SweepConntrack(); n > 0 {
					s.log.Trace("tracked connections timed out", "count", n)
				}
			}
		}
	}
}

// minPollWait is the least time Run waits between polls of the shapers:
// the timer's cost bounds how finely frames waiting for tokens are timed.
const minPollWait = 200 * time.Microsecond
