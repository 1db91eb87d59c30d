package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/hvnet/hvnet/api"
)

// acl is "hvnet ctl acl PORT [show | set FILE]": FILE is the API's ACL
// JSON ("-": stdin); "show --json" prints the same form, so an ACL can be
// shown, edited and set back.
func (c *ctl) acl(args []string) error {
	if len(args) == 0 {
		return usageErr("acl PORT [show | set FILE]")
	}
	port, sub := args[0], "show"
	if len(args) > 1 {
		sub = args[1]
	}
	path := "/v1/ports/" + url.PathEscape(port) + "/acl"
	switch {
	case sub == "show" && len(args) <= 2:
		var a api.ACL
		if ok, err := c.get(http.MethodGet, path, nil, &a); !ok {
			return err
		}
		return printACL(c.e.stdout, port, a)
	case sub == "set" && len(args) == 3:
		b, err := c.readFile(args[2])
		if err != nil {
			return err
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		var a api.ACL
		if err := d.Decode(&a); err != nil {
			return fmt.Errorf("acl set %s: %s: %w", port, args[2], err)
		}
		if ok, err := c.get(http.MethodPut, path, a, &a); !ok {
			return err
		}
		fmt.Fprintf(c.e.stdout, "acl of %s: %d rule(s), default %s", port, len(a.Rules), a.Default)
		if a.EgressDefault != "" {
			fmt.Fprintf(c.e.stdout, ", egress default %s", a.EgressDefault)
		}
		fmt.Fprintln(c.e.stdout)
		return nil
	}
	return usageErr("acl PORT [show | set FILE]")
}

func (c *ctl) readFile(name string) ([]byte, error) {
	if name == "-" {
		if c.e.stdin == nil {
			return nil, usageErr("no stdin")
		}
		return io.ReadAll(io.LimitReader(c.e.stdin, 4<<20))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func printACL(w io.Writer, port string, a api.ACL) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tACTION\tDIR\tETHERTYPE\tSRC MAC\tDST MAC\tSRC IP\tDST IP\tPROTO\tSRC PORTS\tDST PORTS\tHITS")
	n := map[string]int{} // rules are numbered per direction, as the switch counts them
	for _, r := range a.Rules {
		dir := r.Direction
		if dir == "" {
			dir = api.ACLIngress
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", n[dir], r.Action, dir, orAny(r.EtherType), orAny(r.SrcMAC),
			orAny(r.DstMAC), orAny(r.SrcIP), orAny(r.DstIP), orAny(r.Protocol), orAny(r.SrcPorts), orAny(r.DstPorts), r.Hits)
		n[dir]++
	}
	def := a.Default
	if def == "" {
		def = "allow"
	}
	fmt.Fprintf(tw, "default\t%s\t%s\t\t\t\t\t\t\t\t\t%d\n", def, api.ACLIngress, a.DefaultHits)
	if a.EgressDefault != "" {
		fmt.Fprintf(tw, "default\t%s\t%s\t\t\t\t\t\t\t\t\t%d\n", a.EgressDefault, api.ACLEgress, a.EgressDefaultHits)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(a.Rules) == 0 && def == "allow" && a.EgressDefault == "" {
		fmt.Fprintf(w, "(port %s has no ACL: everything is allowed)\n", port)
	}
	return nil
}

// trace is "hvnet ctl trace --in PORT --src MAC --dst MAC ...".
func (c *ctl) trace(args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	var q api.TraceRequest
	fs.StringVar(&q.InPort, "in", "", "ingress port (required)")
	fs.StringVar(&q.SrcMAC, "src", "", "source MAC (required)")
	fs.StringVar(&q.DstMAC, "dst", "", "destination MAC (required; ff:ff:ff:ff:ff:ff for broadcast)")
	fs.IntVar(&q.VLAN, "vlan", 0, "tag the frame with this VID (0: untagged)")
	fs.IntVar(&q.PCP, "pcp", 0, "802.1p priority of the tag")
	fs.BoolVar(&q.PriorityTag, "priority-tag", false, "tag with VID 0")
	fs.StringVar(&q.TPID, "tpid", "", "TPID of the tag: 0x8100 (default) or 0x88a8")
	fs.StringVar(&q.EtherType, "ethertype", "", "ipv4, ipv6, arp or a number such as 0x800 (default ipv4)")
	fs.StringVar(&q.SrcIP, "src-ip", "", "source IP address")
	fs.StringVar(&q.DstIP, "dst-ip", "", "destination IP address")
	fs.StringVar(&q.Protocol, "proto", "", "tcp, udp, icmp, icmpv6 or a number")
	fs.IntVar(&q.SrcPort, "sport", 0, "TCP/UDP source port")
	fs.IntVar(&q.DstPort, "dport", 0, "TCP/UDP destination port")
	fs.StringVar(&q.TCPFlags, "tcp-flags", "", "TCP flags joined by commas: fin, syn, rst, psh, ack, urg (default syn)")
	fs.IntVar(&q.Size, "size", 0, "frame size in bytes (0: minimum)")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	if q.InPort == "" || q.SrcMAC == "" || q.DstMAC == "" {
		return usageErr("trace needs --in PORT --src MAC --dst MAC")
	}
	var r api.TraceResult
	if ok, err := c.get(http.MethodPost, "/v1/trace", q, &r); !ok {
		return err
	}
	return printTrace(c.e.stdout, q, r)
}

func printTrace(w io.Writer, q api.TraceRequest, r api.TraceResult) error {
	head := fmt.Sprintf("frame %s -> %s", q.SrcMAC, q.DstMAC)
	if q.VLAN != 0 {
		head += fmt.Sprintf(" vlan %d", q.VLAN)
	}
	if q.SrcIP != "" {
		head += fmt.Sprintf(", %s -> %s", q.SrcIP, q.DstIP)
	}
	if q.Protocol != "" {
		head += " " + q.Protocol
		if q.DstPort != 0 || q.SrcPort != 0 {
			head += fmt.Sprintf(" %d -> %d", q.SrcPort, q.DstPort)
		}
	}
	fmt.Fprintf(w, "%s, in on port %s\n", head, r.InPort)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, s := range r.Steps {
		fmt.Fprintf(tw, "%2d. %s\t%s\t%s\n", i+1, s.Stage, s.Verdict, s.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case r.Drop != "":
		fmt.Fprintf(w, "result: dropped (%s)\n", r.Drop)
	case len(r.Outputs) == 0:
		fmt.Fprintln(w, "result: not forwarded (no output port)")
	default:
		var outs []string
		for _, o := range r.Outputs {
			s := fmt.Sprintf("%s (untagged, VLAN %d)", o.Port, o.VLAN)
			if o.Tagged {
				s = fmt.Sprintf("%s (tagged %s VID %d PCP %d)", o.Port, o.TPID, o.VLAN, o.PCP)
			}
			outs = append(outs, s)
		}
		how := "forwarded to"
		if r.Flooded {
			how = "flooded to"
		}
		fmt.Fprintf(w, "result: %s %s\n", how, strings.Join(outs, ", "))
	}
	for _, d := range r.EgressDenied {
		if d.Rule != "" {
			fmt.Fprintf(w, "denied on egress: port %s (egress rule %s)\n", d.Port, d.Rule)
			continue
		}
		fmt.Fprintf(w, "denied on egress: port %s (its security group: %s)\n", d.Port, d.Reason)
	}
	return nil
}
