package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/units"
)

// defaultSocket is where the daemon serves its API unless told otherwise.
const defaultSocket = "/run/hvnet.sock"

const ctlUsage = `usage: hvnet ctl [--socket PATH] [--json] [--wait D] COMMAND
  ports                               list ports with counters
  port NAME                           one port's configuration and counters, and its backend's
                                      (device: what a frontend or guest did wrong, an uplink's losses)
  set NAME KEY=VALUE...               change a port live, in --port's keys: vlan=N | trunk=10:20,
                                      native, vlan-mode (access|trunk|dot1q-tunnel), pcp, mtu, rate
                                      (egress) and police (ingress) in bits/s (100M, 1.5Gbit; 0 =
                                      unlimited), rate-burst and police-burst (bytes: 64k), pps,
                                      police-pps, storm-bcast-pps, storm-mcast-pps, storm-unknown-pps,
                                      mac-limit (-1: none), allowed-macs=MAC (repeat; empty: none),
                                      port-security (on|off); bandwidth allocation at shaped egresses:
                                      reservation and limit in bits/s (0: none), shares (1..10000),
                                      pcp-class=C:C:C:C:C:C:C:C (empty: default), dscp-class=DSCP[-DSCP]:CLASS
                                      (repeat; empty: none)
  ` + ctlAddHelp + `
  del NAME                            remove a port (a lab guest is stopped)
  config                              the running configuration as a topology file (hvnet up FILE)
  top [--interval 1s] [--count N]     live per-port packets and bits per second in and out, drops per second
  queues NAME                         the queues of a port's shaped egress: each sender's with its
                                      allocation, and the strict classes'; depth, sent, drops, rate
  fdb [--port P] [--vlan V] [--mac M] dump the filtering database
  fdb flush [--port P] [--vlan V]     remove learned entries
  fdb add PORT VLAN MAC               add a static entry
  fdb del VLAN MAC                    remove a static entry
  mirror start PORT FILE [--direction ingress|egress|both] [--overwrite]
                                      FILE: a name in the daemon's capture directory
  mirror stop PORT
  mirror list
  capture PORT [--direction D] [--count N]   pcap to stdout: hvnet ctl capture a | tcpdump -r -
  acl PORT [show]                     a port's ACL (ingress and egress rules) with hit counters
                                      (--json: the form set reads)
  acl PORT set FILE                   replace it live from a JSON file ("-": stdin), e.g.
                                      {"default":"deny","rules":[{"action":"allow","protocol":"tcp","dst_ports":"22"},
                                       {"action":"deny","direction":"egress","protocol":"udp","dst_ports":"53"}]}
  sg PORT [show]                      a port's security group: stateful rules for new connections inbound
                                      (toward its guest) and outbound (opened by it) (--json: the form set reads)
  sg PORT set FILE [--flush]          give it one or replace its rules live from a JSON file ("-": stdin);
                                      tracked connections stay unless --flush, e.g.
                                      {"inbound":[{"protocol":"tcp","ports":"22","remote":"10.0.0.0/8"}],
                                       "inbound_default":"deny","outbound_default":"allow"}
  sg PORT delete                      remove it and its tracked connections
  conntrack [PORT] [--limit N]        connection tracking: per port, or one port's connections and counters
  conntrack PORT --flush              forget a port's tracked connections
  ` + ctlFlowsHelp + `
  trace --in PORT --src MAC --dst MAC [--vlan N] [--pcp N] [--ethertype 0x800] [--src-ip A --dst-ip B]
        [--proto tcp|udp|N] [--sport N] [--dport N] [--size N]
                                      what the switch would do with such a frame, step by step
  ` + ctlEVPNHelp + `
  metrics                             Prometheus text exposition`

// cmdCtl is "hvnet ctl": a client of the daemon's control API.
func cmdCtl(e *env, args []string) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	socket := fs.String("socket", envOr("HVNET_SOCKET", defaultSocket), "the daemon's API socket")
	asJSON := fs.Bool("json", false, "print the API's JSON answers")
	wait := fs.Duration("wait", 0, "wait up to this long for the daemon to answer (a script that just started it)")
	fs.Usage = func() { fmt.Fprintln(e.stderr, ctlUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	// ctl's own flags may follow the command too: hvnet ctl ports --json.
	rest, help, err := hoistCtlFlags(fs, fs.Args()[1:])
	if help {
		fs.SetOutput(e.stdout)
		fmt.Fprintln(e.stdout, ctlUsage)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		return fail(e, fmt.Errorf("%w: ctl: %v", errUsage, err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &ctl{e: e, c: api.NewClient(*socket), json: *asJSON, ctx: ctx}
	err = c.waitDaemon(*wait)
	if err == nil {
		err = c.run(fs.Arg(0), rest)
	}
	if errors.Is(err, api.ErrNotRunning) {
		err = fmt.Errorf("daemon not running at %s (start it with hvnet switch ...)", *socket)
	}
	if err != nil && *asJSON {
		return jsonFail(e, err)
	}
	if err != nil {
		return fail(e, fmt.Errorf("ctl: %w", err))
	}
	return 0
}

// jsonFail reports a ctl error with --json: a JSON object on stdout (the
// API's status and field when it answered), and the exit status.
func jsonFail(e *env, err error) int {
	out := struct {
		Error  string `json:"error"`
		Status int    `json:"status,omitempty"`
		Field  string `json:"field,omitempty"`
	}{Error: err.Error()}
	var ae *api.Error
	if errors.As(err, &ae) {
		out.Error, out.Status, out.Field = ae.Message, ae.Status, ae.Field
	}
	b, _ := json.Marshal(out)
	fmt.Fprintf(e.stdout, "%s\n", b)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// hoistCtlFlags takes ctl's own flags (--json, --socket, -h) out of a
// command's arguments and sets them in fs; the rest are the command's.
func hoistCtlFlags(fs *flag.FlagSet, args []string) (rest []string, help bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			rest = append(rest, a)
			continue
		}
		switch name {
		case "h", "help":
			return nil, true, nil
		case "json":
			if !hasVal {
				val = "true"
			}
			err = fs.Set("json", val)
		case "socket", "wait":
			if !hasVal {
				if i+1 == len(args) {
					return nil, false, fmt.Errorf("flag needs an argument: %s", a)
				}
				i++
				val = args[i]
			}
			err = fs.Set(name, val)
		default:
			rest = append(rest, a) // the command's own flag
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: %v", a, err)
		}
	}
	return rest, false, nil
}

// waitDaemon waits up to d for the daemon to answer on its socket.
func (c *ctl) waitDaemon(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, d)
	defer cancel()
	for {
		_, err := c.c.Ports(ctx)
		if !errors.Is(err, api.ErrNotRunning) {
			return nil // it answers (or fails otherwise: the command says how)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type ctl struct {
	e    *env
	c    *api.Client
	json bool
	ctx  context.Context
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s (see hvnet ctl -h)", errUsage, fmt.Sprintf(format, args...))
}

func (c *ctl) run(cmd string, args []string) error {
	switch cmd {
	case "ports":
		if len(args) != 0 {
			return usageErr("ports takes no arguments")
		}
		return c.ports()
	case "port":
		if len(args) != 1 {
			return usageErr("port NAME")
		}
		return c.port(args[0])
	case "set":
		if len(args) < 2 {
			return usageErr("set NAME KEY=VALUE...")
		}
		return c.set(args[0], args[1:])
	case "add":
		return c.add(args)
	case "del":
		return c.del(args)
	case "fdb":
		return c.fdb(args)
	case "mirror":
		return c.mirror(args)
	case "capture":
		return c.capture(args)
	case "acl":
		return c.acl(args)
	case "sg":
		return c.sg(args)
	case "conntrack":
		return c.conntrack(args)
	case "trace":
		return c.trace(args)
	case "flows":
		return c.flows(args)
	case "flow-export":
		return c.flowExport(args)
	case "config":
		return c.config(args)
	case "top":
		return c.top(args)
	case "queues":
		if len(args) != 1 {
			return usageErr("queues NAME")
		}
		return c.queues(args[0])
	case "evpn":
		return c.evpn(args)
	case "vteps":
		return c.vteps(args)
	case "metrics":
		text, err := c.c.Metrics(c.ctx)
		if err == nil {
			_, err = io.WriteString(c.e.stdout, text)
		}
		return err
	}
	return usageErr("unknown command %q", cmd)
}

// get fetches path; with --json it prints the answer as is and returns
// false, otherwise it decodes it into out.
func (c *ctl) get(method, path string, in, out any) (bool, error) {
	b, err := c.c.Raw(c.ctx, method, path, in)
	if err != nil {
		return false, err
	}
	if c.json {
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") != nil {
			buf.Reset()
			buf.Write(b)
		}
		if buf.Len() > 0 && buf.Bytes()[buf.Len()-1] != '\n' {
			buf.WriteByte('\n')
		}
		_, err := c.e.stdout.Write(buf.Bytes())
		return false, err
	}
	if out == nil || len(b) == 0 {
		return true, nil
	}
	return true, json.Unmarshal(b, out)
}

func vlansOf(pc api.PortConfig) string {
	switch pc.Mode {
	case "trunk":
		var s []string
		for _, v := range pc.AllowedVLANs {
			s = append(s, strconv.Itoa(v))
		}
		out := strings.Join(s, ",")
		if pc.NativeVLAN != 0 {
			out += fmt.Sprintf(" native %d", pc.NativeVLAN)
		}
		return out
	}
	return strconv.Itoa(pc.PVID)
}

func totalDrops(c api.Counters) uint64 {
	var n uint64
	for _, v := range c.Drops {
		n += v
	}
	return n
}

func (c *ctl) ports() error {
	var ps []api.Port
	if ok, err := c.get(http.MethodGet, "/v1/ports", nil, &ps); !ok {
		return err
	}
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	guests := false
	for _, p := range ps {
		guests = guests || p.Guest != nil
	}
	head := "NAME\tVLAN MODE\tVLANS\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tDROPS\tMACS"
	if guests {
		head += "\tGUEST"
	}
	fmt.Fprintln(tw, head)
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d", p.Name, p.Config.Mode, vlansOf(p.Config),
			p.Counters.RxPackets, p.Counters.RxBytes, p.Counters.TxPackets, p.Counters.TxBytes, totalDrops(p.Counters), p.Counters.LearnedMACs)
		if guests {
			fmt.Fprintf(tw, "\t%s", guestString(p.Guest))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func rateString(r api.RateLimit) string {
	var s []string
	if r.RateBPS != 0 {
		s = append(s, units.FormatBitRate(int64(r.RateBPS)))
	}
	if r.RatePPS != 0 {
		s = append(s, units.FormatPacketRate(r.RatePPS))
	}
	if len(s) == 0 {
		return "unlimited"
	}
	return strings.Join(s, ", ")
}

// allocationString is a port's claim on the shaped egresses it sends
// through: reservation 10 Mbit/s, shares 100, limit none.
func allocationString(pc api.PortConfig) string {
	r := func(b api.BitRate) string {
		if b == 0 {
			return "none"
		}
		return units.FormatBitRate(int64(b))
	}
	shares := pc.Shares
	if shares == 0 {
		shares = 100 // an answer from a daemon before shares were shown
	}
	return fmt.Sprintf("reservation %s, shares %d, limit %s", r(pc.ReservationBPS), shares, r(pc.LimitBPS))
}

// classesString is a port's class map as the command line sets it, ""
// when it has none.
func classesString(pc api.PortConfig) string {
	var s []string
	if len(pc.PCPClass) > 0 {
		cs := make([]string, len(pc.PCPClass))
		for i, c := range pc.PCPClass {
			cs[i] = strconv.Itoa(c)
		}
		s = append(s, "pcp-class="+strings.Join(cs, ":"))
	}
	for _, d := range pc.DSCPClass {
		s = append(s, "dscp-class="+d)
	}
	return strings.Join(s, " ")
}

// queues is "hvnet ctl queues NAME": the queues of a shaped egress.
func (c *ctl) queues(name string) error {
	var qs []api.Queue
	if ok, err := c.get(http.MethodGet, "/v1/ports/"+url.PathEscape(name)+"/queues", nil, &qs); !ok {
		return err
	}
	if len(qs) == 0 {
		fmt.Fprintf(c.e.stdout, "port %s's egress is not shaped: no queues (rate= gives it a capacity)\n", name)
		return nil
	}
	rate := func(b api.BitRate) string {
		if b == 0 {
			return "-"
		}
		return units.FormatBitRate(int64(b))
	}
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SENDER\tCLASS\tQUEUED\tQUEUED BYTES\tSENT PKTS\tSENT BYTES\tDROPS\tRATE\tRESERVATION\tSHARES\tLIMIT")
	for _, q := range qs {
		sender, shares := q.Port, strconv.Itoa(q.Shares)
		if sender == "" {
			sender, shares = "(class)", "-" // a strict class's queue: served before any allocation
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", sender, q.Class, q.QueuedFrames, q.QueuedBytes,
			q.SentPackets, q.SentBytes, q.Drops, units.FormatBitRate(int64(q.RateBPS)), rate(q.ReservationBPS), shares, rate(q.LimitBPS))
	}
	return tw.Flush()
}

// portSecurityString: on, off, or "-" for a port without a MAC of its own.
func portSecurityString(p api.Port) string {
	switch {
	case p.MAC == "":
		return "- (no MAC of its own)"
	case p.Config.PortSecurity != nil && !*p.Config.PortSecurity:
		return "off"
	}
	return "on"
}

func macLimitString(n int) string {
	if n < 0 {
		return "none"
	}
	return strconv.Itoa(n)
}

func (c *ctl) port(name string) error {
	var p api.Port
	if ok, err := c.get(http.MethodGet, "/v1/ports/"+url.PathEscape(name), nil, &p); !ok {
		return err
	}
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	pc, ct := p.Config, p.Counters
	rows := [][2]string{
		{"name", p.Name}, {"kind", kindString(p)}, {"vlan mode", pc.Mode}, {"vlans", vlansOf(pc)}, {"mtu", strconv.Itoa(pc.MTU)},
		{"ingress", rateString(pc.Ingress)}, {"egress", rateString(pc.Egress)}, {"allocation", allocationString(pc)},
		{"mac", p.MAC}, {"port security", portSecurityString(p)},
		{"mac limit", macLimitString(pc.MACLimit)}, {"allowed macs", strings.Join(pc.AllowedMACs, ",")},
		{"mirror", fmt.Sprintf("ingress=%v egress=%v", pc.MirrorIngress, pc.MirrorEgress)},
		{"rx", fmt.Sprintf("%d packets, %d bytes", ct.RxPackets, ct.RxBytes)},
		{"tx", fmt.Sprintf("%d packets, %d bytes", ct.TxPackets, ct.TxBytes)},
		{"learned macs", strconv.FormatInt(ct.LearnedMACs, 10)}, {"shaper queued", strconv.Itoa(ct.ShaperQueued)},
	}
	if cls := classesString(pc); cls != "" {
		rows = append(rows, [2]string{"classes", cls})
	}
	if p.Tunnel != nil {
		rows = append(rows, tunnelRows(p.Tunnel)...)
	}
	if p.Bond != nil {
		rows = append(rows, bondRows(p.Bond)...)
	}
	if p.Guest != nil {
		rows = append(rows, [2]string{"guest", guestString(p.Guest)})
	}
	rows = append(rows, [2]string{"security group", sgString(p.SecurityGroup)})
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	reasons := make([]string, 0, len(ct.Drops))
	for r := range ct.Drops {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(tw, "drops %s:\t%d\n", r, ct.Drops[r])
	}
	if dc := p.Device; dc != nil { // only for a backend that keeps counters
		fmt.Fprintf(tw, "device:\t%s\n", deviceString(dc))
		if v := dc.VhostCounters; v != nil && len(v.Features) > 0 {
			fmt.Fprintf(tw, "negotiated:\t%d queue pairs, %s\n", v.ActivePairs, strings.Join(v.Features, " "))
		}
		for _, n := range dc.Counts() {
			fmt.Fprintf(tw, "device %s:\t%d\n", n.Field, n.Value)
		}
	}
	return tw.Flush()
}

// kindString is a port's kind and its settings: vhost-user
// mode=server queues=2 socket=/run/hvnet/vm1.sock.
func kindString(p api.Port) string {
	if p.Kind == "" {
		return "-"
	}
	s := []string{p.Kind}
	keys := make([]string, 0, len(p.Options))
	for k := range p.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range p.Options[k] {
			s = append(s, k+"="+v)
		}
	}
	return strings.Join(s, " ")
}

// deviceString sums up a port's backend: its kind, and a vhost-user
// port's sessions (and goroutines its earlier frontends left stuck, if
// any) or an uplink's attachments.
func deviceString(dc *api.DeviceCounters) string {
	s := dc.Kind
	if v := dc.VhostCounters; v != nil {
		state := "no frontend"
		if v.Connected {
			state = "frontend attached"
		}
		s += fmt.Sprintf(", %d sessions, %s", v.Sessions, state)
		if v.Stuck > 0 {
			s += fmt.Sprintf(", %d stuck goroutines of earlier frontends", v.Stuck)
		}
	}
	if u := dc.UplinkCounters; u != nil {
		s += fmt.Sprintf(", %d attaches", u.Attaches)
	}
	if x := dc.VXLANCounters; x != nil {
		s += fmt.Sprintf(", %d packets in, %d out (%d flooded copies), %d remote MACs", x.RxPackets, x.TxPackets, x.FloodCopies, x.RemoteMACs)
		if x.TxGSOPackets+x.RxGROPackets > 0 {
			s += fmt.Sprintf(", %d UDP GSO super-packets out, %d GRO datagrams in", x.TxGSOPackets, x.RxGROPackets)
		}
		if x.LocalIPs+x.RemoteIPs > 0 || x.ARPSuppressed+x.NDSuppressed > 0 {
			s += fmt.Sprintf(", %d local IPs, %d remote IPs, %d ARP and %d ND requests answered locally", x.LocalIPs, x.RemoteIPs,
				x.ARPSuppressed, x.NDSuppressed)
		}
	}
	return s
}

// tunnelRows are a tunnel's state for ctl port: its VNIs and flood
// lists, its BGP neighbours, the MACs behind remote VTEPs.
func tunnelRows(tn *api.TunnelInfo) [][2]string {
	rows := [][2]string{{"tunnel", "local VTEP " + tn.Local}}
	for _, v := range tn.VNIs {
		vteps := strings.Join(v.VTEPs, " ")
		if vteps == "" {
			vteps = "(none)"
		}
		rows = append(rows, [2]string{fmt.Sprintf("vni %d", v.VNI), fmt.Sprintf("VLAN %d, floods to %s", v.VLAN, vteps)})
	}
	for _, n := range tn.Neighbors {
		up := ""
		if n.Uptime != "" {
			up = " for " + n.Uptime
		}
		rows = append(rows, [2]string{"bgp neighbor " + n.Address, fmt.Sprintf("AS %d, %s%s, %d routes received, %d accepted",
			n.ASN, n.State, up, n.RoutesReceived, n.RoutesAccepted)})
	}
	for _, m := range tn.RemoteMACs {
		how := "evpn"
		if m.Learned {
			how = "learned"
		}
		ips := ""
		if len(m.IPs) > 0 {
			ips = ", IPs " + strings.Join(m.IPs, " ")
		}
		rows = append(rows, [2]string{fmt.Sprintf("remote mac %s vni %d", m.MAC, m.VNI), fmt.Sprintf("behind %s (%s)%s", m.VTEP, how, ips)})
	}
	return rows
}

// bondRows are a bond's state for ctl port: its mode in effect and each
// member's link, traffic and LACP actor/partner information.
func bondRows(b *api.BondInfo) [][2]string {
	mode := b.Mode
	if strings.HasPrefix(mode, "lacp") && b.Aggregate {
		mode += ", aggregated"
	}
	rows := [][2]string{{"bond", mode}}
	for _, m := range b.Members {
		st := "carrier down"
		switch {
		case m.Carrying:
			st = "carrying"
		case m.Usable:
			st = "standby"
		case m.Carrier:
			st = "carrier up (delayed)"
		}
		rows = append(rows, [2]string{"member " + m.Name, fmt.Sprintf("%s, %d frames in, %d out, %d dropped in", st, m.RxFrames, m.TxFrames, m.RxDrops)})
		if l := m.LACP; l != nil {
			sel := "not selected"
			switch {
			case l.Selected:
				sel = "selected"
			case l.FlapHeld:
				sel = "held out (partner flapping)"
			}
			rows = append(rows,
				[2]string{"member " + m.Name + " actor", fmt.Sprintf("key %d port %d, %s", l.ActorKey, l.ActorPort, l.ActorState)},
				[2]string{"member " + m.Name + " partner", fmt.Sprintf("%s key %d port %d, %s; %s, %s, %d LACPDUs in, %d out",
					l.PartnerSystem, l.PartnerKey, l.PartnerPort, l.PartnerState, l.ReceiveState, sel, l.RxPDUs, l.TxPDUs)})
		}
	}
	return rows
}

func (c *ctl) capture(args []string) error {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	dir := fs.String("direction", "both", "ingress, egress or both")
	count := fs.Int("count", 0, "stop after this many frames (0: until interrupted)")
	port, err := parseWithPositional(fs, args, 1)
	if err != nil {
		return err
	}
	if f, ok := c.e.stdout.(*os.File); ok && isTTY(f) {
		return usageErr("capture writes pcap: redirect it (hvnet ctl capture %s > x.pcap, or | tcpdump -r -)", port[0])
	}
	rc, err := c.c.Capture(c.ctx, port[0], *dir, *count)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Copy as it arrives: the stream is flushed per batch.
	if _, err := io.Copy(flushWriter{c.e.stdout}, rc); err != nil && c.ctx.Err() == nil {
		return fmt.Errorf("capture %s: %w", port[0], err)
	}
	return nil
}

// flushWriter writes through to stdout with no buffering of its own.
type flushWriter struct{ w io.Writer }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

func isTTY(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// parseWithPositional parses flags placed before or after n positional
// arguments.
func parseWithPositional(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != n {
		return nil, usageErr("%s wants %d argument(s), got %d", fs.Name(), n, len(pos))
	}
	return pos, nil
}

// guestString describes a lab guest's state: booting, running, exited 0,
// exited -1 (why).
func guestString(g *api.GuestInfo) string {
	switch {
	case g == nil:
		return "-"
	case g.State != api.GuestExited || g.Status == nil:
		return g.State
	case g.Error != "":
		return fmt.Sprintf("%s %d (%s)", g.State, *g.Status, g.Error)
	}
	return fmt.Sprintf("%s %d", g.State, *g.Status)
}
