package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvnet/api"
	"hvnet/images"
	"hvnet/lab"
	vswitch "hvnet/switch"
	"hvnet/uplink"
	"hvnet/vhost"
)

// specFlags collects a repeated flag's values.
type specFlags []string

func (p *specFlags) String() string     { return strings.Join(*p, " ") }
func (p *specFlags) Set(v string) error { *p = append(*p, v); return nil }

const (
	switchPortHelp = `port: name=NAME,socket=PATH[,mode=server|client][,vlan=VID | trunk=VID:VID...[,native=VID]]
	[,mtu=N][,queues=N][,mac=MAC[,port-security=on|off]][,rate=BYTES/s][,pps=N][,police=BYTES/s][,mac-limit=N|-1]
	(with mac=, port security accepts only that source MAC unless port-security=off)`
	switchUplinkHelp = `uplink: name=NAME,if=IFACE[,vlan=VID | trunk=VID:VID...[,native=VID]][,tx=ring|sendmmsg]
	[,mtu=N][,rate=BYTES/s][,pps=N][,police=BYTES/s][,mac-limit=N|-1]`
)

// daemonConfig is what the switch daemon serves: from flags and a config
// file (hvnet switch) or a topology file (hvnet up).
type daemonConfig struct {
	Vhost   []vhost.PortConfig
	Uplinks []uplinkConfig
	Aging   time.Duration
	// FDB bounds and MAC-move hold-down (vswitch.Config; 0: the defaults).
	FDBMaxEntries, MACLimit int
	MACMoveHoldDown         time.Duration
	API                     string // control API socket; "" serves none
	// The API's directories (apiDirs: "" takes the defaults) and limits.
	RunDir, CaptureDir string
	APILimits          api.Limits
	// Lab guest ports added through the API boot from these images (empty:
	// from BuildImages, called on first use).
	Kernel, Initrd string
	BuildImages    func(context.Context) (*images.Set, error)
	ACLs           []portACL // set once the ports are up
}

// portACL is a port's ingress and egress ACLs.
type portACL struct {
	Port    string
	In, Out vswitch.ACL
}

// uplinkConfig is an AF_PACKET uplink port.
type uplinkConfig struct {
	Port      vswitch.PortConfig
	Interface string
	TX        uplink.TXMode
}

// cmdSwitch runs the switch daemon: vhost-user and uplink ports on the
// built-in switch, and the control API, until SIGTERM or SIGINT, which
// closes every port and removes the sockets it created.
func cmdSwitch(e *env, args []string) int {
	fs := flag.NewFlagSet("switch", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var ports, uplinks specFlags
	fs.Var(&ports, "port", "a vhost-user port (repeatable): "+switchPortHelp)
	fs.Var(&uplinks, "uplink", "an AF_PACKET uplink on a host interface (repeatable): "+switchUplinkHelp)
	config := fs.String("config", "", "config file: one \"port KEY=VALUE ...\" or \"uplink KEY=VALUE ...\" line per port, # comments")
	aging := fs.Duration("aging", 300*time.Second, "FDB aging time")
	fdbMax := fs.Int("fdb-max-entries", vswitch.DefaultFDBMaxEntries, "learned FDB entries in the whole switch; a frame from a new MAC past it is dropped (drop reason fdb_full)")
	macLimit := fs.Int("mac-limit", vswitch.DefaultMACLimit, "learned MACs per port, for ports without mac-limit= (-1: none); a frame from a new MAC past it is dropped (mac_limit)")
	holdDown := fs.Duration("mac-move-hold-down", vswitch.DefaultMACMoveHoldDown, "a learned MAC moves to another port only after this long without frames on its own; until then such frames are dropped (mac_move); negative: no hold-down")
	apiSock := fs.String("api", envOr("HVNET_SOCKET", defaultSocket), "control API socket (\"\": no API)")
	kernel := fs.String("kernel", "", "lab guest ports' bzImage (default: the built test image, built on first use)")
	initrd := fs.String("initrd", "", "lab guest ports' initramfs (default: the built test image)")
	runDir := fs.String("run-dir", "", "the only directory for sockets of ports added through the API (default: the API socket's path without its extension: /run/hvnet)")
	captureDir := fs.String("capture-dir", "", "the only directory API file mirrors write to (default: RUN-DIR/captures)")
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
	lim.ReadHeaderTimeout = min(lim.ReadTimeout, api.DefaultReadHeaderTimeout)
	if err := checkFDBFlags(*fdbMax, *macLimit, *holdDown); err != nil {
		return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
	}
	cfg := daemonConfig{Aging: *aging, API: *apiSock, Kernel: *kernel, Initrd: *initrd,
		FDBMaxEntries: *fdbMax, MACLimit: *macLimit, MACMoveHoldDown: *holdDown,
		RunDir: *runDir, CaptureDir: *captureDir, APILimits: lim,
		BuildImages: func(ctx context.Context) (*images.Set, error) { return buildImages(ctx, e) }}
	for i, spec := range ports {
		c, err := parsePortSpec(strings.Split(spec, ","))
		if err != nil {
			return fail(e, fmt.Errorf("%w: switch: --port #%d: %v", errUsage, i+1, err))
		}
		cfg.Vhost = append(cfg.Vhost, c)
	}
	for i, spec := range uplinks {
		u, err := parseUplinkSpec(strings.Split(spec, ","))
		if err != nil {
			return fail(e, fmt.Errorf("%w: switch: --uplink #%d: %v", errUsage, i+1, err))
		}
		cfg.Uplinks = append(cfg.Uplinks, u)
	}
	if *config != "" {
		vs, us, err := loadSwitchConfig(*config)
		if err != nil {
			return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
		}
		cfg.Vhost, cfg.Uplinks = append(cfg.Vhost, vs...), append(cfg.Uplinks, us...)
	}
	if len(cfg.Vhost)+len(cfg.Uplinks) == 0 && cfg.API == "" {
		return fail(e, fmt.Errorf("%w: switch: no ports and no API (use --port, --uplink, --config or --api)", errUsage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDaemon(ctx, e.log, cfg); err != nil {
		return fail(e, err)
	}
	return 0
}

// runDaemon serves cfg until ctx ends: the switch, its ports and the
// control API. Shutdown closes the API socket, then every port (removing
// server-mode sockets), then detaches the ports.
func runDaemon(ctx context.Context, log hclog.Logger, cfg daemonConfig) error {
	if err := checkNames(cfg); err != nil {
		return err
	}
	sc := cfg.switchConfig()
	sc.Logger = log.Named("switch")
	sw := vswitch.New(sc)
	r, err := startDaemon(ctx, log, sw, cfg, true)
	if err != nil {
		return err
	}
	<-r.ctx.Done()
	return r.shutdown()
}

// runningDaemon is the daemon's pieces serving on a switch: its own
// (hvnet switch, hvnet up) or a lab's (hvnet up with guests).
type runningDaemon struct {
	ctx     context.Context // ends on the caller's ctx or a failed API server
	cancel  context.CancelCauseFunc
	log     hclog.Logger
	sw      *vswitch.Switch
	d       *daemon
	apiDone chan struct{}
	wg      sync.WaitGroup
}

// startDaemon brings cfg's ports and the control API up on sw, and runs
// sw's shapers and FDB aging when runSwitch (a lab runs its switch's
// itself). Ports and the API serve until ctx ends; then call shutdown.
func startDaemon(ctx context.Context, log hclog.Logger, sw *vswitch.Switch, cfg daemonConfig, runSwitch bool) (*runningDaemon, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	var ln net.Listener
	var runDir, captureDir string
	if cfg.API != "" {
		var err error
		if runDir, captureDir, err = apiDirs(cfg); err != nil {
			cancel(nil)
			return nil, fmt.Errorf("switch: api: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(cfg.API), 0o755); err != nil {
			cancel(nil)
			return nil, fmt.Errorf("switch: api: %w", err)
		}
		l, err := api.Listen(cfg.API)
		if err != nil {
			cancel(nil)
			return nil, fmt.Errorf("switch: api: %w", err)
		}
		ln = l
	}
	d := newDaemon(ctx, log, sw, cfg.API)
	d.images = guestImages{kernel: cfg.Kernel, initrd: cfg.Initrd, build: cfg.BuildImages}
	abort := func(err error) (*runningDaemon, error) {
		if ln != nil {
			ln.Close()
		}
		d.close()
		cancel(nil)
		return nil, fmt.Errorf("switch: %w", err)
	}
	for _, c := range cfg.Vhost {
		err := d.addVhost(c, func(p vswitch.Port) (*vswitch.PortHandle, error) { return sw.AddPort(c.Port, p) })
		if err != nil {
			return abort(err)
		}
	}
	for _, u := range cfg.Uplinks {
		err := d.addUplink(u, func(p vswitch.Port) (*vswitch.PortHandle, error) { return sw.AddPort(u.Port, p) })
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
	r := &runningDaemon{ctx: ctx, cancel: cancel, log: log, sw: sw, d: d, apiDone: make(chan struct{})}
	if runSwitch {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			sw.Run(ctx, 100*time.Millisecond) // shapers and FDB aging
		}()
	}
	if ln != nil {
		srv := api.NewServer(sw, api.Options{Logger: log.Named("api"), Ports: d,
			SocketDir: runDir, CaptureDir: captureDir, Limits: cfg.APILimits})
		go func() {
			defer close(r.apiDone)
			if err := srv.ServeListener(ctx, ln); err != nil {
				cancel(err)
			}
		}()
	} else {
		close(r.apiDone)
	}
	log.Info("switch running", "ports", len(cfg.Vhost)+len(cfg.Uplinks), "api", cfg.API, "run_dir", runDir, "capture_dir", captureDir)
	return r, nil
}

// shutdown ends the daemon (if its ctx has not ended yet) and waits for
// it: the API socket goes first, then every port. It returns the API
// server's failure, if that is what ended it.
func (r *runningDaemon) shutdown() error {
	r.log.Info("shutting down")
	r.cancel(context.Canceled)
	<-r.apiDone // the API socket is gone: no more ports come or go
	// The last counters, while the ports still exist (close removes them);
	// frames still moving until their sessions end are not in them.
	final := r.sw.Counters()
	r.d.close()
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

// switchConfig is the switch's configuration (logger and clock aside).
func (c daemonConfig) switchConfig() vswitch.Config {
	return vswitch.Config{AgingTime: c.Aging, FDBMaxEntries: c.FDBMaxEntries, MACLimit: c.MACLimit,
		MACMoveHoldDown: c.MACMoveHoldDown}
}

// checkFDBFlags checks the FDB bounds given on the command line.
func checkFDBFlags(max, limit int, holdDown time.Duration) error {
	switch {
	case max < 1 || max > vswitch.MaxFDBEntries:
		return fmt.Errorf("--fdb-max-entries %d: want 1..%d", max, vswitch.MaxFDBEntries)
	case limit != vswitch.NoMACLimit && (limit < 1 || limit > vswitch.MaxMACLimit):
		return fmt.Errorf("--mac-limit %d: want -1 (none) or 1..%d", limit, vswitch.MaxMACLimit)
	case holdDown > vswitch.MaxMACMoveHoldDown:
		return fmt.Errorf("--mac-move-hold-down %v: want at most %v", holdDown, vswitch.MaxMACMoveHoldDown)
	}
	return nil
}

// checkNames rejects two ports of one name.
func checkNames(cfg daemonConfig) error {
	seen := map[string]bool{}
	names := make([]string, 0, len(cfg.Vhost)+len(cfg.Uplinks))
	for _, c := range cfg.Vhost {
		names = append(names, c.Port.Name)
	}
	for _, u := range cfg.Uplinks {
		names = append(names, u.Port.Name)
	}
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("%w: switch: port %q defined twice", errUsage, n)
		}
		seen[n] = true
	}
	return nil
}

// loadSwitchConfig reads a config file: "port KEY=VALUE ..." (vhost-user)
// and "uplink KEY=VALUE ..." lines (fields separated by spaces or commas),
// blank lines and # comments. Errors name the file, the line and the field.
func loadSwitchConfig(path string) ([]vhost.PortConfig, []uplinkConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var vs []vhost.PortConfig
	var us []uplinkConfig
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "port":
			c, err := parsePortSpec(fields[1:])
			if err != nil {
				return nil, nil, fmt.Errorf("%s:%d: %v", path, n, err)
			}
			vs = append(vs, c)
		case "uplink":
			u, err := parseUplinkSpec(fields[1:])
			if err != nil {
				return nil, nil, fmt.Errorf("%s:%d: %v", path, n, err)
			}
			us = append(us, u)
		default:
			return nil, nil, fmt.Errorf("%s:%d: unknown directive %q (want \"port\" or \"uplink\")", path, n, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return vs, us, nil
}

// parsePortSpec parses KEY=VALUE fields into a vhost-user port's
// configuration.
func parsePortSpec(fields []string) (vhost.PortConfig, error) {
	c := vhost.PortConfig{}
	sp := portSpec{cfg: vswitch.PortConfig{PVID: 1}}
	err := sp.parse(fields, "name, socket, mode, vlan, trunk, native, mtu, queues, mac, port-security, rate, pps, police, mac-limit",
		func(k, v string) (bool, error) {
			switch k {
			case "socket":
				if v == "" {
					return true, errors.New("is empty")
				}
				c.Socket = v
			case "mode":
				switch v {
				case "server":
					c.Mode = vhost.Server
				case "client":
					c.Mode = vhost.Client
				default:
					return true, errors.New("is not server or client")
				}
			case "queues":
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 16 {
					return true, errors.New("is not a number of queue pairs (1..16)")
				}
				c.QueuePairs = n
			case "mac":
				m, err := vswitch.ParseStationMAC(v)
				if err != nil {
					return true, err
				}
				c.MAC = m
			case "port-security":
				ps, err := vswitch.ParsePortSecurity(v)
				if err != nil {
					return true, errors.New("is not on or off")
				}
				sp.cfg.PortSecurity = ps
			default:
				return false, nil
			}
			return true, nil
		})
	c.Port = sp.cfg
	if sp.cfg.MTU > 0 {
		c.MTU = uint16(sp.cfg.MTU)
	}
	if err == nil && c.Socket == "" {
		err = errors.New("field \"socket\": missing")
	}
	return c, err
}

// parseUplinkSpec parses KEY=VALUE fields into an uplink's configuration.
func parseUplinkSpec(fields []string) (uplinkConfig, error) {
	u := uplinkConfig{}
	sp := portSpec{cfg: vswitch.PortConfig{PVID: 1}}
	err := sp.parse(fields, "name, if, tx, vlan, trunk, native, mtu, rate, pps, police, mac-limit",
		func(k, v string) (bool, error) {
			switch k {
			case "if", "interface":
				if v == "" {
					return true, errors.New("is empty")
				}
				u.Interface = v
			case "tx":
				m, err := uplink.ParseTXMode(v)
				if err != nil {
					return true, errors.New("is not ring or sendmmsg")
				}
				u.TX = m
			default:
				return false, nil
			}
			return true, nil
		})
	u.Port = sp.cfg
	if err == nil && u.Interface == "" {
		err = errors.New("field \"if\": missing")
	}
	return u, err
}

// portSpec parses the switch-port fields every port kind has.
type portSpec struct {
	cfg                 vswitch.PortConfig
	trunk, native, vlan bool
}

// parse reads fields; kind handles the kind's own keys (reporting whether
// it knew the key), known lists every key for the unknown-key error.
func (sp *portSpec) parse(fields []string, known string, kind func(k, v string) (bool, error)) error {
	for _, kv := range fields {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("field %q: want KEY=VALUE", kv)
		}
		bad := func(why string) error { return fmt.Errorf("field %q: %q %s", k, v, why) }
		if ok, err := kind(k, v); ok {
			var ve *vswitch.ValueError
			if errors.As(err, &ve) {
				return fmt.Errorf("field %q: %w", k, err) // it names the value
			}
			if err != nil {
				return bad(err.Error())
			}
			continue
		}
		switch k {
		case "name":
			if v == "" {
				return bad("is empty")
			}
			sp.cfg.Name = v
		case "vlan", "pvid":
			vid, err := vswitch.ParseVID(v)
			if err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
			sp.vlan, sp.cfg.PVID = true, vid
		case "trunk":
			sp.trunk = true
			vids, err := vswitch.ParseVIDs(v, ":")
			if err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
			sp.cfg.AllowedVLANs = append(sp.cfg.AllowedVLANs, vids...)
		case "native":
			vid, err := vswitch.ParseVID(v)
			if err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
			sp.native, sp.cfg.NativeVLAN = true, vid
		case "mtu":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n < 68 {
				return bad("is not an MTU (68..65535)")
			}
			sp.cfg.MTU = int(n)
		case "mac-limit":
			n, err := strconv.Atoi(v)
			if err != nil || n != vswitch.NoMACLimit && (n < 1 || n > vswitch.MaxMACLimit) {
				return bad(fmt.Sprintf("is not a MAC limit (-1: none, or 1..%d)", vswitch.MaxMACLimit))
			}
			sp.cfg.MACLimit = n
		case "rate", "pps", "police":
			n, err := parseRate(v)
			if err != nil {
				return bad(err.Error())
			}
			switch k {
			case "rate":
				sp.cfg.Egress.Bytes.Rate = n
			case "pps":
				sp.cfg.Egress.Packets.Rate = n
			default:
				sp.cfg.Ingress.Bytes.Rate = n
			}
		default:
			return fmt.Errorf("field %q: unknown (want %s)", k, known)
		}
	}
	switch {
	case sp.cfg.Name == "":
		return errors.New("field \"name\": missing")
	case sp.native && !sp.trunk:
		return errors.New("field \"native\": only for trunk ports")
	case sp.vlan && sp.trunk:
		return errors.New("field \"vlan\": only for access ports (a trunk's untagged VLAN is native)")
	}
	if sp.trunk {
		sp.cfg.Mode, sp.cfg.PVID = vswitch.ModeTrunk, 0
	}
	return nil
}

// parseRate parses a positive rate with an optional k, M or G (decimal)
// suffix.
func parseRate(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, errors.New("is not a positive rate (with an optional k, M, G suffix)")
	}
	return n * mult, nil
}

// daemon owns the switch daemon's port backends: those of its
// configuration and those added through the control API (it is the API's
// PortFactory).
type daemon struct {
	ctx context.Context // the daemon's life: vhost-user ports serve until it ends
	log hclog.Logger
	sw  *vswitch.Switch
	api string // the API socket, never a port's

	// mu serialises adding and removing backends (rare; an add may take
	// a while to open rings) and guards ports and closed.
	mu     sync.Mutex
	ports  map[string]*backendPort
	byName sync.Map // name → *backendPort, d.ports for readers that must not wait on d.mu (DeviceCounters)
	closed bool
	guests int // lab guests booted so far

	images guestImages  // lab guest ports boot these
	probe  func() error // whether KVM can boot them (probeKVM)
}

// backendPort is one port's backend: a vhost-user port, an uplink or a
// lab guest.
type backendPort struct {
	guest  *lab.Guest
	vh     *vhost.Port
	done   chan struct{} // closed when vh.Run returned
	socket string        // vhost-user server socket, absolute
	up     *uplink.Port
	iface  string
}

var _ api.PortFactory = (*daemon)(nil)

func newDaemon(ctx context.Context, log hclog.Logger, sw *vswitch.Switch, apiSock string) *daemon {
	return &daemon{ctx: ctx, log: log, sw: sw, api: apiSock, ports: map[string]*backendPort{}, probe: probeKVM}
}

type attachFunc = func(vswitch.Port) (*vswitch.PortHandle, error)

// Add makes the backend spec asks for (api.PortFactory).
func (d *daemon) Add(ctx context.Context, spec api.PortSpec, attach attachFunc) error {
	name := spec.Config.Name
	switch spec.Kind {
	case api.KindVhostUser:
		c := vhost.PortConfig{Port: vswitch.PortConfig{Name: name}, Socket: spec.Socket, QueuePairs: spec.Queues}
		if spec.SocketMode == "client" {
			c.Mode = vhost.Client
		}
		if spec.MAC != "" {
			m, err := vswitch.ParseStationMAC(spec.MAC)
			if err != nil {
				return fmt.Errorf("mac: %w", err)
			}
			c.MAC = m
		}
		if m := spec.Config.MTU; m >= 68 && m <= 65535 {
			c.MTU = uint16(m)
		}
		return d.addVhost(c, attach)
	case api.KindUplink:
		u := uplinkConfig{Port: vswitch.PortConfig{Name: name}, Interface: spec.Interface}
		if spec.TXMode != "" {
			m, err := uplink.ParseTXMode(spec.TXMode)
			if err != nil {
				return err
			}
			u.TX = m
		}
		return d.addUplink(u, attach)
	case api.KindLab:
		return d.addLab(ctx, spec, attach)
	}
	return fmt.Errorf("kind %q: want vhost-user, lab or uplink", spec.Kind)
}

// reserve checks that a new port's name, socket and interface are free;
// d.mu is held.
func (d *daemon) reserve(name, socket, iface string) error {
	if d.closed {
		return errors.New("the daemon is shutting down")
	}
	if _, ok := d.ports[name]; ok {
		return fmt.Errorf("port %q: %w", name, vswitch.ErrPortExists)
	}
	if socket != "" && socket == d.api {
		return fmt.Errorf("port %q: socket %s is the control API's", name, socket)
	}
	for n, p := range d.ports {
		if socket != "" && p.socket == socket {
			return fmt.Errorf("port %q: socket %s is port %q's", name, socket, n)
		}
		if iface != "" && p.iface == iface {
			return fmt.Errorf("port %q: interface %s is port %q's uplink", name, iface, n)
		}
	}
	return nil
}

// addVhost makes a vhost-user port and serves it until the daemon ends or
// the port is removed.
func (d *daemon) addVhost(c vhost.PortConfig, attach attachFunc) error {
	name := c.Port.Name
	sock, err := filepath.Abs(c.Socket)
	if err != nil {
		return fmt.Errorf("port %q: socket: %w", name, err)
	}
	c.Socket = sock
	d.mu.Lock()
	defer d.mu.Unlock()
	bp := &backendPort{done: make(chan struct{})}
	if c.Mode == vhost.Server {
		bp.socket = sock
	}
	if err := d.reserve(name, bp.socket, ""); err != nil {
		return err
	}
	if c.Mode == vhost.Server {
		// NewPort replaces a stale socket file: make sure it is stale.
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return fmt.Errorf("port %q: socket %s is in use by another process", name, sock)
		}
		if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
			return fmt.Errorf("port %q: %w", name, err)
		}
	}
	c.Logger = d.log.Named("vhost")
	c.OnDisconnect = func() { d.sw.Flush(name, 0) } // forget its MACs (the port may be gone: ignored)
	p, err := vhost.NewPortAttached(c, attach)
	if err != nil {
		return err
	}
	bp.vh = p
	d.setPort(name, bp)
	go func() {
		defer close(bp.done)
		if err := p.Run(d.ctx); err != nil {
			d.log.Error("vhost-user port stopped", "port", name, "error", err)
		}
	}()
	d.log.Info("port ready", "port", name, "kind", api.KindVhostUser, "socket", sock, "mode", c.Mode.String())
	return nil
}

// addUplink opens an AF_PACKET uplink and starts it.
func (d *daemon) addUplink(u uplinkConfig, attach attachFunc) error {
	name := u.Port.Name
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reserve(name, "", u.Interface); err != nil {
		return err
	}
	p, err := uplink.Open(u.Interface, uplink.Config{Logger: d.log.Named("uplink").With("port", name), TX: u.TX})
	if err != nil {
		return fmt.Errorf("uplink %q: %w", name, err)
	}
	h, err := attach(p)
	if err != nil {
		p.Close()
		return err
	}
	if err := p.Start(h); err != nil {
		p.Close()
		return fmt.Errorf("uplink %q: %w", name, err)
	}
	d.setPort(name, &backendPort{up: p, iface: u.Interface})
	d.log.Info("port ready", "port", name, "kind", api.KindUplink, "interface", u.Interface, "tx", u.TX.String())
	return nil
}

// Remove stops a port's backend (api.PortFactory: the switch port is
// already detached): a vhost-user port ends its session and removes its
// socket, an uplink closes its sockets and rings.
func (d *daemon) Remove(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bp := d.ports[name]
	if bp == nil {
		return nil
	}
	d.deletePort(name)
	return bp.stop()
}

// stop closes the backend and waits until it has released everything.
func (bp *backendPort) stop() error {
	if bp.guest != nil {
		_, err := bp.guest.Stop()
		return err
	}
	if bp.up != nil {
		return bp.up.Close()
	}
	err := bp.vh.Close()
	<-bp.done
	return err
}

// close stops every backend and detaches its switch port; nothing can be
// added afterwards.
func (d *daemon) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for name, bp := range d.ports {
		if bp.guest != nil { // nothing may send into a guest whose memory goes away
			d.sw.RemovePort(name)
		}
		if err := bp.stop(); err != nil {
			d.log.Warn("port did not close cleanly", "port", name, "error", err)
		}
		d.sw.RemovePort(name)
		d.deletePort(name)
	}
}
