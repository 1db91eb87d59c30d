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
	"syscall"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/conntrack"
	"github.com/hvnet/hvnet/daemon"
	_ "github.com/hvnet/hvnet/daemon/kinds" // every port kind hvnet ships
	"github.com/hvnet/hvnet/dashboard"
	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// specFlags collects a repeated flag's values.
type specFlags []string

func (p *specFlags) String() string     { return strings.Join(*p, " ") }
func (p *specFlags) Set(v string) error { *p = append(*p, v); return nil }

const switchPortHelp = `[kind=KIND,]name=NAME,KEY=VALUE,... (kind: vhost-user unless given;
	--kinds lists every kind's keys; keys every port takes: vlan=VID | trunk=VID:VID...[,native=VID],
	mtu=N, rate=BYTES/s, pps=N, police=BYTES/s, mac-limit=N|-1, port-security=on|off)`

// cmdSwitch runs the switch daemon (package daemon): ports of every kind
// on the built-in switch, and the control API, until SIGTERM or SIGINT,
// which closes every port and removes the sockets it created.
func cmdSwitch(e *env, args []string) int {
	fs := flag.NewFlagSet("switch", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var ports, uplinks specFlags
	fs.Var(&ports, "port", "a port (repeatable): "+switchPortHelp)
	fs.Var(&uplinks, "uplink", "an AF_PACKET uplink (repeatable): --port kind=uplink,... (keys name, if, tx and every port's)")
	config := fs.String("config", "", "config file: one \"KIND KEY=VALUE ...\" line per port (KIND: a port kind, or port for vhost-user), # comments")
	listKinds := fs.Bool("kinds", false, "list the port kinds and their keys, and exit")
	aging := fs.Duration("aging", 300*time.Second, "FDB aging time")
	fdbMax := fs.Int("fdb-max-entries", vswitch.DefaultFDBMaxEntries, "learned FDB entries in the whole switch; a frame from a new MAC past it is dropped (drop reason fdb_full)")
	macLimit := fs.Int("mac-limit", vswitch.DefaultMACLimit, "learned MACs per port, for ports without mac-limit= (-1: none); a frame from a new MAC past it is dropped (mac_limit)")
	ctMax := fs.Int("conntrack-max-entries", conntrack.DefaultTableLimit, "connections tracked for security groups over every port (topology: conntrack.max_entries); a new connection past it is dropped (ct_full)")
	ctPerPort := fs.Int("conntrack-max-entries-per-port", conntrack.DefaultZoneLimit, "connections tracked per port with a security group (conntrack.max_entries_per_port); a new connection past it is dropped (ct_full)")
	holdDown := fs.Duration("mac-move-hold-down", vswitch.DefaultMACMoveHoldDown, "a learned MAC moves to another port only after this long without frames on its own; until then such frames are dropped (mac_move); negative: no hold-down")
	apiSock := fs.String("api", envOr("HVNET_SOCKET", defaultSocket), "control API socket (\"\": no API)")
	apiMode := fs.String("api-mode", "", "the API socket's mode, octal (default 0600: root alone; 0660 with --api-group)")
	apiOwner := fs.String("api-owner", "", "the API socket's owner, by name or number (default: the daemon's user)")
	apiGroup := fs.String("api-group", "", "the API socket's group, by name or number, whose members may run hvnet ctl with --api-mode 0660")
	metricsAddr := fs.String("metrics-addr", "", "a TCP address serving GET /metrics alone, for Prometheus (127.0.0.1:9477; default none)")
	dashAddr := fs.String("dashboard-addr", "", "a TCP address serving the read-only web dashboard (9478: localhost's port 9478; HOST:PORT to serve other hosts; default none)")
	kernel := fs.String("kernel", "", "lab guest ports' bzImage (default: the built test image, built on first use)")
	initrd := fs.String("initrd", "", "lab guest ports' initramfs (default: the built test image)")
	runDir := fs.String("run-dir", "", "the only directory for sockets of ports added through the API (default: the API socket's path without its extension: /run/hvnet)")
	captureDir := fs.String("capture-dir", "", "the only directory API file mirrors write to (default: RUN-DIR/captures)")
	var flowCollectors specFlags
	fs.Var(&flowCollectors, "flow-collector", "an IPFIX collector, HOST:PORT over UDP (repeatable; topology: flow_export.collectors): turns flow export on")
	flowOn := fs.Bool("flow-export", false, "keep the flow cache (hvnet ctl flows) without a collector")
	flowCfg := ipfix.Config{}.WithDefaults()
	fs.DurationVar(&flowCfg.ActiveTimeout, "flow-active-timeout", flowCfg.ActiveTimeout, "a flow still going is exported this long after its first frame (flow_export.active_timeout)")
	fs.DurationVar(&flowCfg.IdleTimeout, "flow-idle-timeout", flowCfg.IdleTimeout, "a flow is exported and forgotten after this long without frames (flow_export.idle_timeout)")
	fs.IntVar(&flowCfg.Sampling, "flow-sampling", flowCfg.Sampling, "count one frame in N in flows (flow_export.sampling); collectors are told N")
	fs.IntVar(&flowCfg.MaxFlows, "flow-max-flows", flowCfg.MaxFlows, "flows cached in the whole switch (flow_export.max_flows); frames of new flows past it are forwarded, not counted")
	fs.IntVar(&flowCfg.MaxFlowsPerPort, "flow-max-flows-per-port", flowCfg.MaxFlowsPerPort, "flows one port may hold in the cache (flow_export.max_flows_per_port; 0: a quarter of --flow-max-flows)")
	fs.DurationVar(&flowCfg.TemplateRefresh, "flow-template-refresh", flowCfg.TemplateRefresh, "send the IPFIX templates again this often (flow_export.template_refresh; RFC 7011 §8.4)")
	fs.IntVar(&flowCfg.TemplateRefreshPackets, "flow-template-refresh-packets", 0, "and after this many messages (flow_export.template_refresh_packets; 0: by time only)")
	flowDomain := fs.Uint("flow-observation-domain", ipfix.DefaultObservationDomain, "the IPFIX Observation Domain ID (flow_export.observation_domain)")
	var lim api.Limits
	fs.IntVar(&lim.MaxConns, "api-max-conns", api.DefaultMaxConns, "API connections served at once (more wait)")
	fs.DurationVar(&lim.ReadTimeout, "api-read-timeout", api.DefaultReadTimeout, "time for an API request to arrive (its header: at most 5 s)")
	fs.DurationVar(&lim.WriteTimeout, "api-write-timeout", api.DefaultWriteTimeout, "time to handle and answer an API request (a capture: per batch)")
	fs.DurationVar(&lim.IdleTimeout, "api-idle-timeout", api.DefaultIdleTimeout, "time an idle API connection is kept")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("%w: switch: unexpected argument %q", errUsage, fs.Arg(0)))
	}
	if *listKinds {
		printKinds(e)
		return 0
	}
	lim.ReadHeaderTimeout = min(lim.ReadTimeout, api.DefaultReadHeaderTimeout)
	cfg := daemon.Config{Aging: *aging, API: *apiSock,
		FDBMaxEntries: *fdbMax, MACLimit: *macLimit, MACMoveHoldDown: *holdDown, Conntrack: conntrack.Config{TableLimit: *ctMax, ZoneLimit: *ctPerPort},
		RunDir: *runDir, CaptureDir: *captureDir, APILimits: lim, MetricsAddr: *metricsAddr, DashboardAddr: *dashAddr, BuildInfo: buildInfo(),
		Images: guestImages{kernel: *kernel, initrd: *initrd,
			build: func(ctx context.Context) (*images.Set, error) { return buildImages(ctx, e) }}.resolve}
	if err := cfg.CheckFDB(); err != nil {
		return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
	}
	if err := cfg.CheckConntrack(); err != nil {
		return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
	}
	if *dashAddr != "" {
		if _, err := dashboard.ResolveAddr(*dashAddr); err != nil {
			return fail(e, fmt.Errorf("%w: switch: --dashboard-addr %v", errUsage, err))
		}
	}
	flowCfg.Enabled = *flowOn || len(flowCollectors) > 0
	flowCfg.Collectors = flowCollectors
	if *flowDomain > 1<<32-1 {
		return fail(e, fmt.Errorf("%w: switch: --flow-observation-domain %d: want 0..%d", errUsage, *flowDomain, uint32(1<<32-1)))
	}
	flowCfg.ObservationDomain = uint32(*flowDomain)
	if err := flowCfg.Validate(); err != nil {
		return fail(e, fmt.Errorf("%w: switch: %v", errUsage, flowFlagError(err)))
	}
	cfg.FlowExport = flowCfg
	access, err := daemon.ParseSocketAccess(*apiMode, *apiOwner, *apiGroup, [3]string{"--api-mode", "--api-owner", "--api-group"})
	if err != nil {
		return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
	}
	cfg.APIAccess = access
	// load reads the ports of the flags and the config file: at start,
	// and again on SIGHUP.
	load := func() (daemon.Config, error) {
		var ps []daemon.PortSpec
		for i, spec := range ports {
			p, err := parsePortFlag(api.KindVhostUser, spec)
			if err != nil {
				return cfg, fmt.Errorf("--port #%d: %v", i+1, err)
			}
			ps = append(ps, p)
		}
		for i, spec := range uplinks {
			p, err := parsePortFlag(api.KindUplink, spec)
			if err != nil {
				return cfg, fmt.Errorf("--uplink #%d: %v", i+1, err)
			}
			ps = append(ps, p)
		}
		if *config != "" {
			fps, err := daemon.LoadFile(*config)
			if err != nil {
				return cfg, err
			}
			ps = append(ps, fps...)
		}
		next := cfg
		next.Ports = ps
		return next, daemon.CheckNames(ps)
	}
	cfg, err = load()
	if err != nil {
		return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
	}
	cfg.Notify = sdNotifier(e.log)
	if len(cfg.Ports) == 0 && cfg.API == "" {
		return fail(e, fmt.Errorf("%w: switch: no ports and no API (use --port, --uplink, --config or --api)", errUsage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := daemon.Serve(ctx, e.log, cfg, hup, load); err != nil {
		return fail(e, err)
	}
	return 0
}

// parsePortFlag parses a --port or --uplink value: comma-separated
// KEY=VALUE fields (a lab guest's cmd= last, taking the rest), a port of
// kind unless a kind= field names another.
func parsePortFlag(kind, spec string) (daemon.PortSpec, error) {
	var rest []string
	for _, f := range daemon.SplitSpec(spec, ",") {
		if k, ok := strings.CutPrefix(f, "kind="); ok {
			kind = k
			continue
		}
		rest = append(rest, f)
	}
	return daemon.ParsePort(kind, rest)
}

// printKinds lists the port kinds and their keys (hvnet switch --kinds).
func printKinds(e *env) {
	fmt.Fprintln(e.stdout, "keys every port takes:")
	for _, o := range daemon.CommonOptions() {
		fmt.Fprintf(e.stdout, "\t%s=%s: %s\n", o.Key, o.Value, o.Help)
	}
	for _, n := range daemon.Kinds() {
		k, _ := daemon.Lookup(n)
		fmt.Fprint(e.stdout, "\n"+daemon.Help(k))
	}
}

// guestImages is where the daemon's lab guests boot from: the kernel and
// initramfs given, else the image cache (built on first use).
type guestImages struct {
	kernel, initrd string
	build          func(context.Context) (*images.Set, error) // nil: none
}

func (gi guestImages) resolve(ctx context.Context) (string, string, error) {
	if gi.kernel != "" && gi.initrd != "" {
		return gi.kernel, gi.initrd, nil
	}
	if gi.build == nil {
		return "", "", errors.New("no guest images configured (hvnet switch --kernel K --initrd I)")
	}
	set, err := gi.build(ctx)
	if err != nil {
		return "", "", fmt.Errorf("no guest images: --kernel/--initrd not given and the image cache failed: %w", err)
	}
	k, i := gi.kernel, gi.initrd
	if k == "" {
		k = set.Kernel
	}
	if i == "" {
		i = set.Initrd
	}
	return k, i, nil
}

// flowFlagError names the --flow-* flag of a flow export setting refused.
func flowFlagError(err error) error {
	var fe *ipfix.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	flag := "--flow-" + strings.ReplaceAll(fe.Field, "_", "-")
	if i, ok := strings.CutPrefix(fe.Field, "collectors["); ok {
		n, _ := strconv.Atoi(strings.TrimSuffix(i, "]"))
		flag = fmt.Sprintf("--flow-collector #%d", n+1)
	}
	return fmt.Errorf("%s %q: %s", flag, fe.Value, fe.Want)
}
