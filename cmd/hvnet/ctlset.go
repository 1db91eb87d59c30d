package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

// set builds a PortPatch from KEY=VALUE arguments, in the keys every
// port takes on the command line (daemon.CommonOptions) and a few more.
// Rate keys start from the port's current limits so "police-pps=10" keeps
// the bit rate.
func (c *ctl) set(name string, kvs []string) error {
	cur, err := c.c.Port(c.ctx, name)
	if err != nil {
		return err
	}
	var p api.PortPatch
	in, eg, storm := cur.Config.Ingress, cur.Config.Egress, cur.Config.Storm
	var setIn, setEg, setStorm bool
	kind, _ := daemon.Lookup(cur.Kind)
	kindSet := map[string][]string{} // the port kind's own keys given, all their values
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usageErr("set: %q is not KEY=VALUE", kv)
		}
		if kind != nil && !daemon.IsCommon(k) && slices.ContainsFunc(kind.Options(), func(o daemon.Option) bool { return o.Key == k }) {
			kindSet[k] = append(kindSet[k], v) // the port kind's own (a bond's mode=, if=)
			continue
		}
		if n, ok := setRenamed[k]; ok {
			return usageErr("set: %s is now called %s", k, n)
		}
		if n, ok := daemon.Renamed(k); ok {
			return usageErr("set: %s is now called %s", k, n)
		}
		num := func() (int, error) {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, usageErr("set: %s=%q: want a number", k, v)
			}
			return n, nil
		}
		var err error
		switch k {
		case "vlan":
			var vid uint16
			if vid, err = vswitch.ParseVID(v); err == nil {
				n := int(vid)
				if p.Mode == nil {
					access := "access"
					p.Mode = &access
				}
				p.PVID = &n
			}
		case "trunk":
			var vids []uint16
			if vids, err = vswitch.ParseVIDs(v); err == nil {
				vs := make([]int, len(vids))
				for i, vid := range vids {
					vs[i] = int(vid)
				}
				trunk := "trunk"
				p.Mode, p.AllowedVLANs = &trunk, &vs
			}
		case "vlan-mode":
			switch v {
			case "access", "trunk", "dot1q-tunnel":
				p.Mode = &v
			default:
				err = fmt.Errorf("%q is not access, trunk or dot1q-tunnel", v)
			}
		case "native", "pcp", "mtu", "mac-limit":
			var n int
			if n, err = num(); err == nil {
				switch k {
				case "native":
					p.NativeVLAN = &n
				case "pcp":
					p.DefaultPCP = &n
				case "mtu":
					p.MTU = &n
				case "mac-limit":
					p.MACLimit = &n
				}
			}
		case "allowed-macs":
			// Repeated: each adds one; "allowed-macs=" alone clears them.
			if p.AllowedMACs == nil {
				p.AllowedMACs = &[]string{}
			}
			if v != "" {
				*p.AllowedMACs = append(*p.AllowedMACs, v)
			}
		case "port-security":
			var on bool
			if on, err = onOff(k, v); err == nil {
				p.PortSecurity = &on
			}
		case "rate", "police":
			var n int64
			if k == "rate" && v == "link" {
				err = errors.New("link: the interface's speed is read when a port is made (--uplink, a topology file, ctl add); set a rate in bits/s")
				break
			}
			if n, err = units.ParseBitRate(v); err == nil {
				if k == "rate" {
					eg.RateBPS, setEg = api.BitRate(n), true
				} else {
					in.RateBPS, setIn = api.BitRate(n), true
				}
			}
		case "pps", "police-pps", "storm-bcast-pps", "storm-mcast-pps", "storm-unknown-pps":
			var n int64
			if n, err = units.ParsePacketRate(v); err == nil {
				switch k {
				case "pps":
					eg.RatePPS, setEg = n, true
				case "police-pps":
					in.RatePPS, setIn = n, true
				case "storm-bcast-pps":
					storm.Broadcast.RatePPS, setStorm = n, true
				case "storm-mcast-pps":
					storm.Multicast.RatePPS, setStorm = n, true
				default:
					storm.UnknownUnicast.RatePPS, setStorm = n, true
				}
			}
		case "reservation", "limit":
			var n int64
			if n, err = units.ParseBitRate(v); err == nil {
				r := api.BitRate(n)
				if k == "reservation" {
					p.ReservationBPS = &r
				} else {
					p.LimitBPS = &r
				}
			}
		case "shares":
			var n int
			if n, err = num(); err == nil {
				if n < 1 || n > vswitch.MaxShares {
					err = fmt.Errorf("%d is not a number of shares (1..%d; default %d)", n, vswitch.MaxShares, vswitch.DefaultShares)
				}
				p.Shares = &n
			}
		case "pcp-class":
			// Empty: the default map.
			cs := []int{}
			if v != "" {
				var pcs []uint8
				if pcs, err = api.ParsePCPClasses(v); err == nil {
					for _, c := range pcs {
						cs = append(cs, int(c))
					}
				}
			}
			p.PCPClass = &cs
		case "dscp-class":
			// Repeated: each maps one range; "dscp-class=" alone clears them.
			if p.DSCPClass == nil {
				p.DSCPClass = &[]string{}
			}
			if v != "" {
				if _, err = api.ParseDSCPClass(v); err == nil {
					*p.DSCPClass = append(*p.DSCPClass, v)
				}
			}
		case "rate-burst", "police-burst":
			var n int64
			if n, err = units.ParseBytes(v); err == nil {
				if k == "rate-burst" {
					eg.BurstBytes, setEg = n, true
				} else {
					in.BurstBytes, setIn = n, true
				}
			}
		default:
			return usageErr("set: unknown key %q (want %s, or a %s port's own keys)", k, ctlSetKeys, cur.Kind)
		}
		if err != nil {
			if errors.Is(err, errUsage) {
				return err
			}
			return usageErr("set: %s: %v", k, err)
		}
	}
	if setIn {
		p.Ingress = &in
	}
	if setEg {
		p.Egress = &eg
	}
	if setStorm {
		p.Storm = &storm
	}
	if len(kindSet) > 0 {
		// The kind's settings go whole: the port's, with the keys given
		// replaced (a repeated key's values all at once).
		p.Options = map[string]api.OptionValue{}
		for k, v := range cur.Options {
			p.Options[k] = v
		}
		for k, v := range kindSet {
			p.Options[k] = v
		}
	}
	var out api.Port
	if ok, err := c.get(http.MethodPatch, "/v1/ports/"+url.PathEscape(name), p, &out); !ok {
		return err
	}
	fmt.Fprintf(c.e.stdout, "port %s updated\n", name)
	return nil
}

// ctlSetKeys are the keys "hvnet ctl set" takes: those every port takes
// on the command line (daemon.CommonOptions), its name aside.
var ctlSetKeys = func() string {
	var keys []string
	for _, o := range daemon.CommonOptions() {
		if o.Key != "name" {
			keys = append(keys, o.Key)
		}
	}
	return strings.Join(keys, ", ")
}()

// setRenamed are ctl set's keys' names before there was one vocabulary
// (daemon.Renamed has the rest).
var setRenamed = map[string]string{
	"mode": "vlan-mode (mode is a vhost-user port's server|client)", "egress": "rate", "ingress": "police",
	"egress-pps": "pps", "ingress-pps": "police-pps", "egress-burst": "rate-burst", "ingress-burst": "police-burst",
}

func (c *ctl) fdb(args []string) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("fdb", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	port := fs.String("port", "", "only this port")
	vlan := fs.Int("vlan", 0, "only this VLAN")
	mac := fs.String("mac", "", "only this MAC (dump only)")
	switch sub {
	case "":
		if _, err := parseWithPositional(fs, args, 0); err != nil {
			return err
		}
		var es []api.FDBEntry
		if ok, err := c.get(http.MethodGet, "/v1/fdb"+api.FDBQuery(*port, *vlan, *mac), nil, &es); !ok {
			return err
		}
		return c.fdbTable(es)
	case "flush":
		if _, err := parseWithPositional(fs, args, 0); err != nil {
			return err
		}
		if *mac != "" {
			return usageErr("fdb flush: filters by --port and --vlan only")
		}
		var f api.Flushed
		if ok, err := c.get(http.MethodDelete, "/v1/fdb"+api.FDBQuery(*port, *vlan, ""), nil, &f); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "flushed %d entries\n", f.Flushed)
		return nil
	case "add":
		if len(args) != 3 {
			return usageErr("fdb add PORT VLAN MAC")
		}
		v, err := strconv.Atoi(args[1])
		if err != nil {
			return usageErr("fdb add: VLAN %q is not a number", args[1])
		}
		_, err = c.get(http.MethodPost, "/v1/fdb", api.StaticEntry{Port: args[0], VLAN: v, MAC: args[2]}, nil)
		return err
	case "del":
		if len(args) != 2 {
			return usageErr("fdb del VLAN MAC")
		}
		v, err := strconv.Atoi(args[0])
		if err != nil {
			return usageErr("fdb del: VLAN %q is not a number", args[0])
		}
		_, err = c.get(http.MethodDelete, fmt.Sprintf("/v1/fdb/%d/%s", v, url.PathEscape(args[1])), nil, nil)
		return err
	}
	return usageErr("fdb: unknown subcommand %q", sub)
}

func (c *ctl) mirror(args []string) error {
	if len(args) == 0 {
		return usageErr("mirror start|stop|list")
	}
	fs := flag.NewFlagSet("mirror "+args[0], flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	dir := fs.String("direction", "both", "ingress, egress or both")
	overwrite := fs.Bool("overwrite", false, "mirror start: replace an existing file")
	switch args[0] {
	case "start":
		pos, err := parseWithPositional(fs, args[1:], 2)
		if err != nil {
			return err
		}
		var info api.MirrorInfo
		if ok, err := c.get(http.MethodPost, "/v1/mirrors", api.MirrorSpec{Port: pos[0], Direction: *dir, File: pos[1], Overwrite: *overwrite}, &info); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "mirroring %s (%s) to %s\n", info.Port, info.Direction, info.File)
		return nil
	case "stop":
		pos, err := parseWithPositional(fs, args[1:], 1)
		if err != nil {
			return err
		}
		var info api.MirrorInfo
		if ok, err := c.get(http.MethodDelete, "/v1/mirrors/"+url.PathEscape(pos[0]), nil, &info); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "stopped mirroring %s: %d frames in %s, %d dropped\n", info.Port, info.Frames, info.File, info.Dropped)
		return nil
	case "list":
		var ms []api.MirrorInfo
		if ok, err := c.get(http.MethodGet, "/v1/mirrors", nil, &ms); !ok {
			return err
		}
		tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PORT\tDIRECTION\tFILE\tFRAMES\tDROPPED")
		for _, m := range ms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", m.Port, m.Direction, m.File, m.Frames, m.Dropped)
		}
		return tw.Flush()
	}
	return usageErr("mirror: unknown subcommand %q", args[0])
}

// onOff parses a port-security= value.
func onOff(k, v string) (bool, error) {
	ps, err := vswitch.ParsePortSecurity(v)
	if err != nil {
		return false, usageErr("%s=%q: want on or off", k, v)
	}
	return ps == vswitch.PortSecurityOn, nil
}
