package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	nsh "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/lines"
)

// The fabric demo (RunFabric): two hvnet hosts, each an `hvnet up` of
// its own in a network namespace of its own, joined over an underlay
// bridge by a VXLAN tunnel port with BGP EVPN between them (iBGP, ASN
// 65000). VLAN 10 is VNI 100 and VLAN 20 is VNI 200 on both. Each host
// boots two lab guests:
//
//	host  guest  VLAN  address
//	h1    a1     10    10.0.10.1/24
//	h1    b1     20    10.0.20.1/24, and 10.0.10.11/24 (VLAN 10's subnet)
//	h2    a2     10    10.0.10.2/24
//	h2    b2     20    10.0.20.2/24, and 10.0.10.12/24 (VLAN 10's subnet)
//
// Every guest pings every other at an address in its own subnet: a1 and
// a2 reach each other across the fabric (VNI 100), b1 and b2 (VNI 200);
// a VLAN 10 guest never reaches a VLAN 20 guest, on its own host or the
// other, although the b guests have addresses in VLAN 10's subnet: the
// isolation is the switch's and the tunnel's, not routing's.

// fabricHost is one host of the fabric demo.
type fabricHost struct {
	name   string
	under  netip.Prefix // its underlay address
	guests []guestSpec
	mac    [2]string // its guests' MACs
}

func fabricTopology() []fabricHost {
	return []fabricHost{
		{name: "h1", under: netip.MustParsePrefix("10.8.0.1/24"), mac: [2]string{"52:54:00:0f:01:01", "52:54:00:0f:01:02"},
			guests: []guestSpec{
				{name: "a1", vlan: 10, addr: netip.MustParsePrefix("10.0.10.1/24")},
				{name: "b1", vlan: 20, addr: netip.MustParsePrefix("10.0.20.1/24"), alias: netip.MustParsePrefix("10.0.10.11/24")},
			}},
		{name: "h2", under: netip.MustParsePrefix("10.8.0.2/24"), mac: [2]string{"52:54:00:0f:02:01", "52:54:00:0f:02:02"},
			guests: []guestSpec{
				{name: "a2", vlan: 10, addr: netip.MustParsePrefix("10.0.10.2/24")},
				{name: "b2", vlan: 20, addr: netip.MustParsePrefix("10.0.20.2/24"), alias: netip.MustParsePrefix("10.0.10.12/24")},
			}},
	}
}

// fabricMTU is the guests' MTU: the underlay's 1500 less VXLAN's 50.
const fabricMTU = 1450

// fabricLinger is how long a guest stays up after its own pings, so that
// a peer that booted later still finds it.
const fabricLinger = 40

// FabricConfig is a run of the fabric demo.
type FabricConfig struct {
	HVNet          string    // the hvnet program each host runs (`hvnet up`)
	Kernel, Initrd string    // the guests' images
	Dir            string    // topology files, API sockets (default: a temporary directory)
	Console        io.Writer // the hosts' output, prefixed "h1| " (default: discarded)
	Log            hclog.Logger
	Timeout        time.Duration // the whole run (default 6 minutes)
}

// FabricHostResult is what one host of the fabric demo did.
type FabricHostResult struct {
	Name   string
	Status int    // hvnet up's exit status (-1: killed)
	Tunnel string // `hvnet ctl port vx` while the guests ran (empty: not read)
	Output string // its whole output
}

// FabricReport is the outcome of a fabric demo run.
type FabricReport struct {
	Hosts    []FabricHostResult
	Reach    []Reach
	Elapsed  time.Duration
	Failures []string // failed expectations; empty when all held
}

// fabricScript is guest g's script: the reachability pings of the
// demo's guests, then a linger.
func fabricScript(g guestSpec, all []guestSpec) string {
	var b strings.Builder
	writeReach(&b, g, fabricTargets(g, all))
	fmt.Fprintf(&b, "echo DEMO-DONE\nsleep %d\n", fabricLinger)
	return b.String()
}

// fabricTargets are the demo's targets without the physical host.
func fabricTargets(g guestSpec, all []guestSpec) []target {
	var ts []target
	for _, t := range targets(g, all) {
		if t.name != "phys" {
			ts = append(ts, t)
		}
	}
	return ts
}

// topologyFile is host h's `hvnet up` file.
func (h fabricHost) topologyFile(sock string, peer netip.Addr, all []guestSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, `switch:
  api: %s
ports:
  - name: vx
    kind: vxlan
    trunk: [10, 20]
    options:
      local: %s
      vni: ["100:10", "200:20"]
      asn: 65000
      neighbor: %s
      hold_time: 9s
      connect_retry: 1s
guests:
`, sock, h.under.Addr(), peer)
	for i, g := range h.guests {
		fmt.Fprintf(&b, "  - name: %s\n    mac: %s\n    ip: %s\n    vlan: %d\n    guest_mtu: %d\n    cmd: |\n", g.name, h.mac[i], g.addr, g.vlan, fabricMTU)
		for _, l := range strings.Split(strings.TrimRight(fabricScript(g, all), "\n"), "\n") {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	return b.String()
}

// hostNS is a host's network namespace, held by a file descriptor.
type hostNS struct {
	fd nsh.NsHandle
	h  *netlink.Handle
}

func newHostNS() (*hostNS, error) {
	var fd nsh.NsHandle
	err := lockedThread(func() (err error) {
		fd, err = nsh.New()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("new network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink in a host namespace: %w", err)
	}
	return &hostNS{fd: fd, h: h}, nil
}

func (n *hostNS) close() {
	n.h.Close()
	n.fd.Close()
}

func (n *hostNS) up(name string) error {
	l, err := n.h.LinkByName(name)
	if err == nil {
		err = n.h.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// start starts a program in the namespace (see phys.start).
func (n *hostNS) start(cmd *exec.Cmd) error {
	return lockedThread(func() error {
		if err := nsh.Set(n.fd); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return cmd.Start()
	})
}

// RunFabric runs the fabric demo in the caller's network namespace (the
// underlay: it creates the bridge "fabric0" and the veths "ul-h1" and
// "ul-h2" there, so callers run it in a private one). An error means it
// could not run; failed expectations are in FabricReport.Failures.
func RunFabric(ctx context.Context, cfg FabricConfig) (*FabricReport, error) {
	if cfg.HVNet == "" || cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, errors.New("fabric demo: no hvnet program, guest kernel or initrd")
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 6 * time.Minute
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "hvnet-fabric-")
		if err != nil {
			return nil, fmt.Errorf("fabric demo: %w", err)
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	hosts := fabricTopology()
	var all []guestSpec
	for _, h := range hosts {
		all = append(all, h.guests...)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "fabric0"}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("fabric demo: the underlay bridge: %w", err)
	}
	defer netlink.LinkDel(br)
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("fabric demo: the underlay bridge up: %w", err)
	}
	var nss []*hostNS
	defer func() {
		for _, n := range nss {
			n.close()
		}
	}()
	for _, h := range hosts {
		n, err := newHostNS()
		if err != nil {
			return nil, fmt.Errorf("fabric demo: host %s: %w", h.name, err)
		}
		nss = append(nss, n)
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul-" + h.name, MasterIndex: br.Index}, PeerName: "u0",
			PeerNamespace: netlink.NsFd(n.fd)}
		if err := netlink.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("fabric demo: host %s: veth into the underlay: %w", h.name, err)
		}
		if err := netlink.LinkSetUp(v); err != nil {
			return nil, fmt.Errorf("fabric demo: host %s: %w", h.name, err)
		}
		u0, err := n.h.LinkByName("u0")
		var a *netlink.Addr
		if err == nil {
			a, err = netlink.ParseAddr(h.under.String())
		}
		if err == nil {
			err = n.h.AddrAdd(u0, a)
		}
		if err != nil {
			return nil, fmt.Errorf("fabric demo: host %s: underlay address: %w", h.name, err)
		}
		for _, l := range []string{"lo", "u0"} { // lo: the BGP speaker's relay talks over it
			if err := n.up(l); err != nil {
				return nil, fmt.Errorf("fabric demo: host %s: %w", h.name, err)
			}
		}
	}

	start := time.Now()
	type proc struct {
		cmd  *exec.Cmd
		out  *lines.Buffer
		sock string
		done chan struct{}
	}
	procs := make([]*proc, len(hosts))
	for i, h := range hosts {
		sock := filepath.Join(cfg.Dir, h.name+".sock")
		file := filepath.Join(cfg.Dir, h.name+".yaml")
		peer := hosts[1-i].under.Addr()
		if err := os.WriteFile(file, []byte(h.topologyFile(sock, peer, all)), 0o644); err != nil {
			return nil, fmt.Errorf("fabric demo: %w", err)
		}
		p := &proc{out: &lines.Buffer{}, sock: sock, done: make(chan struct{})}
		con := cfg.Console
		prefix := h.name + "| "
		w := io.MultiWriter(p.out, &lines.Splitter{Line: func(l string) error {
			_, err := io.WriteString(con, prefix+l+"\n")
			return err
		}})
		p.cmd = exec.CommandContext(ctx, cfg.HVNet, "up", "--nested", "never", "--kernel", cfg.Kernel, "--initrd", cfg.Initrd, file)
		p.cmd.Stdout, p.cmd.Stderr = w, w
		p.cmd.WaitDelay = 10 * time.Second
		if err := nss[i].start(p.cmd); err != nil {
			for _, o := range procs[:i] {
				o.cmd.Process.Kill()
				<-o.done
			}
			return nil, fmt.Errorf("fabric demo: host %s: hvnet up: %w", h.name, err)
		}
		cfg.Log.Info("host started", "host", h.name, "underlay", h.under, "file", file)
		procs[i] = p
		go func() {
			p.cmd.Wait()
			close(p.done)
		}()
	}
	// Once every guest has done its pings (they linger for their peers),
	// read each host's tunnel: its BGP neighbour, flood list and the
	// other host's MACs from EVPN.
	rep := &FabricReport{}
	tunnels := make([]string, len(hosts))
	pinged := func() bool {
		n := 0
		for _, p := range procs {
			n += strings.Count(p.out.String(), "| DEMO-DONE")
		}
		return n >= len(all)
	}
	for !pinged() && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
		if anyDone(procs[0].done, procs[1].done) {
			break
		}
	}
	for i, p := range procs {
		out, err := exec.CommandContext(ctx, cfg.HVNet, "ctl", "--socket", p.sock, "port", "vx").CombinedOutput()
		if err != nil {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: hvnet ctl port vx: %v: %s", hosts[i].name, err, bytes.TrimSpace(out)))
		}
		tunnels[i] = string(out)
	}
	for i, p := range procs {
		<-p.done
		st := p.cmd.ProcessState.ExitCode()
		rep.Hosts = append(rep.Hosts, FabricHostResult{Name: hosts[i].name, Status: st, Tunnel: tunnels[i], Output: p.out.String()})
	}
	rep.Elapsed = time.Since(start)
	rep.judge(hosts, all, ctx.Err())
	return rep, nil
}

func anyDone(cs ...chan struct{}) bool {
	for _, c := range cs {
		select {
		case <-c:
			return true
		default:
		}
	}
	return false
}

// judge fills the reachability matrix from the hosts' output and lists
// the failed expectations.
func (r *FabricReport) judge(hosts []fabricHost, all []guestSpec, ctxErr error) {
	fail := func(f string, a ...any) { r.Failures = append(r.Failures, fmt.Sprintf(f, a...)) }
	if ctxErr != nil {
		fail("the demo ran out of time: %v", ctxErr)
	}
	console := map[string]string{}
	for i, h := range hosts {
		res := r.Hosts[i]
		if res.Status != 0 {
			fail("host %s: hvnet up ended with status %d", h.name, res.Status)
		}
		for _, g := range h.guests {
			var b strings.Builder
			for _, l := range strings.Split(res.Output, "\n") {
				if rest, ok := strings.CutPrefix(l, g.name+"| "); ok {
					b.WriteString(rest + "\n")
				}
			}
			console[g.name] = b.String()
		}
		for _, o := range hosts {
			if o.name == h.name {
				continue
			}
			if !strings.Contains(res.Tunnel, "bgp neighbor "+o.under.Addr().String()) || !strings.Contains(res.Tunnel, "established") {
				fail("host %s: no established BGP session with %s in its tunnel view", h.name, o.name)
			}
			for _, m := range o.mac {
				if !strings.Contains(res.Tunnel, m+" ") {
					fail("host %s: %s's guest MAC %s is not among its remote MACs", h.name, o.name, m)
				}
			}
		}
	}
	for _, g := range all {
		p := parseConsole(console[g.name])
		for _, t := range fabricTargets(g, all) {
			got, ok := p.reach[t.name]
			r.Reach = append(r.Reach, Reach{From: g.name, To: t.name, Expect: t.expect, Got: got, Tested: ok})
			switch {
			case !ok:
				fail("%s -> %s: not tested (no DEMO-REACH line)", g.name, t.name)
			case got != t.expect:
				fail("%s -> %s (%s): %s, expected %s", g.name, t.name, t.addr, word(got), word(t.expect))
			}
		}
	}
}

// Print writes the summary: the matrix and each host's tunnel.
func (r *FabricReport) Print(w io.Writer) {
	fmt.Fprintln(w, "reachability (rows ping columns; ok = reply, -- = none; expected in brackets, ! = mismatch):")
	fmt.Fprintln(w, "  a1, b1 on host h1; a2, b2 on host h2; a*: VLAN 10 = VNI 100; b*: VLAN 20 = VNI 200 (with an address in VLAN 10's subnet)")
	printMatrix(w, r.Reach)
	for _, h := range r.Hosts {
		fmt.Fprintf(w, "\nhost %s: hvnet ctl port vx (its tunnel lines)\n", h.Name)
		for _, l := range strings.Split(strings.TrimRight(h.Tunnel, "\n"), "\n") {
			t := strings.TrimSpace(l)
			for _, p := range []string{"tunnel:", "vni ", "bgp neighbor ", "remote mac ", "device:"} {
				if strings.HasPrefix(t, p) {
					fmt.Fprintln(w, "  "+l)
					break
				}
			}
		}
	}
}

// PrintResult writes the verdict: every failed expectation, or that all held.
func (r *FabricReport) PrintResult(w io.Writer) {
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "\nresult: every expectation held (%.1f s)\n", r.Elapsed.Seconds())
		return
	}
	fmt.Fprintf(w, "\nresult: %d expectation(s) failed:\n", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintln(w, "  FAIL "+f)
	}
}
