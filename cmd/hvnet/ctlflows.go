package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hvnet/hvnet/api"
)

const ctlFlowsHelp = `flows [--limit N] [--sort bytes|packets]
                                      the flow cache's biggest flows (flow export on): ports, VLAN,
                                      addresses, packets and bytes since each flow's last report
  flow-export                         flow export (IPFIX to UDP collectors): settings, counters, the
                                      ports' interface numbers
  flow-export set KEY=VALUE...        change it live, under the topology file's flow_export keys:
                                      enabled=on|off, collectors=H:P,H:P (empty: none), active_timeout,
                                      idle_timeout, template_refresh (60s, 10m), sampling (one in N),
                                      max_flows, template_refresh_packets, observation_domain`

// flows is "hvnet ctl flows [--limit N] [--sort bytes|packets]".
func (c *ctl) flows(args []string) error {
	fs := flag.NewFlagSet("flows", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	limit := fs.Int("limit", api.DefaultFlowList, fmt.Sprintf("list at most this many flows (at most %d)", api.MaxFlowList))
	sort := fs.String("sort", "bytes", "order: bytes or packets")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 0 {
		return usageErr("flows [--limit N] [--sort bytes|packets]")
	}
	if *limit < 1 || *limit > api.MaxFlowList {
		return usageErr("--limit %d: want 1..%d", *limit, api.MaxFlowList)
	}
	var fl api.Flows
	path := "/v1/flows?" + url.Values{"limit": {strconv.Itoa(*limit)}, "sort": {*sort}}.Encode()
	if ok, err := c.get(http.MethodGet, path, nil, &fl); !ok {
		return err
	}
	return printFlows(c.e.stdout, fl, time.Now())
}

// flowProto names a flow's protocol, or its EtherType when it is not IP.
func flowProto(f api.Flow) string {
	if f.SrcIP == "" {
		switch f.EtherType {
		case "0x0806":
			return "arp"
		case "0x0800", "0x86dd":
			return "ip?" // its header was truncated
		}
		return f.EtherType
	}
	switch f.Protocol {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(f.Protocol))
}

// flowEnd writes one end of a flow: address and port, or the MAC.
func flowEnd(f api.Flow, ip string, port uint16, mac string) string {
	if ip == "" {
		return mac
	}
	if f.Protocol == 6 || f.Protocol == 17 || f.Protocol == 132 {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
			return "[" + ip + "]:" + strconv.Itoa(int(port))
		}
		return ip + ":" + strconv.Itoa(int(port))
	}
	return ip
}

func printFlows(w io.Writer, fl api.Flows, now time.Time) error {
	samp := ""
	if fl.Sampling > 1 {
		samp = fmt.Sprintf(", counts of 1 frame in %d", fl.Sampling)
	}
	fmt.Fprintf(w, "%d flow(s) in the cache%s; the %d with the most %s:\n", fl.Total, samp, len(fl.Flows), fl.Sort)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IN\tOUT\tVLAN\tPROTO\tSOURCE\tDESTINATION\tPACKETS\tBYTES\tTCP\tAGE")
	for _, f := range fl.Flows {
		out := f.Out
		if out == "" {
			out = "(flood)"
		}
		extra := f.TCPFlags
		if f.ICMPType != nil {
			extra = fmt.Sprintf("type %d code %d", *f.ICMPType, *f.ICMPCode)
		}
		if extra == "" {
			extra = "-"
		}
		age := "-"
		if t, err := time.Parse(time.RFC3339Nano, f.Start); err == nil {
			age = now.Sub(t).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", f.In, out, f.VLAN, flowProto(f),
			flowEnd(f, f.SrcIP, f.SrcPort, f.SrcMAC), flowEnd(f, f.DstIP, f.DstPort, f.DstMAC), f.Packets, f.Bytes, extra, age)
	}
	return tw.Flush()
}

// flowExport is "hvnet ctl flow-export [set KEY=VALUE...]".
func (c *ctl) flowExport(args []string) error {
	if len(args) == 0 {
		var st api.FlowExportStatus
		if ok, err := c.get(http.MethodGet, "/v1/flow-export", nil, &st); !ok {
			return err
		}
		return printFlowExport(c.e.stdout, st)
	}
	if args[0] != "set" || len(args) < 2 {
		return usageErr("flow-export [set KEY=VALUE...]")
	}
	cur, err := c.c.FlowExport(c.ctx)
	if err != nil {
		return err
	}
	f := cur.FlowExport
	sawEnabled := false
	for _, kv := range args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ReplaceAll(k, "-", "_")
		if !ok {
			return usageErr("flow-export set: %q: want KEY=VALUE", kv)
		}
		num := func(dst *int) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return usageErr("flow-export set %s: %q is not a number", k, v)
			}
			*dst = n
			return nil
		}
		var err error
		switch k {
		case "enabled":
			b, perr := parseOnOff(v)
			if perr != nil {
				return usageErr("flow-export set enabled: %q: want on or off", v)
			}
			f.Enabled, sawEnabled = &b, true
		case "collectors":
			f.Collectors = nil
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					f.Collectors = append(f.Collectors, s)
				}
			}
		case "active_timeout":
			f.ActiveTimeout = v
		case "idle_timeout":
			f.IdleTimeout = v
		case "template_refresh":
			f.TemplateRefresh = v
		case "sampling":
			err = num(&f.Sampling)
		case "max_flows":
			err = num(&f.MaxFlows)
		case "max_flows_per_port":
			err = num(&f.MaxFlowsPerPort)
		case "template_refresh_packets":
			err = num(&f.TemplateRefreshPackets)
		case "observation_domain":
			n, perr := strconv.ParseUint(v, 10, 32)
			if perr != nil {
				return usageErr("flow-export set observation_domain: %q: want 0..4294967295", v)
			}
			f.ObservationDomain = uint32(n)
		default:
			return usageErr("flow-export set: unknown key %q", k)
		}
		if err != nil {
			return err
		}
	}
	if !sawEnabled && len(f.Collectors) > 0 { // giving collectors turns it on
		on := true
		f.Enabled = &on
	}
	var st api.FlowExportStatus
	if ok, err := c.get(http.MethodPut, "/v1/flow-export", f, &st); !ok {
		return err
	}
	return printFlowExport(c.e.stdout, st)
}

func parseOnOff(s string) (bool, error) {
	switch s {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q: want on or off", s)
}

func printFlowExport(w io.Writer, st api.FlowExportStatus) error {
	if st.Enabled == nil || !*st.Enabled {
		fmt.Fprintln(w, "flow export: off")
	} else {
		to := "no collector (the cache serves hvnet ctl flows)"
		if len(st.Collectors) > 0 {
			to = "to " + strings.Join(st.Collectors, ", ")
		}
		fmt.Fprintf(w, "flow export: on, IPFIX %s\n", to)
	}
	fmt.Fprintf(w, "  active_timeout %s, idle_timeout %s, sampling 1 in %d, max_flows %d (%d per port), template_refresh %s", st.ActiveTimeout, st.IdleTimeout,
		st.Sampling, st.MaxFlows, st.MaxFlowsPerPort, st.TemplateRefresh)
	if st.TemplateRefreshPackets > 0 {
		fmt.Fprintf(w, " or %d messages", st.TemplateRefreshPackets)
	}
	fmt.Fprintf(w, ", observation_domain %d\n", st.ObservationDomain)
	s := st.Stats
	fmt.Fprintf(w, "  flows %d, cache full %d (frames not counted), records %d, messages %d (%d with templates), send errors %d\n",
		s.FlowsActive, s.CacheFull, s.Records, s.Messages, s.TemplateMessages, s.SendErrors)
	if len(s.Collectors) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COLLECTOR\tMESSAGES\tSEND ERRORS\tLAST ERROR")
		for _, k := range s.Collectors {
			le := k.LastError
			if le == "" {
				le = "-"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", k.Address, k.Messages, k.SendErrors, le)
		}
		tw.Flush()
	}
	var ifs []string
	for _, i := range st.Interfaces {
		ifs = append(ifs, fmt.Sprintf("%d=%s", i.Index, i.Port))
	}
	fmt.Fprintf(w, "  interfaces (ingressInterface/egressInterface; 0: flooded): %s\n", strings.Join(ifs, " "))
	return nil
}
