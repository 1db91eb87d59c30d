package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hvnet/hvnet/api"
)

// sg is "hvnet ctl sg PORT [show | set FILE [--flush] | delete]": FILE is
// the API's security group JSON ("-": stdin); "show --json" prints the
// same form, so a group can be shown, edited and set back.
func (c *ctl) sg(args []string) error {
	const usage = "sg PORT [show | set FILE [--flush] | delete]"
	flush := false
	var pos []string
	for _, a := range args {
		switch a {
		case "--flush", "-flush", "--flush=true", "-flush=true":
			flush = true
		case "--flush=false", "-flush=false":
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 {
		return usageErr(usage)
	}
	port, sub := pos[0], "show"
	if len(pos) > 1 {
		sub = pos[1]
	}
	if flush && sub != "set" {
		return usageErr("--flush goes with set: " + usage)
	}
	path := "/v1/ports/" + url.PathEscape(port) + "/security-group"
	switch {
	case sub == "show" && len(pos) <= 2:
		var g api.SecurityGroup
		if ok, err := c.get(http.MethodGet, path, nil, &g); !ok {
			return err
		}
		return printSG(c.e.stdout, g)
	case sub == "set" && len(pos) == 3:
		b, err := c.readFile(pos[2])
		if err != nil {
			return err
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		var g api.SecurityGroup
		if err := d.Decode(&g); err != nil {
			return fmt.Errorf("sg set %s: %s: %w", port, pos[2], err)
		}
		if flush {
			path += "?flush=true"
		}
		if ok, err := c.get(http.MethodPut, path, g, &g); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "security group of %s: %d inbound rule(s), default %s; %d outbound rule(s), default %s",
			port, len(g.Inbound), g.InboundDefault, len(g.Outbound), g.OutboundDefault)
		if flush {
			fmt.Fprint(c.e.stdout, "; tracked connections flushed")
		}
		fmt.Fprintln(c.e.stdout)
		return nil
	case sub == "delete" && len(pos) == 2:
		if ok, err := c.get(http.MethodDelete, path, nil, nil); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "security group of %s removed, with its tracked connections\n", port)
		return nil
	}
	return usageErr(usage)
}

// printSG prints a group's rules, numbered per direction, and each
// direction's default.
func printSG(w io.Writer, g api.SecurityGroup) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIRECTION\t#\tPROTO\tPORTS\tREMOTE\tFAMILY")
	for _, d := range []struct {
		name, def string
		rules     []api.SGRule
	}{{api.SGInbound, g.InboundDefault, g.Inbound}, {api.SGOutbound, g.OutboundDefault, g.Outbound}} {
		for i, r := range d.rules {
			fam := "*"
			if r.Family != 0 {
				fam = "IPv" + strconv.Itoa(r.Family)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", d.name, i, orAny(r.Protocol), orAny(r.Ports), orAny(r.Remote), fam)
		}
		fmt.Fprintf(tw, "%s\tdefault\t%s\n", d.name, d.def)
	}
	return tw.Flush()
}

// conntrack is "hvnet ctl conntrack [PORT] [--flush] [--limit N]": every
// port's connection tracking, or one port's connections and counters, or
// a flush of them.
func (c *ctl) conntrack(args []string) error {
	fs := flag.NewFlagSet("conntrack", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	flush := fs.Bool("flush", false, "forget the port's tracked connections")
	limit := fs.Int("limit", 0, fmt.Sprintf("list at most this many connections (default %d, at most %d)", api.DefaultConntrackList, api.MaxConntrackList))
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(pos) > 1:
		return usageErr("conntrack [PORT] [--flush] [--limit N]")
	case len(pos) == 0 && *flush:
		return usageErr("conntrack --flush needs a PORT")
	case *limit < 0 || *limit > api.MaxConntrackList:
		return usageErr("--limit %d: want 1..%d", *limit, api.MaxConntrackList)
	case len(pos) == 0:
		var s api.ConntrackSummary
		if ok, err := c.get(http.MethodGet, "/v1/conntrack", nil, &s); !ok {
			return err
		}
		return printConntrackSummary(c.e.stdout, s)
	}
	path := "/v1/ports/" + url.PathEscape(pos[0]) + "/conntrack"
	if *flush {
		var f api.Flushed
		if ok, err := c.get(http.MethodDelete, path, nil, &f); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "%d tracked connection(s) of %s flushed\n", f.Flushed, pos[0])
		return nil
	}
	if *limit > 0 {
		path += "?limit=" + strconv.Itoa(*limit)
	}
	var pc api.PortConntrack
	if ok, err := c.get(http.MethodGet, path, nil, &pc); !ok {
		return err
	}
	return printPortConntrack(c.e.stdout, pc)
}

// counterCells are a port's conntrack counters as table cells, in the
// order of conntrackCounterHead.
func counterCells(c api.ConntrackCounters) string {
	return fmt.Sprintf("%d\t%d\t%d\t%d\t%d\t%d\t%d", c.Entries, c.New, c.Invalid, c.PortFull, c.TableFull, c.Expired, c.Related)
}

const conntrackCounterHead = "ENTRIES\tNEW\tINVALID\tPORT FULL\tTABLE FULL\tEXPIRED\tRELATED"

func printConntrackSummary(w io.Writer, s api.ConntrackSummary) error {
	if len(s.Ports) == 0 {
		fmt.Fprintf(w, "(no port has a security group: nothing is tracked; limits %d per port, %d in all)\n", s.MaxEntriesPerPort, s.MaxEntries)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\t"+conntrackCounterHead)
	for _, p := range s.Ports {
		fmt.Fprintf(tw, "%s\t%s\n", p.Port, counterCells(p.Counters))
	}
	fmt.Fprintf(tw, "total\t%s\n", counterCells(s.Counters))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d of %d connections tracked in all; at most %d per port\n", s.Counters.Entries, s.MaxEntries, s.MaxEntriesPerPort)
	return nil
}

// ctEndpoint is an address with its port (TCP, UDP): 10.0.0.1:22,
// [2001:db8::1]:22.
func ctEndpoint(addr string, port *int) string {
	if port == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(*port))
}

func printPortConntrack(w io.Writer, pc api.PortConntrack) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tLOCAL\tREMOTE\tORIGIN\tSTATE\tEXPIRES\tPKTS OUT\tPKTS IN")
	for _, e := range pc.Entries {
		proto := e.Protocol
		if e.ICMPID != nil {
			proto += fmt.Sprintf(" id %d", *e.ICMPID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", proto, ctEndpoint(e.Local, e.LocalPort), ctEndpoint(e.Remote, e.RemotePort),
			e.Origin, e.State, time.Duration(e.ExpiresIn)*time.Second, e.Packets.Outbound, e.Packets.Inbound)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if pc.LeftOut > 0 {
		fmt.Fprintf(w, "(%d more not shown: --limit, at most %d)\n", pc.LeftOut, api.MaxConntrackList)
	}
	ct := pc.Counters
	fmt.Fprintf(w, "port %s: %d of %d connections tracked; %d opened, %d invalid frames, %d refused as the port's table was full, "+
		"%d as the switch's was, %d expired, %d flushed, %d related ICMP errors, %d fragments refused\n",
		pc.Port, ct.Entries, pc.MaxEntries, ct.New, ct.Invalid, ct.PortFull, ct.TableFull, ct.Expired, ct.Flushed, ct.Related, ct.FragDropped)
	return nil
}

// sgString sums up a port's security group for ctl port.
func sgString(s *api.SecurityGroupSummary) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%d inbound rule(s) (default %s), %d outbound (default %s), %d connection(s) tracked",
		s.InboundRules, s.InboundDefault, s.OutboundRules, s.OutboundDefault, s.ConntrackEntries)
}
