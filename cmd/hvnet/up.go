package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/daemon/labkind"
	"github.com/hvnet/hvnet/dashboard"
	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/lab"
	"github.com/hvnet/hvnet/nested"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/topology"
)

const upUsage = `usage: hvnet up [flags] FILE
Brings up a topology file (see topology/testdata/lab.yaml): the switch, its
vhost-user ports, the uplink and the control API, until SIGTERM or SIGINT.
With lab guests in the file, the guests boot on that switch too and hvnet up
runs until they end (its status is the first failing guest's) or SIGTERM;
where the host's KVM cannot boot Linux, all of it runs inside the nested
test host.`

// cmdUp is "hvnet up FILE": the switch daemon configured by a topology
// file, with its lab guests.
func cmdUp(e *env, args []string) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	apiSock := fs.String("api", "", "control API socket (default: the file's switch.api, else "+defaultSocket+")")
	metricsAddr := fs.String("metrics-addr", "", "a TCP address serving GET /metrics alone (default: the file's switch.metrics_addr, else none)")
	dashAddr := fs.String("dashboard-addr", "", "a TCP address serving the read-only web dashboard, a port alone on localhost (default: the file's switch.dashboard_addr, else none)")
	kernel := fs.String("kernel", "", "lab guests' bzImage (default: the built test image)")
	initrd := fs.String("initrd", "", "lab guests' initramfs (default: the built test image)")
	mode := fs.String("nested", envOr(nested.EnvMode, "auto"), "with lab guests, boot inside a nested test host: never, always, or auto")
	fs.Usage = func() { fmt.Fprintln(e.stderr, upUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	t, err := topology.Load(fs.Arg(0))
	if err != nil {
		return fail(e, fmt.Errorf("%w: up: %v", errUsage, err))
	}
	cfg, err := topologyConfig(t)
	if err != nil {
		return fail(e, fmt.Errorf("%w: up: %v", errUsage, err))
	}
	if *apiSock != "" {
		cfg.API = *apiSock
	}
	if *metricsAddr != "" {
		cfg.MetricsAddr = *metricsAddr
	}
	if *dashAddr != "" {
		if _, err := dashboard.ResolveAddr(*dashAddr); err != nil {
			return fail(e, fmt.Errorf("%w: up: --dashboard-addr %v", errUsage, err))
		}
		cfg.DashboardAddr = *dashAddr
	}
	cfg.BuildInfo = buildInfo()
	build := func(ctx context.Context) (*images.Set, error) { return buildImages(ctx, e) }
	cfg.Images = guestImages{kernel: *kernel, initrd: *initrd, build: build}.resolve
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP re-reads the file and applies its ports, uplink, ACLs and
	// security groups (its switch settings, conntrack section and guests
	// take effect at the next start).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	file := fs.Arg(0)
	load := func() (daemon.Config, error) {
		t, err := topology.Load(file)
		if err != nil {
			return daemon.Config{}, err
		}
		return topologyConfig(t)
	}
	if len(t.Guests) == 0 && !hasLabPorts(t) {
		cfg.Notify = sdNotifier(e.log)
		if err := daemon.Serve(ctx, e.log, cfg, hup, load); err != nil {
			return fail(e, err)
		}
		return 0
	}
	guests, err := labGuests(t)
	if err != nil {
		return fail(e, fmt.Errorf("%w: up: %v", errUsage, err))
	}
	if err := daemon.CheckNames(cfg.Ports); err != nil {
		return fail(e, fmt.Errorf("%w: up: %v", errUsage, err))
	}
	if err := defaultImages(ctx, e, kernel, initrd); err != nil {
		return fail(e, fmt.Errorf("up: %w", err))
	}
	need, reason, err := nested.Decide(*mode)
	if err != nil {
		return fail(e, err)
	}
	if need {
		e.log.Info("running hvnet up inside the nested test host: the control API socket and the vhost-user sockets are inside it, and an uplink needs its interface there",
			"reason", reason, "api", cfg.API)
		return upNested(ctx, e, fs.Arg(0), *apiSock, *kernel, *initrd, guests)
	}
	if len(guests) == 0 { // lab ports only: the daemon boots them
		cfg.Notify = sdNotifier(e.log)
		if err := daemon.Serve(ctx, e.log, cfg, hup, load); err != nil {
			return fail(e, err)
		}
		return 0
	}
	go func() { // the lab's daemon reloads too
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if r := labDaemon.Load(); r != nil {
				next, err := load()
				if err != nil {
					e.log.Error("reload: the new configuration is refused; the running one stays", "error", err)
					continue
				}
				if _, err := r.Reload(ctx, next.Ports, next.ACLs, next.SecurityGroups); err != nil {
					e.log.Error("reload: stopped at a failure", "error", err)
				}
			}
		}
	}()
	cfg.Images = guestImages{kernel: *kernel, initrd: *initrd, build: build}.resolve // lab guest ports added through the API boot these too
	return upLab(ctx, e, cfg, guests, *kernel, *initrd)
}

// hasLabPorts says whether the file's ports include lab guests (kind
// lab): like its guests, they need a host whose KVM boots Linux.
func hasLabPorts(t *topology.Topology) bool {
	for _, p := range t.Ports {
		if p.Kind == api.KindLab {
			return true
		}
	}
	return false
}

// upLab boots the lab guests with the daemon's ports and control API on
// the lab's switch, until the guests end or ctx ends. Its status is the
// first non-zero guest status, 1 if a guest failed otherwise, 0 when every
// guest's agent reported 0 (or the run was stopped by a signal).
func upLab(ctx context.Context, e *env, cfg daemon.Config, guests []lab.GuestConfig, kernel, initrd string) int {
	labCtx, stopLab := context.WithCancel(ctx)
	defer stopLab()
	var r *daemon.Running
	attach := func(sw *vswitch.Switch) error {
		var err error
		r, err = daemon.Start(ctx, e.log, sw, cfg, false) // the lab runs the switch's shapers
		if err != nil {
			return err
		}
		labDaemon.Store(r)
		go func() { <-r.Done(); stopLab() }() // a failed API server ends the lab
		return nil
	}
	res, err := lab.Run(labCtx, upLabConfig(e, cfg, guests, kernel, initrd, attach))
	var derr error
	if r != nil {
		derr = r.Shutdown()
	}
	if err != nil {
		return fail(e, fmt.Errorf("up: %w", err))
	}
	if derr != nil {
		return fail(e, derr)
	}
	status := 0
	for _, g := range res {
		e.log.Info("guest ended", "guest", g.Name, "status", g.Status, "error", g.Err,
			"tx_packets", g.Net.TxPackets, "rx_packets", g.Net.RxPackets)
		stopped := g.Err != nil && ctx.Err() != nil && errors.Is(g.Err, context.Canceled)
		switch {
		case status == 0 && g.Status != 0:
			status = g.Status
		case status == 0 && g.Err != nil && !stopped:
			status = 1
		}
	}
	return status
}

// labDaemon is upLab's running daemon, for SIGHUP.
var labDaemon atomic.Pointer[daemon.Running]

// upLabConfig is the lab that upLab runs: the file's guests on a switch
// with the file's FDB settings.
func upLabConfig(e *env, cfg daemon.Config, guests []lab.GuestConfig, kernel, initrd string, attach lab.AttachFunc) lab.Config {
	return lab.Config{Kernel: kernel, Initrd: initrd, Guests: guests, Attach: attach,
		Console: e.stdout, Log: e.log.Named("lab"), Switch: cfg.SwitchConfig()}
}

// upNested re-runs "hvnet up" inside the nested test host, with the
// topology file copied in.
func upNested(ctx context.Context, e *env, file, apiSock, kernel, initrd string, guests []lab.GuestConfig) int {
	set, files, err := nestedBase(ctx, e)
	if err != nil {
		return fail(e, err)
	}
	files = append(files, nested.File{Src: kernel, Dst: "/hvnet/guest/kernel"}, nested.File{Src: initrd, Dst: "/hvnet/guest/initrd"},
		nested.File{Src: file, Dst: "/hvnet/up.yaml"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level %s up --nested never --kernel /hvnet/guest/kernel --initrd /hvnet/guest/initrd",
		hclogLevel(e.log))
	if apiSock != "" {
		script += " --api " + shellQuote(apiSock)
	}
	script += " /hvnet/up.yaml"
	return runLabNested(ctx, e, set, files, script, guests)
}

// labGuests turns a checked topology's guests into lab guests: each is a
// lab port (the lab kind's keys, checked as on every surface) booted by
// the lab.
func labGuests(t *topology.Topology) ([]lab.GuestConfig, error) {
	var gs []lab.GuestConfig
	for i := range t.Guests {
		g := &t.Guests[i]
		v := daemon.Values{}
		set := func(k, val string) {
			if val != "" && val != "0" {
				v.Add(k, val)
			}
		}
		set("ip", g.IP)
		set("mac", g.MAC)
		set("queues", strconv.Itoa(g.Queues))
		set("mem", g.Mem)
		set("cpus", strconv.Itoa(g.CPUs))
		set("guest-mtu", strconv.Itoa(g.GuestMTU))
		for _, f := range g.VIFs {
			set("vif", f)
		}
		set("cmd", g.Cmd)
		p, err := daemon.NewPortSpec(api.KindLab, g.Config(), v)
		if err != nil {
			var oe *daemon.OptionError
			line := g.Line
			if errors.As(err, &oe) {
				line = g.LineOf(strings.ReplaceAll(oe.Key, "-", "_"))
			}
			return nil, fmt.Errorf("%s:%d: guests[%d]: %v", t.File, line, i, err)
		}
		lg, err := labkind.GuestConfig(p)
		if err != nil {
			return nil, err
		}
		lg.ACL, lg.EgressACL = g.ACL.Lists()
		lg.SecurityGroup = g.SecurityGroup.Group()
		gs = append(gs, lg)
	}
	return gs, nil
}

// topologyConfig turns a checked topology into the daemon's
// configuration, lab guests aside (labGuests).
func topologyConfig(t *topology.Topology) (daemon.Config, error) {
	cfg := daemon.Config{API: t.Switch.API, MetricsAddr: t.Switch.MetricsAddr, DashboardAddr: t.Switch.DashboardAddr, Aging: t.Switch.Aging, FDBMaxEntries: t.Switch.FDBMaxEntries,
		MACLimit: t.Switch.MACLimit, MACMoveHoldDown: t.Switch.MACMoveHoldDown, Conntrack: t.Conntrack.Config(), FlowExport: t.FlowExport.Config()}
	if cfg.API == "" {
		cfg.API = envOr("HVNET_SOCKET", defaultSocket)
	}
	add := func(kind string, port vswitch.PortConfig, v daemon.Values, opts topology.Options, line func(string) int, s *topology.PortSettings) error {
		for k, vs := range v {
			if len(vs) == 1 && vs[0] == "" {
				delete(v, k)
			}
		}
		for k, vs := range opts.Values {
			if _, dup := v[k]; dup {
				return fmt.Errorf("%s:%d: port %s: options.%s: given as %s too", t.File, opts.Lines[k], port.Name, k, topologyKey(k))
			}
			v[k] = vs
		}
		p, err := daemon.NewPortSpec(kind, port, v)
		if err != nil {
			var oe *daemon.OptionError
			if errors.As(err, &oe) {
				l := line(topologyKey(oe.Key))
				if ol, ok := opts.Lines[oe.Key]; ok {
					l = ol
				}
				return fmt.Errorf("%s:%d: port %s: %v", t.File, l, port.Name, err)
			}
			return fmt.Errorf("%s: port %s: %v", t.File, port.Name, err)
		}
		cfg.Ports = append(cfg.Ports, p)
		if s.ACL != nil {
			in, out := s.ACL.Lists()
			cfg.ACLs = append(cfg.ACLs, daemon.PortACL{Port: port.Name, In: in, Out: out})
		}
		if g := s.SecurityGroup.Group(); g != nil {
			cfg.SecurityGroups = append(cfg.SecurityGroups, daemon.PortSG{Port: port.Name, Group: *g})
		}
		return nil
	}
	for _, p := range t.Ports {
		kind := p.Kind
		if kind == "" {
			kind = api.KindVhostUser
		}
		v := daemon.Values{"socket": {p.Socket}, "mode": {p.SocketMode}, "mac": {p.MAC}}
		if p.Queues > 0 {
			v["queues"] = []string{strconv.Itoa(p.Queues)}
		}
		if err := add(kind, p.Config(p.Name), v, p.Options, p.LineOf, &p.PortSettings); err != nil {
			return cfg, err
		}
	}
	if u := t.Uplink; u != nil {
		v := daemon.Values{"if": {u.Interface}, "tx": {u.TXMode}}
		if err := add(api.KindUplink, u.Config(u.Name), v, topology.Options{}, u.LineOf, &u.PortSettings); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// topologyKey is the topology file's key of a kind option: the command
// line's, "_" for "-".
func topologyKey(opt string) string { return strings.ReplaceAll(opt, "-", "_") }
