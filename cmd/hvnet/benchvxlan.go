package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
)

// cmdBenchVxlan measures VXLAN encapsulation and decapsulation between two
// hosts: hvnet's switch (an AF_PACKET uplink and a vxlan port) against
// Linux's bridge and vxlan device, in the same namespaces with the same
// traffic, interleaved. Topology (all in a private network namespace):
//
//	endpoint A (ep0) ─veth─ host A (up0 | forwarder | u0 10.8.0.1) ─veth─ underlay bridge
//	endpoint B (ep0) ─veth─ host B (up0 | forwarder | u0 10.8.0.2) ─veth─ underlay bridge
//
// A generator in endpoint A sends frames to endpoint B's MAC (the uplink
// benchmark's generator: a TPACKET TX ring); what arrives is endpoint B's
// veth receive counter. The forwarder in each host namespace is, in turn,
// a Linux bridge with the endpoint veth and a vxlan device (VNI 100,
// nolearning, an all-zeros FDB entry to the other host) or an hvnet
// switch (the daemon's uplink and vxlan port kinds: VLAN 10 as VNI 100,
// a static flood list, learning on), each host its own process.
func cmdBenchVxlan(e *env, args []string) int {
	fs := flag.NewFlagSet("bench vxlan", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	seconds := fs.Float64("seconds", 3, "measurement time per run")
	sizes := fs.String("sizes", "64,1400", "frame sizes in bytes (without FCS), comma-separated")
	rounds := fs.Int("rounds", 3, "rounds: each measures the kernel and hvnet once per size, the order swapped every round")
	rate := fs.Float64("rate", 0, "the generator's rate in frames per second (0: as fast as it can)")
	flows := fs.Int("flows", 1, "inner flows (source MACs) the generator sends from in turn, 1..256: with more than one, consecutive frames are never of one flow (UDP GSO's worst case)")
	pathList := fs.String("paths", "kernel,hvnet,hvnet-nogso", "the forwarders, in each round's order (rotated every round): kernel, hvnet, hvnet-nogso (udp-gso=off)")
	profDir := fs.String("cpuprofile", "", "write a CPU profile of each hvnet host process per run into this directory")
	role := fs.String("role", "", "internal: gen, hello or host")
	iface := fs.String("iface", "", "internal: the generator's interface")
	dst := fs.String("dst", "", "internal: the generator's destination MAC")
	size := fs.Int("size", 64, "internal: the generator's frame size")
	dur := fs.Duration("duration", time.Second, "internal: the generator's run time")
	var ports stringList
	fs.Var(&ports, "port", "internal: a host's port (as hvnet switch --port)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	switch *role {
	case "gen":
		return benchGen(e, *iface, *dst, *size, *dur, *rate, *flows)
	case "hello":
		return benchHello(e, *iface)
	case "host":
		e.log.SetLevel(hclog.Warn) // a line per run, not the daemon's start and stop
		return benchHost(e, ports, *profDir)
	case "":
	default:
		return fail(e, fmt.Errorf("%w: bench vxlan: -role %q", errUsage, *role))
	}
	sz, err := parseSizes(*sizes)
	if err != nil {
		return fail(e, fmt.Errorf("%w: bench vxlan: %v", errUsage, err))
	}
	var paths []string
	for _, s := range strings.Split(*pathList, ",") {
		if !slices.Contains([]string{"kernel", "hvnet", "hvnet-nogso"}, s) || slices.Contains(paths, s) {
			return fail(e, fmt.Errorf("%w: bench vxlan: --paths %q: want kernel, hvnet or hvnet-nogso, each once", errUsage, *pathList))
		}
		paths = append(paths, s)
	}
	if *flows < 1 || *flows > 256 {
		return fail(e, fmt.Errorf("%w: bench vxlan: --flows %d: want 1..256", errUsage, *flows))
	}
	if *seconds <= 0 || *rounds < 1 {
		return fail(e, fmt.Errorf("%w: bench vxlan: want --seconds > 0 and --rounds >= 1", errUsage))
	}
	if os.Getenv(benchNetnsEnv) == "" {
		return reexecInNetns(e, append([]string{"bench", "vxlan"}, args...))
	}
	if *profDir != "" {
		if err := os.MkdirAll(*profDir, 0o755); err != nil {
			return fail(e, err)
		}
	}
	b := &vxlanBench{e: e, rate: *rate, flows: *flows, dur: time.Duration(*seconds * float64(time.Second)), prefix: fmt.Sprintf("hvx%d", os.Getpid()), profDir: *profDir}
	defer b.cleanup()
	if err := b.setup(); err != nil {
		return fail(e, fmt.Errorf("bench vxlan: %w", err))
	}
	offered := "as fast as it can"
	if b.rate > 0 {
		offered = fmt.Sprintf("%.0f frames/s", b.rate)
	}
	fmt.Fprintf(e.stdout, "VXLAN forwarding, endpoint A -> host A (encap) -> underlay bridge -> host B (decap) -> endpoint B; %v per run, %d rounds, generator %s, %d flows in turn\n",
		b.dur, *rounds, offered, b.flows)
	fmt.Fprintf(e.stdout, "%-5s %5s %-11s %10s %10s %8s  %s\n", "size", "round", "path", "sent Mpps", "dlvd Mpps", "loss", "load")
	res := map[int]map[string][]benchVxlanRun{}
	for r := range *rounds {
		for _, s := range sz {
			order := append(slices.Clone(paths[r%len(paths):]), paths[:r%len(paths)]...)
			if res[s] == nil {
				res[s] = map[string][]benchVxlanRun{}
			}
			for _, path := range order {
				run, err := b.measure(path, s, r+1)
				if err != nil {
					return fail(e, fmt.Errorf("bench vxlan: %s, %d B, round %d: %w", path, s, r+1, err))
				}
				res[s][path] = append(res[s][path], run)
				fmt.Fprintf(e.stdout, "%-5d %5d %-11s %10.3f %10.3f %7.2f%%  %s\n", s, r+1, path, run.sent/1e6, run.delivered/1e6,
					100*run.loss(), loadAvg())
				if run.note != "" {
					fmt.Fprintf(e.stdout, "      %s\n", run.note)
				}
			}
		}
	}
	// Ratios per round (the runs of a round are minutes apart at most),
	// then their median and range.
	fmt.Fprintf(e.stdout, "\n%-5s %-11s %10s   %s\n", "size", "path", "dlvd Mpps", "ratios per round: median (range)")
	for _, s := range sz {
		for _, p := range paths {
			var mp []float64
			for _, run := range res[s][p] {
				mp = append(mp, run.delivered)
			}
			line := fmt.Sprintf("%-5d %-11s %10.3f", s, p, medianF(mp)/1e6)
			for _, q := range paths {
				if q == p || p == "kernel" || q == "hvnet" {
					continue
				}
				var ratios []float64
				for i := range res[s][p] {
					if d := res[s][q][i].delivered; d > 0 {
						ratios = append(ratios, res[s][p][i].delivered/d)
					}
				}
				if len(ratios) > 0 {
					line += fmt.Sprintf("   /%s %.2f (%.2f..%.2f)", q, medianF(ratios), slices.Min(ratios), slices.Max(ratios))
				}
			}
			fmt.Fprintln(e.stdout, line)
		}
	}
	return 0
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 60 || n > 1464 {
			return nil, fmt.Errorf("--sizes: %q: want 60..1464 (the underlay's 1500 less 36 bytes of VXLAN)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadAvg is the machine's load (the first field of /proc/loadavg).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load ?"
	}
	return "load " + strings.Fields(string(b))[0]
}

type vxlanBench struct {
	e       *env
	rate    float64 // the generator's, frames per second (0: as fast as it can)
	flows   int     // the generator's source MACs, in turn
	dur     time.Duration
	prefix  string
	profDir string
	ul      string
	hosts   [2]string // host namespaces
	eps     [2]string // endpoint namespaces
}

// The endpoints' MACs and the hosts' underlay addresses.
var benchEPMAC = [2]string{"02:00:00:00:0a:01", "02:00:00:00:0b:01"}

func benchVTEP(i int) string { return fmt.Sprintf("10.8.0.%d", i+1) }

func (b *vxlanBench) setup() error {
	b.ul = b.prefix + "-ul"
	for i := range 2 {
		b.hosts[i] = fmt.Sprintf("%s-h%d", b.prefix, i)
		b.eps[i] = fmt.Sprintf("%s-e%d", b.prefix, i)
	}
	cmds := [][]string{}
	for _, ns := range append([]string{b.ul}, append(b.hosts[:], b.eps[:]...)...) {
		cmds = append(cmds, []string{"ip", "netns", "add", ns},
			// No IPv6 chatter (router and neighbour solicitations) in the counts.
			[]string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
			[]string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"})
	}
	cmds = append(cmds, []string{"ip", "-n", b.ul, "link", "add", "br0", "type", "bridge"}, []string{"ip", "-n", b.ul, "link", "set", "br0", "up"})
	for i, h := range b.hosts {
		bp := fmt.Sprintf("b%d", i)
		cmds = append(cmds,
			[]string{"ip", "-n", h, "link", "add", "u0", "type", "veth", "peer", "name", bp, "netns", b.ul},
			[]string{"ip", "-n", h, "addr", "add", benchVTEP(i) + "/24", "dev", "u0"},
			[]string{"ip", "-n", h, "link", "set", "u0", "up"},
			[]string{"ip", "-n", b.ul, "link", "set", bp, "master", "br0", "up"},
			[]string{"ip", "-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "ep0", "netns", b.eps[i]},
			[]string{"ip", "-n", h, "link", "set", "up0", "up"},
			[]string{"ip", "-n", b.eps[i], "link", "set", "ep0", "address", benchEPMAC[i]},
			[]string{"ip", "-n", b.eps[i], "link", "set", "ep0", "up"})
	}
	for _, c := range cmds {
		if err := sh(c...); err != nil {
			return err
		}
	}
	return nil
}

func (b *vxlanBench) cleanup() {
	for _, ns := range append([]string{b.ul}, append(b.hosts[:], b.eps[:]...)...) {
		if ns != "" {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
}

// vethStats reads an interface's packet counters in ns.
func vethStats(ns, dev string) (rx, tx uint64, err error) {
	out, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", dev).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("read %s counters in %s: %w", dev, ns, err)
	}
	var v []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
			Tx struct {
				Packets uint64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		return 0, 0, fmt.Errorf("parse %s counters: %v: %s", dev, err, out)
	}
	return v[0].Stats64.Rx.Packets, v[0].Stats64.Tx.Packets, nil
}

// benchVxlanRun is one measurement: frames per second the generator's
// veth took (sent) and endpoint B's veth received (delivered).
type benchVxlanRun struct {
	sent, delivered float64
	note            string
}

func (r benchVxlanRun) loss() float64 {
	if r.sent == 0 {
		return 0
	}
	return 1 - r.delivered/r.sent
}

// measure brings up one path (kernel or hvnet) in both hosts, lets
// endpoint B announce its MAC, runs the generator and counts.
func (b *vxlanBench) measure(path string, size, round int) (benchVxlanRun, error) {
	var stop func() (string, error)
	var err error
	if path == "kernel" {
		stop, err = b.startKernel()
	} else {
		stop, err = b.startHvnet(size, round, path == "hvnet-nogso")
	}
	if err != nil {
		return benchVxlanRun{}, err
	}
	run, err := b.count(size)
	note, serr := stop()
	run.note = note
	if err == nil {
		err = serr
	}
	return run, err
}

func (b *vxlanBench) count(size int) (benchVxlanRun, error) {
	self, err := os.Executable()
	if err != nil {
		return benchVxlanRun{}, err
	}
	// Endpoint B speaks first, so that both forwarders know its MAC and
	// the generator's frames go as unicast (not flooded) on both paths.
	if err := sh("ip", "netns", "exec", b.eps[1], self, "bench", "vxlan", "-role", "hello", "-iface", "ep0"); err != nil {
		return benchVxlanRun{}, err
	}
	time.Sleep(200 * time.Millisecond)
	const warm = 500 * time.Millisecond
	gen := exec.Command("ip", "netns", "exec", b.eps[0], self, "bench", "vxlan", "-role", "gen", "-iface", "ep0",
		"-dst", benchEPMAC[1], "-size", fmt.Sprint(size), "-duration", (b.dur + 2*warm).String(), "-rate", fmt.Sprint(b.rate),
		"-flows", fmt.Sprint(b.flows))
	var genOut strings.Builder
	gen.Stdout, gen.Stderr = &genOut, b.e.stderr
	if err := gen.Start(); err != nil {
		return benchVxlanRun{}, err
	}
	sample := func() (sent, dlvd uint64, err error) {
		if _, sent, err = vethStats(b.eps[0], "ep0"); err != nil {
			return
		}
		dlvd, _, err = vethStats(b.eps[1], "ep0")
		return
	}
	time.Sleep(warm)
	s0, d0, err := sample()
	t0 := time.Now()
	if err == nil {
		time.Sleep(b.dur)
	}
	s1, d1, err1 := sample()
	el := time.Since(t0)
	werr := gen.Wait()
	if err == nil {
		err = err1
	}
	if err == nil && werr != nil {
		err = fmt.Errorf("generator: %w", werr)
	}
	if err != nil {
		return benchVxlanRun{}, err
	}
	return benchVxlanRun{sent: float64(s1-s0) / el.Seconds(), delivered: float64(d1-d0) / el.Seconds()}, nil
}

// startKernel builds Linux's forwarder in both hosts: a bridge with the
// endpoint veth and a vxlan device that sends everything it does not know
// to the other host.
func (b *vxlanBench) startKernel() (func() (string, error), error) {
	stop := func() (string, error) {
		for _, h := range b.hosts {
			exec.Command("ip", "-n", h, "link", "del", "br0").Run()
			exec.Command("ip", "-n", h, "link", "del", "vx").Run()
		}
		return "", nil
	}
	for i, h := range b.hosts {
		for _, c := range [][]string{
			{"ip", "-n", h, "link", "add", "br0", "type", "bridge"},
			{"ip", "-n", h, "link", "add", "vx", "type", "vxlan", "id", "100", "local", benchVTEP(i), "dstport", "4789", "nolearning", "dev", "u0"},
			{"ip", "-n", h, "link", "set", "vx", "master", "br0"},
			{"ip", "-n", h, "link", "set", "up0", "master", "br0"},
			{"ip", "netns", "exec", h, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx", "dst", benchVTEP(1 - i)},
			{"ip", "-n", h, "link", "set", "vx", "up"},
			{"ip", "-n", h, "link", "set", "br0", "up"},
		} {
			if err := sh(c...); err != nil {
				stop()
				return nil, err
			}
		}
	}
	return stop, nil
}

// benchHostProc is an hvnet host process (bench vxlan -role host).
type benchHostProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	done  chan error
}

// startHvnet starts an hvnet host process in each host namespace.
func (b *vxlanBench) startHvnet(size, round int, nogso bool) (func() (string, error), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var procs []*benchHostProc
	stop := func() (string, error) {
		var notes []string
		var first error
		for i, p := range procs {
			p.stdin.Close()
			var sum string
			if p.out.Scan() {
				sum = p.out.Text()
			}
			select {
			case err := <-p.done:
				if err != nil && first == nil {
					first = fmt.Errorf("hvnet host %d: %w", i, err)
				}
			case <-time.After(20 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
				if first == nil {
					first = fmt.Errorf("hvnet host %d did not stop", i)
				}
			}
			notes = append(notes, fmt.Sprintf("host %c: %s", 'A'+i, sum))
		}
		return strings.Join(notes, "\n      "), first
	}
	gso := "on"
	if nogso {
		gso = "off"
	}
	for i, h := range b.hosts {
		args := []string{"netns", "exec", h, self, "bench", "vxlan", "-role", "host",
			"-port", "kind=uplink,name=up,if=up0,vlan=10",
			"-port", fmt.Sprintf("kind=vxlan,name=vx,vlan=10,local=%s,vni=100:10,remote=%s,udp-gso=%s", benchVTEP(i), benchVTEP(1-i), gso)}
		if b.profDir != "" {
			args = append(args, "-cpuprofile", filepath.Join(b.profDir, fmt.Sprintf("hvnet-%c-%dB-r%d.pprof", 'a'+i, size, round)))
		}
		p, err := startBenchHost(b.e, "ip", args...)
		if err != nil {
			stop()
			return nil, fmt.Errorf("hvnet host %d: %w", i, err)
		}
		procs = append(procs, p)
	}
	return stop, nil
}

// startBenchHost starts a host process and waits for its "ready" line.
func startBenchHost(e *env, name string, args ...string) (*benchHostProc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = e.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &benchHostProc{cmd: cmd, stdin: in, out: bufio.NewScanner(out), done: make(chan error, 1)}
	p.out.Buffer(nil, 16<<20)
	ready := make(chan bool, 1)
	go func() { ready <- p.out.Scan() && p.out.Text() == "ready" }()
	select {
	case ok := <-ready:
		if ok {
			go func() { p.done <- cmd.Wait() }()
			return p, nil
		}
	case <-time.After(30 * time.Second):
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, errors.New("did not become ready")
}

// benchHost runs the daemon's switch with the ports given (as hvnet
// switch --port) in the process's network namespace: it prints "ready"
// once they are up, and when its stdin closes, a line of the ports'
// counters, then stops.
func benchHost(e *env, specs []string, profile string) int {
	var ps []daemon.PortSpec
	for _, s := range specs {
		p, err := parsePortFlag(api.KindVhostUser, s)
		if err != nil {
			return fail(e, fmt.Errorf("%w: bench host: --port %q: %v", errUsage, s, err))
		}
		ps = append(ps, p)
	}
	cfg := daemon.Config{Ports: ps}
	sc := cfg.SwitchConfig()
	sc.Logger = e.log.Named("switch")
	sw := vswitch.New(sc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := daemon.Start(ctx, e.log, sw, cfg, true)
	if err != nil {
		return fail(e, err)
	}
	stop, err := startProfile(profile)
	if err != nil {
		return fail(e, err)
	}
	fmt.Fprintln(e.stdout, "ready")
	io.Copy(io.Discard, os.Stdin)
	stop()
	fmt.Fprintln(e.stdout, hostSummary(r, sw))
	if err := r.Shutdown(); err != nil {
		return fail(e, err)
	}
	return 0
}

// hostSummary is one line of a host's counters: per port what it
// received and sent and the switch's drops, and the tunnel's errors.
func hostSummary(r *daemon.Running, sw *vswitch.Switch) string {
	var parts []string
	for _, c := range sw.Counters() {
		var drops uint64
		for _, d := range c.Drops {
			drops += d
		}
		s := fmt.Sprintf("%s rx %d tx %d drops %d", c.Name, c.RxPackets, c.TxPackets, drops)
		if dc := r.Daemon().DeviceCounters(c.Name); dc != nil && dc.VXLANCounters != nil {
			v := dc.VXLANCounters
			s += fmt.Sprintf(" (vxlan rx %d tx %d tx_errors %d rx_errors %d gso %d gro %d)", v.RxPackets, v.TxPackets, v.TxErrors, v.RxErrors,
				v.TxGSOPackets, v.RxGROPackets)
		} else if dc != nil && dc.UplinkCounters != nil {
			s += fmt.Sprintf(" (ring full %d)", dc.UplinkCounters.RxDropKernel)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ") + "; udp " + udpRcvbufErrors()
}

// udpRcvbufErrors is the namespace's count of UDP datagrams dropped for a
// full socket receive buffer (/proc/net/snmp, Udp: RcvbufErrors).
func udpRcvbufErrors() string {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return "?"
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				return "rcvbuf_errors " + f[i]
			}
		}
	}
	return "?"
}

// startProfile starts a CPU profile into path (nothing when path is
// empty) and returns what stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// benchHello sends three broadcast frames out of iface, so that the
// forwarders learn its MAC.
func benchHello(e *env, iface string) int {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(e, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fail(e, fmt.Errorf("hello: %w", err))
	}
	defer unix.Close(fd)
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], ifi.HardwareAddr)
	f[12], f[13] = 0x88, 0xb5
	sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	copy(sa.Addr[:], f[:6])
	for range 3 {
		if err := unix.Sendto(fd, f, 0, sa); err != nil {
			return fail(e, fmt.Errorf("hello: %w", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0
}
