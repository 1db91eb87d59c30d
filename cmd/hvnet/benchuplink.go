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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/songgao/packets/ethernet"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

// benchNetnsEnv marks the re-executed benchmark running in its own network namespace.
const benchNetnsEnv = "HVNET_BENCH_UPLINK_NETNS"

// cmdBenchUplink measures forwarding through AF_PACKET ports between two
// namespaces: a generator namespace sends 64-byte frames into veth ha, a
// sink namespace counts what arrives from veth hb, and in between, in turn:
// hvnet's switch with two uplink ports, DPDK testpmd (net_af_packet, io
// forwarding) on the same veths, and the kernel's bridge. Everything runs
// in a private network namespace.
func cmdBenchUplink(e *env, args []string) int {
	fs := flag.NewFlagSet("bench uplink", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dur := fs.Duration("duration", 5*time.Second, "measurement time per forwarder")
	size := fs.Int("size", 64, "frame size in bytes (without FCS)")
	txMode := fs.String("tx", "ring", "hvnet TX path: ring or sendmmsg")
	workers := fs.Int("rx-workers", 1, "hvnet RX workers (PACKET_FANOUT)")
	noDPDK := fs.Bool("no-dpdk", false, "skip DPDK testpmd")
	role := fs.String("role", "", "internal: gen")
	iface := fs.String("iface", "", "internal: generator interface")
	dst := fs.String("dst", "", "internal: destination MAC")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if *size < 60 || *size > 1514 {
		return fail(e, fmt.Errorf("%w: -size %d: want 60..1514", errUsage, *size))
	}
	mode, err := uplink.ParseTXMode(*txMode)
	if err != nil {
		return fail(e, fmt.Errorf("%w: %v", errUsage, err))
	}
	if *role == "gen" {
		return benchGen(e, *iface, *dst, *size, *dur, 0, 1)
	}
	if os.Getenv(benchNetnsEnv) == "" {
		return reexecInNetns(e, append([]string{"bench", "uplink"}, args...))
	}
	b := &uplinkBench{e: e, dur: *dur, size: *size, mode: mode, workers: *workers, ns: fmt.Sprintf("hvb%d", os.Getpid())}
	defer b.cleanup()
	if err := b.setup(); err != nil {
		return fail(e, err)
	}
	fmt.Fprintf(e.stdout, "uplink forwarding, %d-byte frames, %s per run, generator ns %s -> veth ha | forwarder | veth hb -> sink ns %s\n",
		*size, *dur, b.gen, b.sink)
	var res []benchResult
	r, err := b.measure("hvnet", b.runHvnet)
	if err != nil {
		return fail(e, fmt.Errorf("hvnet: %w", err))
	}
	res = append(res, r)
	if !*noDPDK {
		if r, err = b.measure("dpdk-testpmd af_packet", b.runDPDK); err != nil {
			return fail(e, fmt.Errorf("dpdk: %w", err))
		}
		res = append(res, r)
	}
	if r, err = b.measure("linux bridge", b.runBridge); err != nil {
		return fail(e, fmt.Errorf("bridge: %w", err))
	}
	res = append(res, r)
	fmt.Fprintf(e.stdout, "%-24s %12s %10s %12s %8s\n", "forwarder", "Mpps", "Gbit/s", "gen Mpps", "hvnet/x")
	for _, r := range res {
		ratio := "-"
		if r.pps > 0 {
			ratio = fmt.Sprintf("%.2f", res[0].pps/r.pps)
		}
		fmt.Fprintf(e.stdout, "%-24s %12.3f %10.3f %12.3f %8s\n", r.name, r.pps/1e6, r.pps*float64(*size*8)/1e9, r.genPPS/1e6, ratio)
	}
	return 0
}

func reexecInNetns(e *env, args []string) int {
	self, err := os.Executable()
	if err != nil {
		return fail(e, err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), benchNetnsEnv+"=1")
	cmd.Stdout, cmd.Stderr = e.stdout, e.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return fail(e, fmt.Errorf("run in a new network namespace (needs root): %w", err))
	}
	return 0
}

type benchResult struct {
	name        string
	pps, genPPS float64
}

type uplinkBench struct {
	e         *env
	dur       time.Duration
	size      int
	mode      uplink.TXMode
	workers   int
	ns        string
	gen, sink string
	sinkMAC   string
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (b *uplinkBench) setup() error {
	b.gen, b.sink = b.ns+"-gen", b.ns+"-sink"
	for _, c := range [][]string{
		{"ip", "netns", "add", b.gen}, {"ip", "netns", "add", b.sink},
		{"ip", "link", "add", "ha", "type", "veth", "peer", "name", "g0", "netns", b.gen},
		{"ip", "link", "add", "hb", "type", "veth", "peer", "name", "s0", "netns", b.sink},
		{"ip", "link", "set", "ha", "up"}, {"ip", "link", "set", "hb", "up"},
		{"ip", "-n", b.gen, "link", "set", "g0", "up"}, {"ip", "-n", b.sink, "link", "set", "s0", "up"},
		{"ip", "-n", b.sink, "link", "set", "s0", "address", "02:00:00:00:00:02"},
	} {
		if err := sh(c...); err != nil {
			return err
		}
	}
	b.sinkMAC = "02:00:00:00:00:02"
	return nil
}

func (b *uplinkBench) cleanup() {
	exec.Command("ip", "netns", "del", b.gen).Run()
	exec.Command("ip", "netns", "del", b.sink).Run()
}

// rxPackets reads the sink veth's received-packet counter.
func (b *uplinkBench) rxPackets() (uint64, error) {
	out, err := exec.Command("ip", "-n", b.sink, "-s", "-j", "link", "show", "s0").Output()
	if err != nil {
		return 0, fmt.Errorf("read sink counters: %w", err)
	}
	var v []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		return 0, fmt.Errorf("parse sink counters: %v: %s", err, out)
	}
	return v[0].Stats64.Rx.Packets, nil
}

// measure starts a forwarder (start returns a stop function), runs the
// generator and counts frames at the sink during b.dur after a warm-up.
func (b *uplinkBench) measure(name string, start func() (func(), error)) (benchResult, error) {
	stop, err := start()
	if err != nil {
		return benchResult{}, err
	}
	defer stop()
	self, err := os.Executable()
	if err != nil {
		return benchResult{}, err
	}
	const warm = 500 * time.Millisecond
	gen := exec.Command("ip", "netns", "exec", b.gen, self, "bench", "uplink", "-role", "gen", "-iface", "g0",
		"-dst", b.sinkMAC, "-size", fmt.Sprint(b.size), "-duration", (b.dur + 2*warm).String())
	var genOut strings.Builder
	gen.Stdout, gen.Stderr = &genOut, b.e.stderr
	if err := gen.Start(); err != nil {
		return benchResult{}, err
	}
	time.Sleep(warm)
	r0, err := b.rxPackets()
	if err != nil {
		gen.Process.Kill()
		gen.Wait()
		return benchResult{}, err
	}
	t0 := time.Now()
	time.Sleep(b.dur)
	r1, err := b.rxPackets()
	el := time.Since(t0)
	werr := gen.Wait()
	if err != nil {
		return benchResult{}, err
	}
	if werr != nil {
		return benchResult{}, fmt.Errorf("generator: %w", werr)
	}
	res := benchResult{name: name, pps: float64(r1-r0) / el.Seconds()}
	fmt.Sscanf(strings.TrimSpace(genOut.String()), "%f", &res.genPPS)
	return res, nil
}

func (b *uplinkBench) runHvnet() (func(), error) {
	sw := vswitch.New(vswitch.Config{Logger: b.e.log})
	var ports []*uplink.Port
	stop := func() {
		for _, p := range ports {
			p.Close()
		}
	}
	for _, name := range []string{"ha", "hb"} {
		p, err := uplink.Open(name, uplink.Config{Logger: b.e.log, TX: b.mode, QdiscBypass: true, RXWorkers: b.workers})
		if err != nil {
			stop()
			return nil, err
		}
		ports = append(ports, p)
		h, err := sw.AddPort(vswitch.PortConfig{Name: name, Mode: vswitch.ModeAccess, PVID: 1}, p)
		if err != nil {
			stop()
			return nil, err
		}
		if err := p.Start(h); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

func (b *uplinkBench) runBridge() (func(), error) {
	for _, c := range [][]string{
		{"ip", "link", "add", "brb", "type", "bridge"}, {"ip", "link", "set", "brb", "up"},
		{"ip", "link", "set", "ha", "master", "brb"}, {"ip", "link", "set", "hb", "master", "brb"},
	} {
		if err := sh(c...); err != nil {
			return nil, err
		}
	}
	return func() { exec.Command("ip", "link", "del", "brb").Run() }, nil
}

func (b *uplinkBench) runDPDK() (func(), error) {
	cmd := exec.Command("stdbuf", "-oL", "dpdk-testpmd", "--no-huge", "-m", "512", "--no-pci", "-l", "0-1",
		"--file-prefix", b.ns, "--vdev", "net_af_packet0,iface=ha", "--vdev", "net_af_packet1,iface=hb",
		"--", "--total-num-mbufs=32768", "--forward-mode=io", "--auto-start")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dpdk-testpmd (apt-get install dpdk-dev librte-net-af-packet23 librte-mempool-ring23): %w", err)
	}
	ready := make(chan error, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !sent && strings.Contains(sc.Text(), "forwards packets on") {
				ready <- nil
				sent = true
			}
		}
		if !sent {
			ready <- fmt.Errorf("testpmd exited before forwarding:\n%s", log.String())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Wait()
			return nil, err
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		cmd.Wait()
		return nil, errors.New("testpmd did not start forwarding in 30 s")
	}
	return func() {
		io.WriteString(stdin, "\n")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}, nil
}

// benchGen sends frames of size bytes to dst out of iface for dur, through
// an uplink Port's TX path (TPACKET ring, qdisc bypass), as fast as it can
// or at rate frames per second (0: as fast), and prints the rate it
// managed in packets per second.
// benchGen sends frames of one size to dst from iface for dur, at rate
// (0: as fast as it can), from flows source MACs in turn (1: one flow;
// more: consecutive frames are never of one flow).
func benchGen(e *env, iface, dst string, size int, dur time.Duration, rate float64, flows int) int {
	p, err := uplink.Open(iface, uplink.Config{QdiscBypass: true, NoPromisc: true, Blocks: 2, BlockSize: 128 << 10})
	if err != nil {
		return fail(e, err)
	}
	defer p.Close()
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(e, err)
	}
	d, err := net.ParseMAC(dst)
	if err != nil {
		return fail(e, err)
	}
	frames := make([]ethernet.Frame, max(1, min(flows, 256)))
	for i := range frames {
		src := slices.Clone(ifi.HardwareAddr)
		src[len(src)-1] ^= byte(i)
		// IEEE 802 local experimental EtherType 0x88b5
		frames[i].Prepare(d, src, ethernet.NotTagged, ethernet.Ethertype{0x88, 0xb5}, size-14)
	}
	batch := make([]vswitch.Frame, 64)
	for i := range batch {
		batch[i].Data = frames[i%len(frames)]
	}
	if rate > 0 {
		// Paced: batches of a millisecond's frames, sleeping between.
		batch = batch[:max(1, min(len(batch), int(rate/1000)))]
	}
	var sent uint64
	start := time.Now()
	end := start.Add(dur)
	for i := 0; ; i++ {
		if (rate > 0 || i&63 == 0) && time.Now().After(end) {
			break
		}
		sent += uint64(p.Send(batch))
		if rate > 0 {
			if ahead := time.Duration(float64(sent)/rate*1e9) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	fmt.Fprintf(e.stdout, "%.0f\n", float64(sent)/time.Since(start).Seconds())
	return 0
}
