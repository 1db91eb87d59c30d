package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost"
	"github.com/hvnet/hvnet/vhost/dpdktest"
)

// benchVhostOpts are the knobs of "hvnet bench vhost".
type benchVhostOpts struct {
	seconds          float64
	sizes            []int
	fwdCore, genCore int
	skipDPDK         bool
	skipHvnet        bool
	verbose          io.Writer
}

// cmdBenchVhost measures the vhost-user path: DPDK virtio-user txonly ->
// hvnet port A -> switch (learning, VLAN 10 on both access ports) -> port B
// -> DPDK virtio-user rxonly, and the same generator and sink with DPDK's
// own vhost backend (testpmd, two net_vhost ports, io forwarding) in
// hvnet's place, on the same cores, in the same run. It prints Mpps at the
// sink for both and their ratio.
func cmdBenchVhost(e *env, args []string) int {
	fs := flag.NewFlagSet("bench vhost", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := benchVhostOpts{}
	fs.Float64Var(&o.seconds, "seconds", 5, "measurement time per run")
	sizes := fs.String("sizes", "64,1518", "frame sizes (bytes)")
	fs.IntVar(&o.fwdCore, "fwd-core", 0, "core of the forwarder (hvnet's threads, or DPDK's forwarding lcore)")
	fs.IntVar(&o.genCore, "gen-core", 1, "forwarding core of the generator and sink (one testpmd, flowgen)")
	fs.BoolVar(&o.skipDPDK, "skip-dpdk", false, "measure hvnet only")
	fs.BoolVar(&o.skipHvnet, "skip-hvnet", false, "measure DPDK only")
	verbose := fs.Bool("v", false, "show testpmd's output")
	cpuprofile := fs.String("cpuprofile", "", "") // hidden: write a CPU profile of the hvnet runs here
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fail(e, fmt.Errorf("bench vhost: %w", err))
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(e, fmt.Errorf("bench vhost: %w", err))
		}
		defer pprof.StopCPUProfile()
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 60 || n > 1518 {
			return fail(e, fmt.Errorf("%w: bench vhost: size %q: want 60..1518", errUsage, s))
		}
		o.sizes = append(o.sizes, n)
	}
	if *verbose {
		o.verbose = e.stderr
	}
	fmt.Fprintf(e.stdout, "vhost-user forwarding: DPDK virtio-user flowgen (A<->B) -> forwarder (switch: learning, VLAN 10) -> virtio-user; %d cores; forwarder on core %d, generator+sink on core %d; %.1f s per run\n",
		runtimeCPUs(), o.fwdCore, o.genCore, o.seconds)
	fmt.Fprintf(e.stdout, "Mpps = frames received back per second, both directions together\n")
	fmt.Fprintf(e.stdout, "%-6s %12s %12s %8s %14s %14s\n", "bytes", "hvnet Mpps", "DPDK Mpps", "ratio", "hvnet loss", "DPDK loss")
	for _, size := range o.sizes {
		var hv, loss float64
		if !o.skipHvnet {
			var err error
			if hv, loss, err = benchHvnet(e, o, size); err != nil {
				return fail(e, fmt.Errorf("bench vhost: hvnet, %d bytes: %w", size, err))
			}
		}
		dp, dloss := 0.0, 0.0
		if !o.skipDPDK {
			var err error
			if dp, dloss, err = benchDPDK(e, o, size); err != nil {
				return fail(e, fmt.Errorf("bench vhost: DPDK, %d bytes: %w", size, err))
			}
		}
		ratio := "-"
		if dp > 0 {
			ratio = fmt.Sprintf("%.2f", hv/dp)
		}
		fmt.Fprintf(e.stdout, "%-6d %12.2f %12.2f %8s %13.1f%% %13.1f%%\n", size, hv, dp, ratio, 100*loss, 100*dloss)
	}
	return 0
}

func runtimeCPUs() int {
	var s unix.CPUSet
	if unix.SchedGetaffinity(0, &s) != nil {
		return 0
	}
	return s.Count()
}

// pinProcess sets the affinity of every thread of this process to core
// and returns a function restoring the old set. Threads created later
// inherit it.
func pinProcess(core int) (func(), error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	set.Set(core)
	// Every thread as it is at each call: a thread made while pinned
	// is restored too (its children, testpmd in a later test, would
	// otherwise inherit one core).
	apply := func(s *unix.CPUSet) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				unix.SchedSetaffinity(tid, s)
			}
		}
		return nil
	}
	if err := apply(&set); err != nil {
		return nil, err
	}
	return func() { apply(&old) }, nil
}

// genSink starts the traffic generator and sink: one testpmd in flowgen
// mode with a virtio-user port on each socket, on one forwarding core.
// flowgen transmits on each port and receives (and frees) on each port, so
// every frame the forwarder moves from A to B or from B to A is generated
// and counted on that one core. (txonly and rxonly in two processes would
// need three busy cores with the forwarder; this machine has two, and two
// busy pollers time-sharing a core move one ring's worth per scheduler
// slice.) Destination MACs are the peer port's, so after learning the
// switch forwards by FDB lookup.
func genSink(o benchVhostOpts, size int, sockA, sockB string) (*dpdktest.Testpmd, error) {
	main := 0
	if o.genCore == 0 {
		main = 1
	}
	const macA, macB = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
	p, err := dpdktest.Start(dpdktest.Options{Cores: []int{main, o.genCore}, Log: o.verbose,
		Vdevs: []string{"net_virtio_user0,path=" + sockA + ",queues=1,queue_size=1024,mac=" + macA,
			"net_virtio_user1,path=" + sockB + ",queues=1,queue_size=1024,mac=" + macB},
		Args: []string{"--forward-mode=flowgen", "--txpkts=" + strconv.Itoa(size),
			"--eth-peer=0," + macB, "--eth-peer=1," + macA}})
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(60 * time.Second); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// stats2 sums both ports' counters.
func stats2(p *dpdktest.Testpmd) (rx, tx uint64, err error) {
	for port := range 2 {
		r, t, err := p.Stats(port)
		if err != nil {
			return 0, 0, err
		}
		rx, tx = rx+r, tx+t
	}
	return rx, tx, nil
}

// measure starts the generator, lets it warm up for a second and returns
// the rate received back (both directions together) in Mpps and the
// fraction of generated frames that did not arrive.
func measure(o benchVhostOpts, p *dpdktest.Testpmd) (float64, float64, error) {
	p.Cmd("start")
	time.Sleep(time.Second)
	rx0, tx0, err := stats2(p)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	time.Sleep(time.Duration(o.seconds * float64(time.Second)))
	rx1, tx1, err := stats2(p)
	if err != nil {
		return 0, 0, err
	}
	el := time.Since(t0).Seconds()
	p.Cmd("stop")
	mpps := float64(rx1-rx0) / el / 1e6
	loss := 0.0
	if tx1 > tx0 {
		loss = max(0, 1-float64(rx1-rx0)/float64(tx1-tx0))
	}
	return mpps, loss, nil
}

// benchHvnet runs hvnet's switch with two vhost-user ports in this process,
// pinned to the forwarder core.
func benchHvnet(e *env, o benchVhostOpts, size int) (float64, float64, error) {
	dir, err := os.MkdirTemp("", "hvnet-bench-vhost-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	// testpmd's flowgen sends every frame from one fixed source MAC
	// (00:01:02:03:04:00) on both ports, so that MAC "moves" between a
	// and b every batch: with the MAC-move hold-down (on by default) one
	// direction would be dropped as mac_move. Off here, as the generator
	// is not a host that could move.
	sw := vswitch.New(vswitch.Config{MACMoveHoldDown: -1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ports []*vhost.Port
	for _, n := range []string{"a", "b"} {
		p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: n, PVID: 10},
			Socket: filepath.Join(dir, n+".sock"), Logger: e.log.Named("vhost-" + n)})
		if err != nil {
			return 0, 0, err
		}
		defer p.Remove()
		ports = append(ports, p)
		go p.Run(ctx)
	}
	unpin, err := pinProcess(o.fwdCore)
	if err != nil {
		return 0, 0, err
	}
	defer unpin()
	gen, err := genSink(o, size, filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"))
	if err != nil {
		return 0, 0, err
	}
	defer gen.Close()
	for _, p := range ports {
		if !p.Connected() {
			return 0, 0, errors.New("port " + p.Name() + " has no frontend")
		}
	}
	return measure(o, gen)
}

// benchDPDK puts testpmd with two net_vhost ports (io forwarding) where
// hvnet was.
func benchDPDK(e *env, o benchVhostOpts, size int) (float64, float64, error) {
	dir, err := os.MkdirTemp("", "hvnet-bench-vhost-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	sa, sb := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	main := 1
	if o.fwdCore == 1 {
		main = 0
	}
	fwd, err := dpdktest.Start(dpdktest.Options{Cores: []int{main, o.fwdCore}, Log: o.verbose,
		Vdevs: []string{"net_vhost0,iface=" + sa + ",queues=1", "net_vhost1,iface=" + sb + ",queues=1"},
		Args:  []string{"--forward-mode=io"}})
	if err != nil {
		return 0, 0, err
	}
	defer fwd.Close()
	if err := fwd.WaitReady(60 * time.Second); err != nil {
		return 0, 0, err
	}
	fwd.Cmd("start")
	gen, err := genSink(o, size, sa, sb)
	if err != nil {
		return 0, 0, err
	}
	defer gen.Close()
	return measure(o, gen)
}
