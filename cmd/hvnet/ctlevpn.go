package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hvnet/hvnet/api"
)

// ctlEVPNHelp is the usage of the fabric's commands.
const ctlEVPNHelp = `evpn routes [--port P] [--type 2|3] [--vni N] [--mac M]
                                      BGP EVPN routes of the vxlan ports' speakers, local and received
  evpn neighbors [--port P]           their BGP sessions: state, uptime, routes received and accepted
  vteps [--port P]                    remote VTEPs of the vxlan ports with their VNIs and MACs`

// fdbTable prints FDB entries; a REMOTE VTEP column when some entry is
// on a tunnel port behind a known VTEP.
func (c *ctl) fdbTable(es []api.FDBEntry) error {
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	vteps := slices.ContainsFunc(es, func(fe api.FDBEntry) bool { return fe.VTEP != "" })
	head := "VLAN\tMAC\tPORT\tTYPE\tAGE"
	if vteps {
		head += "\tREMOTE VTEP"
	}
	fmt.Fprintln(tw, head)
	for _, fe := range es {
		kind, age := "learned", fe.Age.Round(time.Second).String()
		if fe.Static {
			kind, age = "static", "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s", fe.VLAN, fe.MAC, fe.Port, kind, age)
		if vteps {
			fmt.Fprintf(tw, "\t%s", dash(fe.VTEP))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// evpn is "hvnet ctl evpn routes|neighbors".
func (c *ctl) evpn(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageErr("evpn routes|neighbors")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("evpn "+sub, flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	port := fs.String("port", "", "only this vxlan port's speaker")
	switch sub {
	case "routes":
		typ := fs.Int("type", 0, "only routes of this type: 2 (MAC/IP) or 3 (inclusive multicast)")
		vni := fs.Uint("vni", 0, "only routes of this VNI")
		mac := fs.String("mac", "", "only type-2 routes of this MAC")
		if _, err := parseWithPositional(fs, args, 0); err != nil {
			return err
		}
		if *typ != 0 && *typ != 2 && *typ != 3 {
			return usageErr("evpn routes: --type is 2 or 3")
		}
		var rs []api.EVPNRoute
		if ok, err := c.get(http.MethodGet, "/v1/evpn/routes"+api.EVPNRoutesQuery(*port, *typ, uint32(*vni), *mac), nil, &rs); !ok {
			return err
		}
		return c.routesTable(rs)
	case "neighbors", "neighbours":
		if _, err := parseWithPositional(fs, args, 0); err != nil {
			return err
		}
		path := "/v1/evpn/neighbors"
		if *port != "" {
			path += "?" + url.Values{"port": {*port}}.Encode()
		}
		var ns []api.EVPNNeighbor
		if ok, err := c.get(http.MethodGet, path, nil, &ns); !ok {
			return err
		}
		tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PORT\tNEIGHBOR\tASN\tSTATE\tUPTIME\tRECEIVED\tACCEPTED\tFLAPS\tLIMIT RESETS\tBAD MSGS")
		for _, n := range ns {
			state := n.State
			if n.RouteLimitHeld {
				state += " (held: route limit)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", n.Port, n.Address, n.ASN, state, dash(n.Uptime),
				n.RoutesReceived, n.RoutesAccepted, n.Flaps, n.RouteLimitResets, n.BadMessages)
		}
		return tw.Flush()
	}
	return usageErr("evpn: unknown command %q (routes, neighbors)", sub)
}

// routesTable prints EVPN routes, one a line.
func (c *ctl) routesTable(rs []api.EVPNRoute) error {
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tTYPE\tVNI\tMAC\tIP\tVTEP\tSEQ\tRD\tRT\tSOURCE\tSTATUS")
	for _, r := range rs {
		status := "advertised"
		switch {
		case r.Source == "local":
		case r.Accepted:
			status = "best, accepted"
		case r.Best:
			status = "best, ignored: " + r.Reason
		default:
			status = r.Reason
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Port, r.Type, r.VNI, dash(r.MAC), dash(r.IP), dash(r.VTEP), r.Seq,
			r.RD, dash(strings.Join(r.RouteTargets, ",")), r.Source, status)
	}
	return tw.Flush()
}

// remoteVTEP is one line of "ctl vteps": a remote VTEP a tunnel port
// floods to or knows MACs behind.
type remoteVTEP struct {
	Port  string   `json:"port"`
	VTEP  string   `json:"vtep"`
	VNIs  []uint32 `json:"vnis"`        // the VNIs whose flood list has it
	MACs  int      `json:"remote_macs"` // MACs behind it, every VNI
	MACIn []uint32 `json:"mac_vnis"`    // the VNIs of those MACs
}

// vteps is "hvnet ctl vteps": the remote VTEPs of each tunnel port, from
// the ports' tunnel state.
func (c *ctl) vteps(args []string) error {
	fs := flag.NewFlagSet("vteps", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	port := fs.String("port", "", "only this vxlan port")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	var ps []api.Port
	if *port != "" {
		p, err := c.c.Port(c.ctx, *port)
		if err != nil {
			return err
		}
		if p.Tunnel == nil {
			return fmt.Errorf("port %q is not a tunnel", *port)
		}
		ps = []api.Port{p}
	} else {
		var err error
		if ps, err = c.c.Ports(c.ctx); err != nil {
			return err
		}
	}
	out := []remoteVTEP{}
	for _, p := range ps {
		if p.Tunnel == nil {
			continue
		}
		by := map[string]*remoteVTEP{}
		get := func(a string) *remoteVTEP {
			if by[a] == nil {
				by[a] = &remoteVTEP{Port: p.Name, VTEP: a, VNIs: []uint32{}, MACIn: []uint32{}}
			}
			return by[a]
		}
		for _, v := range p.Tunnel.VNIs {
			for _, a := range v.VTEPs {
				r := get(a)
				r.VNIs = append(r.VNIs, v.VNI)
			}
		}
		for _, m := range p.Tunnel.RemoteMACs {
			r := get(m.VTEP)
			r.MACs++
			if !slices.Contains(r.MACIn, m.VNI) {
				r.MACIn = append(r.MACIn, m.VNI)
			}
		}
		addrs := make([]netip.Addr, 0, len(by))
		for a := range by {
			if ip, err := netip.ParseAddr(a); err == nil {
				addrs = append(addrs, ip)
			}
		}
		slices.SortFunc(addrs, func(x, y netip.Addr) int { return x.Compare(y) })
		for _, a := range addrs {
			r := by[a.String()]
			slices.Sort(r.VNIs)
			slices.Sort(r.MACIn)
			out = append(out, *r)
		}
	}
	if c.json {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.e.stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tVTEP\tVNIS\tMACS")
	for _, r := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Port, r.VTEP, dash(vniList(r.VNIs)), r.MACs)
	}
	return tw.Flush()
}

func vniList(vs []uint32) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(s, ",")
}
