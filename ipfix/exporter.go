package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "github.com/hvnet/hvnet/switch"
)

// Config is flow export's configuration. Every surface gives it under the
// same names (the topology file's flow_export section, hvnet switch's
// --flow-* flags, the API's /v1/flow-export): FieldError.Field is that
// name.
type Config struct {
	// Enabled turns the switch's flow cache and the export on; with no
	// collectors the cache serves the API's flow listing alone.
	Enabled bool
	// Collectors are host:port UDP addresses, each sent every message.
	Collectors []string
	// ActiveTimeout: a flow still going is reported this long after its
	// first frame (then again each ActiveTimeout); IdleTimeout: a flow
	// is reported and forgotten after this long without frames.
	ActiveTimeout, IdleTimeout time.Duration
	// Sampling: one frame in Sampling is counted (1: every frame).
	Sampling int
	// MaxFlows bounds the flow cache (vswitch.FlowConfig.MaxFlows).
	MaxFlows int
	// MaxFlowsPerPort bounds one port's flows in it
	// (vswitch.FlowConfig.MaxFlowsPerPort; 0: a quarter of MaxFlows).
	MaxFlowsPerPort int
	// TemplateRefresh: the templates are sent again this often (RFC 7011
	// §8.4: over UDP a collector that restarted learns them only so);
	// TemplateRefreshPackets, if not 0, also after that many messages.
	TemplateRefresh        time.Duration
	TemplateRefreshPackets int
	// ObservationDomain is the messages' Observation Domain ID.
	ObservationDomain uint32
}

// Defaults and bounds.
const (
	// DefaultActiveTimeout: long flows are reported each minute, as
	// nfdump's README configures its exporters ("ip flow-cache timeout
	// active 1"), so nfcapd's 5-minute files show them as they go.
	// (Open vSwitch's IPFIX has no cache by default, cache_active_timeout
	// 0; softflowd keeps a flow up to a week, maxlife.)
	DefaultActiveTimeout = 60 * time.Second
	// DefaultIdleTimeout: a flow idle for 15 s is over, Cisco IOS's
	// default inactive timeout; softflowd waits 300 s (UDP, ICMP) to
	// 3600 s (TCP), which on a switch of many guests mostly holds memory.
	DefaultIdleTimeout = 15 * time.Second
	// DefaultTemplateRefresh is RFC 6728's templateRefreshTimeout
	// default (§4.4.2), and Open vSwitch's template_interval.
	DefaultTemplateRefresh   = 600 * time.Second
	DefaultObservationDomain = 1
	MaxCollectors            = 8
	MinTimeout               = 100 * time.Millisecond
	MaxTimeout               = 24 * time.Hour
	MaxRefreshPackets        = 1 << 20
	// MessageSize bounds a message: a 1500-byte path with IPv6 and UDP
	// headers (RFC 7011 §10.3.3: messages must fit the path MTU).
	MessageSize = 1400
)

// FieldError is a configuration value refused: Field is its name on
// every surface (collectors, active_timeout, ...).
type FieldError struct {
	Field, Value, Want string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Want) }

// WithDefaults fills zero fields with the defaults.
func (c Config) WithDefaults() Config {
	if c.ActiveTimeout == 0 {
		c.ActiveTimeout = DefaultActiveTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Sampling == 0 {
		c.Sampling = 1
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = vswitch.DefaultMaxFlows
	}
	if c.MaxFlowsPerPort == 0 {
		c.MaxFlowsPerPort = max(c.MaxFlows/4, 1)
	}
	if c.TemplateRefresh == 0 {
		c.TemplateRefresh = DefaultTemplateRefresh
	}
	if c.ObservationDomain == 0 {
		c.ObservationDomain = DefaultObservationDomain
	}
	return c
}

// Validate checks every field (defaults filled) and that the collectors'
// addresses resolve; the error is a *FieldError.
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

func (c Config) resolve() ([]*net.UDPAddr, error) {
	c = c.WithDefaults()
	dur := func(name string, d time.Duration) error {
		if d < MinTimeout || d > MaxTimeout {
			return &FieldError{Field: name, Value: d.String(), Want: fmt.Sprintf("want %v..%v", MinTimeout, MaxTimeout)}
		}
		return nil
	}
	for _, e := range []error{dur("active_timeout", c.ActiveTimeout), dur("idle_timeout", c.IdleTimeout), dur("template_refresh", c.TemplateRefresh)} {
		if e != nil {
			return nil, e
		}
	}
	switch {
	case c.Sampling < 1 || c.Sampling > vswitch.MaxSampling:
		return nil, &FieldError{Field: "sampling", Value: strconv.Itoa(c.Sampling), Want: fmt.Sprintf("want 1..%d (one frame in N)", vswitch.MaxSampling)}
	case c.MaxFlows < 1 || c.MaxFlows > vswitch.MaxMaxFlows:
		return nil, &FieldError{Field: "max_flows", Value: strconv.Itoa(c.MaxFlows), Want: fmt.Sprintf("want 1..%d", vswitch.MaxMaxFlows)}
	case c.MaxFlowsPerPort < 1 || c.MaxFlowsPerPort > c.MaxFlows:
		return nil, &FieldError{Field: "max_flows_per_port", Value: strconv.Itoa(c.MaxFlowsPerPort), Want: fmt.Sprintf("want 1..max_flows (%d); 0: a quarter of max_flows", c.MaxFlows)}
	case c.TemplateRefreshPackets < 0 || c.TemplateRefreshPackets > MaxRefreshPackets:
		return nil, &FieldError{Field: "template_refresh_packets", Value: strconv.Itoa(c.TemplateRefreshPackets), Want: fmt.Sprintf("want 0 (by time only)..%d", MaxRefreshPackets)}
	case len(c.Collectors) > MaxCollectors:
		return nil, &FieldError{Field: "collectors", Value: fmt.Sprint(c.Collectors), Want: fmt.Sprintf("at most %d collectors", MaxCollectors)}
	}
	var out []*net.UDPAddr
	for i, s := range c.Collectors {
		a, err := ResolveCollector(s)
		if err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("collectors[%d]", i), Value: s, Want: err.Error()}
		}
		if slices.ContainsFunc(out, func(o *net.UDPAddr) bool { return o.String() == a.String() }) {
			return nil, &FieldError{Field: fmt.Sprintf("collectors[%d]", i), Value: s, Want: "given twice"}
		}
		out = append(out, a)
	}
	return out, nil
}

// ResolveCollector resolves a collector's host:port (a name, an IPv4 or
// an [IPv6] address; a port 1..65535).
func ResolveCollector(s string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, errors.New("want HOST:PORT, e.g. 127.0.0.1:4739 or [::1]:4739")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return nil, fmt.Errorf("port %q: want 1..65535 (4739: IPFIX's)", port)
	}
	if host == "" {
		return nil, errors.New("no host: want HOST:PORT")
	}
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return nil, fmt.Errorf("does not resolve: %v", err)
	}
	if a.IP.IsUnspecified() || a.IP.IsMulticast() {
		return nil, fmt.Errorf("%v: not a unicast address", a.IP)
	}
	return a, nil
}

// CollectorStats is one collector's counters (over the exporter's life).
type CollectorStats struct {
	Address    string
	Messages   uint64 // messages sent to it
	SendErrors uint64 // messages whose send failed (unreachable, no route, ...)
	LastError  string
}

// Stats are the exporter's counters.
type Stats struct {
	Flows      vswitch.FlowStats
	Records    uint64 // flow records exported
	Messages   uint64 // messages built (each sent to every collector)
	Templates  uint64 // template messages among them
	SendErrors uint64 // failed sends, every collector
	Collectors []CollectorStats
}

// Options are an Exporter's settings beyond Config.
type Options struct {
	Logger hclog.Logger
	// Segment returns the VXLAN VNI a port carries a VLAN in (0: none):
	// exported as layer2SegmentId for flows in or out of a tunnel port.
	Segment func(port string, vlan uint16) uint32
	// Tick is how often flows are checked for their timeouts (default:
	// a second, or a quarter of the shortest timeout if less).
	Tick time.Duration
}

// Exporter exports a switch's flows over IPFIX (RFC 7011) to UDP
// collectors. Its methods are safe for concurrent use.
type Exporter struct {
	sw   *vswitch.Switch
	log  hclog.Logger
	opts Options

	applyMu sync.Mutex // serialises Apply, Flush, Close
	mu      sync.Mutex // guards cfg, run and the sending
	cfg     Config
	run     *runner

	records, messages, templates, errs atomic.Uint64
	colMu                              sync.Mutex
	cols                               map[string]*CollectorStats
	logged                             map[string]time.Time // a collector's last error logged
}

// runner is one configuration's export: its sockets, its encoder and its
// goroutine.
type runner struct {
	cfg      Config
	conns    []*conn
	enc      *encoder
	recs     []vswitch.FlowRecord
	lastTmpl time.Time
	msgs     int // messages since the templates
	stop     chan struct{}
	done     chan struct{}
}

// conn is a collector's socket. Each is its own UDP Transport Session
// (RFC 7011 §10.3): its sequence numbers count from the records sent
// since it was made, base being the encoder's count then. A collector
// kept across a reconfiguration keeps its socket and its count.
type conn struct {
	*net.UDPConn
	addr string
	base uint32
}

// New returns an exporter for sw, off until Apply.
func New(sw *vswitch.Switch, o Options) *Exporter {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return &Exporter{sw: sw, log: o.Logger, opts: o, cols: map[string]*CollectorStats{}, logged: map[string]time.Time{},
		cfg: Config{}.WithDefaults()}
}

// Config returns the configuration in force, defaults filled in.
func (e *Exporter) Config() Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.cfg
	c.Collectors = slices.Clone(c.Collectors)
	return c
}

// Apply makes cfg the configuration in force: it checks it (a
// *FieldError names what is wrong, and nothing changes), then turns
// export on, off or changes it live. Flows cached under a sampling or a
// cache size that changes, or when export stops, are exported first
// (flowEndReason forced end); other changes keep the cache.
func (e *Exporter) Apply(cfg Config) error {
	cfg = cfg.WithDefaults()
	addrs, err := cfg.resolve()
	if err != nil {
		return err
	}
	cfg.Collectors = slices.Clone(cfg.Collectors)
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	// Dial the new collectors first: a socket that cannot be made leaves
	// everything as it was.
	e.mu.Lock()
	old := e.run
	e.mu.Unlock()
	have := map[string]*conn{}
	if old != nil {
		for _, c := range old.conns {
			have[c.addr] = c
		}
	}
	conns := make([]*conn, len(addrs))
	var dialed []*conn
	if cfg.Enabled {
		for i, a := range addrs {
			if have[cfg.Collectors[i]] != nil {
				continue
			}
			c, err := net.DialUDP("udp", nil, a)
			if err != nil {
				for _, c := range dialed {
					c.Close()
				}
				return &FieldError{Field: fmt.Sprintf("collectors[%d]", i), Value: cfg.Collectors[i], Want: err.Error()}
			}
			conns[i] = &conn{UDPConn: c, addr: cfg.Collectors[i]}
			dialed = append(dialed, conns[i])
		}
	}
	e.mu.Lock()
	e.run = nil
	keep := old != nil && cfg.Enabled && old.cfg.Sampling == cfg.Sampling && old.cfg.MaxFlows == cfg.MaxFlows &&
		old.cfg.MaxFlowsPerPort == cfg.MaxFlowsPerPort
	sameStream := old != nil && old.cfg.ObservationDomain == cfg.ObservationDomain
	if old != nil && !keep {
		old.recs = e.sw.DisableFlows(old.recs[:0])
		e.send(old, old.recs, time.Now())
	}
	var seq uint32
	if sameStream {
		seq = old.enc.seq
	}
	for i := range conns {
		if conns[i] == nil && cfg.Enabled { // kept: its socket and, in the same stream, its count
			c := have[cfg.Collectors[i]]
			delete(have, c.addr)
			if !sameStream {
				c.base = 0
			}
			conns[i] = c
		} else if conns[i] != nil {
			conns[i].base = seq
		}
	}
	if old != nil {
		for _, c := range have { // collectors no longer configured
			c.Close()
		}
		old.conns = nil
	}
	e.cfg = cfg
	if cfg.Enabled {
		if !keep {
			if err := e.sw.EnableFlows(vswitch.FlowConfig{MaxFlows: cfg.MaxFlows, MaxFlowsPerPort: cfg.MaxFlowsPerPort, Sampling: cfg.Sampling}); err != nil {
				e.mu.Unlock()
				return err // Validate checked the bounds: not reached
			}
		}
		r := &runner{cfg: cfg, conns: conns, enc: newEncoder(MessageSize, cfg.ObservationDomain),
			stop: make(chan struct{}), done: make(chan struct{})}
		r.enc.seq = seq
		e.sendTemplates(r, time.Now())
		e.run = r
		go e.loop(r)
	}
	e.mu.Unlock()
	if old != nil {
		close(old.stop)
		<-old.done
	}
	if cfg.Enabled {
		e.log.Info("flow export", "collectors", cfg.Collectors, "active_timeout", cfg.ActiveTimeout, "idle_timeout", cfg.IdleTimeout,
			"sampling", cfg.Sampling, "max_flows", cfg.MaxFlows, "template_refresh", cfg.TemplateRefresh, "observation_domain", cfg.ObservationDomain)
	} else if old != nil {
		e.log.Info("flow export off")
	}
	return nil
}

// Flush exports every cached flow now (flowEndReason forced end).
func (e *Exporter) Flush() {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.run; r != nil {
		r.recs = e.sw.DrainFlows(r.recs[:0])
		e.send(r, r.recs, time.Now())
	}
}

// Close exports every cached flow and stops.
func (e *Exporter) Close() {
	c := e.Config()
	c.Enabled = false
	e.Apply(c)
}

func (e *Exporter) tick(cfg Config) time.Duration {
	if e.opts.Tick > 0 {
		return e.opts.Tick
	}
	return max(min(time.Second, cfg.IdleTimeout/4, cfg.ActiveTimeout/4), 10*time.Millisecond)
}

// loop expires flows every tick until r is stopped.
func (e *Exporter) loop(r *runner) {
	defer close(r.done)
	t := time.NewTicker(e.tick(r.cfg))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		e.mu.Lock()
		if e.run == r {
			now := time.Now()
			r.recs = e.sw.ExpireFlows(r.cfg.ActiveTimeout, r.cfg.IdleTimeout, r.recs[:0])
			e.send(r, r.recs, now)
		}
		e.mu.Unlock()
	}
}

// ms converts the switch's clock (Unix nanoseconds with vswitch.RealClock)
// to flowStart/EndMilliseconds.
func ms(ns int64) uint64 { return uint64(ns / 1e6) }

// send exports recs in as many messages as they take, the templates
// first when they are due; e.mu is held.
func (e *Exporter) send(r *runner, recs []vswitch.FlowRecord, now time.Time) {
	if len(r.conns) == 0 {
		return // no collectors (the cache serves the API alone), or closed
	}
	if now.Sub(r.lastTmpl) >= r.cfg.TemplateRefresh || r.cfg.TemplateRefreshPackets > 0 && r.msgs >= r.cfg.TemplateRefreshPackets {
		e.sendTemplates(r, now)
	}
	if len(recs) == 0 {
		return
	}
	enc := r.enc
	enc.begin(now)
	for i := range recs {
		rec := &recs[i]
		id, n := flowTemplate(rec)
		if !enc.fits(id, n) {
			e.write(r, enc.finish(), false)
			enc.begin(now)
		}
		var vni uint32
		if seg := e.opts.Segment; seg != nil {
			if vni = seg(rec.In, rec.VLAN); vni == 0 && rec.Out != "" {
				vni = seg(rec.Out, rec.VLAN)
			}
		}
		enc.flow(rec, ms, vni)
	}
	e.write(r, enc.finish(), false)
	e.records.Add(uint64(len(recs)))
}

// sendTemplates sends the templates with the options' data: the
// sampling and the interface names (RFC 7011 §8.4: over UDP, resent
// every TemplateRefresh).
func (e *Exporter) sendTemplates(r *runner, now time.Time) {
	if len(r.conns) == 0 {
		return
	}
	enc := r.enc
	enc.begin(now)
	enc.templates()
	enc.samplingData(uint32(r.cfg.Sampling))
	for _, p := range e.sw.PortIndexes() {
		if !enc.fits(tmplInterfaces, interfaceLen(p.Name)) {
			e.write(r, enc.finish(), true)
			enc.begin(now)
		}
		enc.iface(p.Index, p.Name)
	}
	e.write(r, enc.finish(), true)
	r.lastTmpl, r.msgs = now, 0
}

// write sends one message to every collector, counting; a collector that
// does not take it is counted and logged (at most once a minute each),
// never waited for past a second.
func (e *Exporter) write(r *runner, msg []byte, tmpl bool) {
	e.messages.Add(1)
	if tmpl {
		e.templates.Add(1)
	}
	r.msgs++
	deadline := time.Now().Add(time.Second)
	e.colMu.Lock()
	defer e.colMu.Unlock()
	seq := binary.BigEndian.Uint32(msg[8:])
	for _, c := range r.conns {
		addr := c.addr
		binary.BigEndian.PutUint32(msg[8:], seq-c.base)
		st := e.cols[addr]
		if st == nil {
			st = &CollectorStats{Address: addr}
			e.cols[addr] = st
		}
		c.SetWriteDeadline(deadline)
		if _, err := c.Write(msg); err != nil {
			st.SendErrors++
			st.LastError = err.Error()
			e.errs.Add(1)
			if t := e.logged[addr]; time.Since(t) > time.Minute {
				e.logged[addr] = time.Now()
				e.log.Warn("flow export: a collector does not take messages (counted; logged once a minute)", "collector", addr, "error", err)
			}
			continue
		}
		st.Messages++
	}
}

// Stats returns the exporter's counters: those of collectors no longer
// configured stay until the exporter goes.
func (e *Exporter) Stats() Stats {
	s := Stats{Flows: e.sw.FlowStats(), Records: e.records.Load(), Messages: e.messages.Load(),
		Templates: e.templates.Load(), SendErrors: e.errs.Load()}
	e.colMu.Lock()
	for _, c := range e.cols {
		s.Collectors = append(s.Collectors, *c)
	}
	e.colMu.Unlock()
	slices.SortFunc(s.Collectors, func(a, b CollectorStats) int {
		if a.Address < b.Address {
			return -1
		}
		if a.Address > b.Address {
			return 1
		}
		return 0
	})
	return s
}
