// Package daemon is hvnet's switch daemon as a library: the switch, its
// port backends and the control API, serving a Config until its context
// ends ("hvnet switch" and "hvnet up" are thin commands over it).
//
// Port backends come in kinds (vhost-user, uplink, lab, vxlan, ...). A kind is
// one package that implements Kind and registers itself (Register) in an
// init function; the command line, the config file, "hvnet ctl add" and
// POST /v1/ports reach it by its name and its declared options, so a new
// kind needs no change anywhere else. The README's "Adding a port kind"
// walks through one.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/conntrack"
	"github.com/hvnet/hvnet/dashboard"
	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// Config is what the daemon serves.
type Config struct {
	Ports []PortSpec
	Aging time.Duration // FDB aging (0: vswitch's default)
	// FDB bounds and MAC-move hold-down (vswitch.Config; 0: the defaults).
	FDBMaxEntries, MACLimit int
	MACMoveHoldDown         time.Duration
	API                     string           // control API socket; "" serves none
	APIAccess               api.SocketAccess // who may connect to it (default: root alone, 0600)
	// The API's directories ("" takes the defaults: APIDirs) and limits.
	RunDir, CaptureDir string
	APILimits          api.Limits
	// Images returns the kernel and initramfs of lab guest ports added
	// through the API (nil: none can be added).
	Images func(context.Context) (kernel, initrd string, err error)
	ACLs   []PortACL // set once the ports are up
	// SecurityGroups are set once the ports are up, after the ACLs.
	SecurityGroups []PortSG
	// Conntrack is the security groups' connection tracking: limits and
	// timeouts (zero fields: package conntrack's defaults).
	Conntrack conntrack.Config
	// Notify, if set, is told the daemon's state in sd_notify's words:
	// READY=1 once every port and the API socket exist (and again after
	// a reload), RELOADING=1 as a reload starts, STOPPING=1 at shutdown.
	Notify func(state string)
	// MetricsAddr is a TCP address serving GET /metrics alone, for
	// Prometheus ("" for none; the API socket serves them anyway).
	// BuildInfo labels hvnet_build_info there and on the API.
	MetricsAddr string
	BuildInfo   map[string]string
	// DashboardAddr is a TCP address serving the read-only web dashboard
	// (package dashboard; "" for none). A port alone (9478, :9478) binds
	// 127.0.0.1; another host is served only when the address names it.
	DashboardAddr string
	// FlowExport is IPFIX flow export (package ipfix): on when Enabled;
	// the API can turn it on, off or change it later.
	FlowExport ipfix.Config
}

func (c Config) notify(state string) {
	if c.Notify != nil {
		c.Notify(state)
	}
}

// PortACL is a port's ingress and egress ACLs.
type PortACL struct {
	Port    string
	In, Out vswitch.ACL
}

// PortSG is a port's stateful security group.
type PortSG struct {
	Port  string
	Group vswitch.SecurityGroup
}

// SwitchConfig is the switch's configuration (logger and clock aside).
func (c Config) SwitchConfig() vswitch.Config {
	return vswitch.Config{AgingTime: c.Aging, FDBMaxEntries: c.FDBMaxEntries, MACLimit: c.MACLimit,
		MACMoveHoldDown: c.MACMoveHoldDown, Conntrack: c.Conntrack}
}

// SwitchInfo is the switch-wide settings as the switch runs with them,
// defaults resolved (GET /v1/switch).
func (c Config) SwitchInfo() api.SwitchInfo {
	ct := api.ConntrackInfo(c.Conntrack)
	in := api.SwitchInfo{Aging: c.Aging.String(), FDBMaxEntries: c.FDBMaxEntries, MACLimit: c.MACLimit,
		MACMoveHoldDown: c.MACMoveHoldDown.String(), MetricsAddr: c.MetricsAddr, DashboardAddr: c.DashboardAddr, Conntrack: &ct}
	if c.Aging <= 0 {
		in.Aging = vswitch.DefaultAgingTime.String()
	}
	if c.FDBMaxEntries == 0 {
		in.FDBMaxEntries = vswitch.DefaultFDBMaxEntries
	}
	switch {
	case c.MACLimit == 0:
		in.MACLimit = vswitch.DefaultMACLimit
	case c.MACLimit < 0:
		in.MACLimit = vswitch.NoMACLimit
	}
	if c.MACMoveHoldDown == 0 {
		in.MACMoveHoldDown = vswitch.DefaultMACMoveHoldDown.String()
	}
	return in
}

// CheckFDB checks the FDB bounds, naming the command line's flags.
func (c Config) CheckFDB() error {
	switch {
	case c.Aging < 0:
		return fmt.Errorf("--aging %v: negative aging time (0 means the default, %v)", c.Aging, vswitch.DefaultAgingTime)
	case c.FDBMaxEntries < 1 || c.FDBMaxEntries > vswitch.MaxFDBEntries:
		return fmt.Errorf("--fdb-max-entries %d: want 1..%d", c.FDBMaxEntries, vswitch.MaxFDBEntries)
	case c.MACLimit != vswitch.NoMACLimit && (c.MACLimit < 1 || c.MACLimit > vswitch.MaxMACLimit):
		return fmt.Errorf("--mac-limit %d: want -1 (none) or 1..%d", c.MACLimit, vswitch.MaxMACLimit)
	case c.MACMoveHoldDown > vswitch.MaxMACMoveHoldDown:
		return fmt.Errorf("--mac-move-hold-down %v: want at most %v", c.MACMoveHoldDown, vswitch.MaxMACMoveHoldDown)
	}
	return nil
}

// CheckConntrack checks the connection-tracking limits, naming the
// command line's flags.
func (c Config) CheckConntrack() error {
	return api.CheckConntrackLimits(c.Conntrack.TableLimit, c.Conntrack.ZoneLimit,
		[2]string{"--conntrack-max-entries", "--conntrack-max-entries-per-port"})
}

// CheckNames rejects two ports of one name.
func CheckNames(ports []PortSpec) error {
	seen := map[string]bool{}
	for _, p := range ports {
		if seen[p.Name()] {
			return fmt.Errorf("port %q defined twice", p.Name())
		}
		seen[p.Name()] = true
	}
	return nil
}

// Run serves cfg on a switch of its own until ctx ends: the switch, its
// ports and the control API. Shutdown closes the API socket, then every
// port (removing server-mode sockets), then detaches the ports.
func Run(ctx context.Context, log hclog.Logger, cfg Config) error {
	return Serve(ctx, log, cfg, nil, nil)
}

// Serve is Run that also reloads: on each receive from reload it calls
// load and applies the ports and ACLs it returns (Running.Reload). A
// configuration that fails to load or apply is logged and the running
// one kept, as nginx and OVS do with a bad file.
func Serve(ctx context.Context, log hclog.Logger, cfg Config, reload <-chan os.Signal, load func() (Config, error)) error {
	if err := CheckNames(cfg.Ports); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	sc := cfg.SwitchConfig()
	sc.Logger = log.Named("switch")
	sw := vswitch.New(sc)
	r, err := Start(ctx, log, sw, cfg, true)
	if err != nil {
		return err
	}
	cfg.notify("READY=1")
	for {
		select {
		case <-r.ctx.Done():
			cfg.notify("STOPPING=1")
			return r.Shutdown()
		case <-reload:
			cfg.notify("RELOADING=1")
			next, err := load()
			if err != nil {
				log.Error("reload: the new configuration is refused; the running one stays", "error", err)
			} else if _, err := r.Reload(r.ctx, next.Ports, next.ACLs, next.SecurityGroups); err != nil {
				log.Error("reload: stopped at a failure; ports not reached keep their configuration", "error", err)
			}
			cfg.notify("READY=1")
		}
	}
}

// Running is the daemon's pieces serving on a switch: its own (hvnet
// switch, hvnet up) or a lab's (hvnet up with guests).
type Running struct {
	ctx     context.Context // ends on the caller's ctx or a failed API server
	cancel  context.CancelCauseFunc
	log     hclog.Logger
	sw      *vswitch.Switch
	d       *Daemon
	apiDone chan struct{}
	wg      sync.WaitGroup

	// reloadMu serialises Reload; owned, acls and sgs are the
	// configuration's ports, ACLs and security groups as last applied.
	reloadMu sync.Mutex
	owned    map[string]PortSpec
	acls     map[string]PortACL
	sgs      map[string]PortSG

	metrics   net.Addr        // the metrics listener's address, if any
	dashboard net.Addr        // the dashboard listener's, if any
	flows     *ipfix.Exporter // flow export, on or off
}

// MetricsAddr is the address the metrics listener is bound to (nil for
// none): the port chosen for an address ending in :0.
func (r *Running) MetricsAddr() net.Addr { return r.metrics }

// DashboardAddr is the address the dashboard listener is bound to (nil
// for none).
func (r *Running) DashboardAddr() net.Addr { return r.dashboard }

// Done ends when the daemon does: its context ended or its API server
// failed.
func (r *Running) Done() <-chan struct{} { return r.ctx.Done() }

// Daemon returns the running daemon's port factory.
func (r *Running) Daemon() *Daemon { return r.d }

// Start brings cfg's ports and the control API up on sw, and runs sw's
// shapers and FDB aging when runSwitch (a lab runs its switch's itself).
// Ports and the API serve until ctx ends; then call Shutdown.
func Start(ctx context.Context, log hclog.Logger, sw *vswitch.Switch, cfg Config, runSwitch bool) (*Running, error) {
	if err := CheckNames(cfg.Ports); err != nil {
		return nil, fmt.Errorf("switch: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var ln net.Listener
	var runDir, captureDir string
	d := New(ctx, log, sw, cfg.API)
	d.images = cfg.Images
	if cfg.API != "" {
		var err error
		if runDir, captureDir, err = APIDirs(cfg); err != nil {
			cancel(nil)
			return nil, fmt.Errorf("switch: api: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(cfg.API), 0o755); err != nil {
			cancel(nil)
			return nil, fmt.Errorf("switch: api: %w", err)
		}
		l, err := api.ListenWith(cfg.API, cfg.APIAccess)
		if err != nil {
			cancel(nil)
			return nil, fmt.Errorf("switch: api: %w", err)
		}
		ln = l
	}
	var mln net.Listener
	if cfg.MetricsAddr != "" {
		l, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			cancel(nil)
			return nil, fmt.Errorf("switch: metrics: %w", err)
		}
		mln = l
	}
	var dln net.Listener
	dashLoopback := false
	if cfg.DashboardAddr != "" {
		l, loopback, err := dashboard.Listen(cfg.DashboardAddr)
		if err != nil {
			for _, l := range []net.Listener{ln, mln} {
				if l != nil {
					l.Close()
				}
			}
			cancel(nil)
			return nil, fmt.Errorf("switch: %w", err)
		}
		dln, dashLoopback = l, loopback
	}
	abort := func(err error) (*Running, error) {
		for _, l := range []net.Listener{ln, mln, dln} {
			if l != nil {
				l.Close()
			}
		}
		d.Close()
		cancel(nil)
		return nil, fmt.Errorf("switch: %w", err)
	}
	for _, p := range cfg.Ports {
		err := d.start(ctx, p, func(vp vswitch.Port) (*vswitch.PortHandle, error) { return sw.AddPort(p.Port, vp) })
		if err != nil {
			return abort(err)
		}
	}
	for _, a := range cfg.ACLs {
		if err := sw.SetACL(a.Port, a.In); err != nil {
			return abort(err)
		}
		if err := sw.SetEgressACL(a.Port, a.Out); err != nil {
			return abort(err)
		}
	}
	for _, g := range cfg.SecurityGroups {
		if err := sw.SetSecurityGroup(g.Port, &g.Group, false); err != nil {
			return abort(err)
		}
	}
	// Flow export starts once the ports are there: its first templates
	// name them.
	flows := ipfix.New(sw, ipfix.Options{Logger: log.Named("flow-export"), Segment: d.Segment})
	if cfg.FlowExport.Enabled {
		if err := flows.Apply(cfg.FlowExport); err != nil {
			return abort(fmt.Errorf("flow export: %w", err))
		}
	}
	r := &Running{ctx: ctx, cancel: cancel, log: log, sw: sw, d: d, apiDone: make(chan struct{}), flows: flows,
		owned: map[string]PortSpec{}, acls: map[string]PortACL{}, sgs: map[string]PortSG{}}
	for _, p := range cfg.Ports {
		r.owned[p.Name()] = p
	}
	for _, a := range cfg.ACLs {
		r.acls[a.Port] = a
	}
	for _, g := range cfg.SecurityGroups {
		r.sgs[g.Port] = g
	}
	if runSwitch {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			sw.Run(ctx, 100*time.Millisecond) // shapers and FDB aging
		}()
	}
	info := cfg.SwitchInfo()
	// The switch's clock is its default (vswitch.RealClock), the API's.
	srv := api.NewServer(sw, api.Options{Logger: log.Named("api"), Ports: d,
		SocketDir: runDir, CaptureDir: captureDir, Limits: cfg.APILimits, BuildInfo: cfg.BuildInfo, Switch: &info, FlowExport: flows})
	if mln != nil {
		r.metrics = mln.Addr()
		lim := cfg.APILimits
		hs := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: lim.ReadTimeout, WriteTimeout: lim.WriteTimeout, IdleTimeout: lim.IdleTimeout}
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			if err := hs.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener failed", "addr", cfg.MetricsAddr, "error", err)
			}
		}()
		go func() {
			defer r.wg.Done()
			<-ctx.Done()
			hs.Close()
		}()
	}
	if dln != nil {
		r.dashboard = dln.Addr()
		if !dashLoopback {
			log.Warn("the dashboard is served beyond this host: whoever reaches its address reads the ports, the FDB and the flows",
				"addr", r.dashboard.String())
		}
		h := dashboard.Handler(dashboard.Options{API: srv.Handler(), Loopback: dashLoopback})
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := dashboard.Serve(ctx, dln, h, log.Named("dashboard")); err != nil {
				log.Error("dashboard listener failed", "addr", r.dashboard.String(), "error", err)
			}
		}()
	}
	if ln != nil {
		go func() {
			defer close(r.apiDone)
			if err := srv.ServeListener(ctx, ln); err != nil {
				cancel(err)
			}
		}()
	} else {
		close(r.apiDone)
	}
	log.Info("switch running", "ports", len(cfg.Ports), "api", cfg.API, "run_dir", runDir, "capture_dir", captureDir,
		"metrics", cfg.MetricsAddr, "dashboard", addrString(r.dashboard))
	return r, nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Shutdown ends the daemon (if its ctx has not ended yet) and waits for
// it: the API socket goes first, then every port. It returns the API
// server's failure, if that is what ended it.
func (r *Running) Shutdown() error {
	r.log.Info("shutting down")
	r.cancel(context.Canceled)
	<-r.apiDone // the API socket is gone: no more ports come or go
	// The last counters, while the ports still exist (Close removes
	// them); frames still moving until their sessions end are not in them.
	final := r.sw.Counters()
	r.flows.Close() // every flow out, while the ports still have their names
	r.d.Close()
	r.wg.Wait()
	for _, c := range final {
		var drops uint64
		for _, d := range c.Drops {
			drops += d
		}
		r.log.Info("port counters at shutdown", "port", c.Name, "rx_packets", c.RxPackets, "tx_packets", c.TxPackets, "drops", drops)
	}
	if err := context.Cause(r.ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("switch: %w", err)
	}
	return nil
}

// DefaultRunDir is the run directory of a daemon serving its API at
// apiSock: the socket's path without its extension (/run/hvnet.sock:
// /run/hvnet, where the examples put vhost-user sockets), or with ".d"
// added when it has none.
func DefaultRunDir(apiSock string) string {
	if d := strings.TrimSuffix(apiSock, filepath.Ext(apiSock)); d != apiSock && d != "" && !strings.HasSuffix(d, "/") {
		return d
	}
	return apiSock + ".d"
}

// APIDirs makes and returns the directories the API may write in: the
// run directory (sockets of ports added through the API; cfg's or
// DefaultRunDir's) and the capture directory (file mirrors; cfg's or
// RUN/captures, mode 0700: captures hold tenants' traffic).
func APIDirs(cfg Config) (run, capture string, err error) {
	run, capture = cfg.RunDir, cfg.CaptureDir
	if run == "" {
		run = DefaultRunDir(cfg.API)
	}
	if capture == "" {
		capture = filepath.Join(run, "captures")
	}
	if run, err = filepath.Abs(run); err != nil {
		return "", "", fmt.Errorf("run directory: %w", err)
	}
	if capture, err = filepath.Abs(capture); err != nil {
		return "", "", fmt.Errorf("capture directory: %w", err)
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return "", "", fmt.Errorf("run directory: %w", err)
	}
	if err := os.MkdirAll(capture, 0o700); err != nil {
		return "", "", fmt.Errorf("capture directory: %w", err)
	}
	return run, capture, nil
}
