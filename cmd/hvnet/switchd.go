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

	vswitch "hvnet/switch"
	"hvnet/vhost"
)

// portFlags collects repeated --port flags.
type portFlags []string

func (p *portFlags) String() string     { return strings.Join(*p, " ") }
func (p *portFlags) Set(v string) error { *p = append(*p, v); return nil }

const switchPortHelp = `port: name=NAME,socket=PATH[,mode=server|client][,vlan=VID | trunk=VID:VID...[,native=VID]]
	[,mtu=N][,queues=N][,mac=MAC][,rate=BYTES/s][,pps=N][,police=BYTES/s]`

// cmdSwitch runs the switch daemon: vhost-user ports on the built-in
// switch until SIGTERM or SIGINT, which closes every port and removes the
// sockets it created.
func cmdSwitch(e *env, args []string) int {
	fs := flag.NewFlagSet("switch", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var ports portFlags
	fs.Var(&ports, "port", "a vhost-user port (repeatable): "+switchPortHelp)
	config := fs.String("config", "", "config file: one \"port KEY=VALUE ...\" line per port, # comments")
	aging := fs.Duration("aging", 300*time.Second, "FDB aging time")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("%w: switch: unexpected argument %q", errUsage, fs.Arg(0)))
	}
	var cfgs []vhost.PortConfig
	for i, spec := range ports {
		c, err := parsePortSpec(strings.Split(spec, ","))
		if err != nil {
			return fail(e, fmt.Errorf("%w: switch: --port #%d: %v", errUsage, i+1, err))
		}
		cfgs = append(cfgs, c)
	}
	if *config != "" {
		cs, err := loadSwitchConfig(*config)
		if err != nil {
			return fail(e, fmt.Errorf("%w: switch: %v", errUsage, err))
		}
		cfgs = append(cfgs, cs...)
	}
	if len(cfgs) == 0 {
		return fail(e, fmt.Errorf("%w: switch: no ports (use --port or --config)", errUsage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runSwitchd(ctx, e, cfgs, *aging); err != nil {
		return fail(e, err)
	}
	return 0
}

// runSwitchd serves the ports until ctx ends.
func runSwitchd(ctx context.Context, e *env, cfgs []vhost.PortConfig, aging time.Duration) error {
	seen := map[string]bool{}
	for _, c := range cfgs {
		if seen[c.Port.Name] {
			return fmt.Errorf("%w: switch: port %q defined twice", errUsage, c.Port.Name)
		}
		seen[c.Port.Name] = true
	}
	sw := vswitch.New(vswitch.Config{Logger: e.log.Named("switch"), AgingTime: aging})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ports []*vhost.Port
	closeAll := func() {
		for _, p := range ports {
			p.Close()
			p.Remove()
		}
	}
	for _, c := range cfgs {
		if c.Mode == vhost.Server {
			if err := os.MkdirAll(filepath.Dir(c.Socket), 0o755); err != nil {
				closeAll()
				return fmt.Errorf("switch: port %q: %w", c.Port.Name, err)
			}
		}
		c.Logger = e.log.Named("vhost")
		p, err := vhost.NewPort(sw, c)
		if err != nil {
			closeAll()
			return fmt.Errorf("switch: %w", err)
		}
		ports = append(ports, p)
		e.log.Info("port ready", "port", c.Port.Name, "socket", c.Socket, "mode", c.Mode.String(),
			"vlan_mode", c.Port.Mode.String(), "pvid", c.Port.PVID)
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(ports))
	for _, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				errc <- fmt.Errorf("port %q: %w", p.Name(), err)
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sw.Run(ctx, 100*time.Millisecond)
	}()
	e.log.Info("switch running", "ports", len(ports))
	<-ctx.Done()
	e.log.Info("shutting down")
	for _, p := range ports {
		p.Close()
	}
	wg.Wait()
	for _, c := range sw.Counters() {
		e.log.Info("port counters", "port", c.Name, "rx_packets", c.RxPackets, "tx_packets", c.TxPackets)
	}
	for _, p := range ports {
		p.Remove()
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// loadSwitchConfig reads a config file: "port KEY=VALUE ..." lines (fields
// separated by spaces or commas), blank lines and # comments. Errors name
// the file, the line and the field.
func loadSwitchConfig(path string) ([]vhost.PortConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []vhost.PortConfig
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
		if fields[0] != "port" {
			return nil, fmt.Errorf("%s:%d: unknown directive %q (want \"port\")", path, n, fields[0])
		}
		c, err := parsePortSpec(fields[1:])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// parsePortSpec parses KEY=VALUE fields into a port configuration.
func parsePortSpec(fields []string) (vhost.PortConfig, error) {
	c := vhost.PortConfig{Port: vswitch.PortConfig{PVID: 1}}
	var trunk, native bool
	for _, kv := range fields {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("field %q: want KEY=VALUE", kv)
		}
		bad := func(why string) error { return fmt.Errorf("field %q: %q %s", k, v, why) }
		switch k {
		case "name":
			if v == "" {
				return c, bad("is empty")
			}
			c.Port.Name = v
		case "socket":
			if v == "" {
				return c, bad("is empty")
			}
			c.Socket = v
		case "mode":
			switch v {
			case "server":
				c.Mode = vhost.Server
			case "client":
				c.Mode = vhost.Client
			default:
				return c, bad("is not server or client")
			}
		case "vlan", "pvid":
			vid, err := parseVID(v)
			if err != nil {
				return c, bad(err.Error())
			}
			c.Port.PVID = vid
		case "trunk":
			trunk = true
			for _, s := range strings.Split(v, ":") {
				vid, err := parseVID(s)
				if err != nil {
					return c, bad(err.Error())
				}
				c.Port.AllowedVLANs = append(c.Port.AllowedVLANs, vid)
			}
		case "native":
			vid, err := parseVID(v)
			if err != nil {
				return c, bad(err.Error())
			}
			native, c.Port.NativeVLAN = true, vid
		case "mtu":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n < 68 {
				return c, bad("is not an MTU (68..65535)")
			}
			c.Port.MTU, c.MTU = int(n), uint16(n)
		case "queues":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 16 {
				return c, bad("is not a number of queue pairs (1..16)")
			}
			c.QueuePairs = n
		case "mac":
			hw, err := net.ParseMAC(v)
			if err != nil || len(hw) != 6 {
				return c, bad("is not a MAC address")
			}
			copy(c.MAC[:], hw)
		case "rate", "pps", "police":
			n, err := parseRate(v)
			if err != nil {
				return c, bad(err.Error())
			}
			switch k {
			case "rate":
				c.Port.Egress.Bytes.Rate = n
			case "pps":
				c.Port.Egress.Packets.Rate = n
			default:
				c.Port.Ingress.Bytes.Rate = n
			}
		default:
			return c, fmt.Errorf("field %q: unknown (want name, socket, mode, vlan, trunk, native, mtu, queues, mac, rate, pps, police)", k)
		}
	}
	switch {
	case c.Port.Name == "":
		return c, errors.New("field \"name\": missing")
	case c.Socket == "":
		return c, errors.New("field \"socket\": missing")
	case native && !trunk:
		return c, errors.New("field \"native\": only for trunk ports")
	}
	if trunk {
		c.Port.Mode = vswitch.ModeTrunk
	}
	return c, nil
}

func parseVID(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < 1 || n > 4094 {
		return 0, errors.New("is not a VLAN ID (1..4094)")
	}
	return uint16(n), nil
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
