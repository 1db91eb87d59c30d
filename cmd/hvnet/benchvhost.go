package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
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
	rounds           int
	retries          int
	fwdCore, genCore int
	skipDPDK         bool
	skipHvnet        bool
	skipOVS          bool
	cpuStats         bool
	verbose          io.Writer
}

// A forwarder under test: hvnet's switch, testpmd's io forwarding, or
// OVS-DPDK.
type forwarder int

const (
	fwdHvnet forwarder = iota
	fwdTestpmd
	fwdOVS
	nForwarders
)

func (f forwarder) String() string {
	return [...]string{"hvnet", "testpmd", "OVS"}[f]
}

// vhostResult is one measurement: the rate in each direction at the
// generator's ports (A->B counted on B, B->A on A) and the loss.
type vhostResult struct {
	ab, ba float64 // Mpps
	loss   float64
	frames uint64 // received back in the window
	// cost is the forwarder's busy time per frame (ns) by its own
	// accounting, idle polls left out: hvnet's PollBusyNanos, testpmd's
	// --record-core-cycles, OVS's processing cycles. Unlike the rate it
	// does not count the time the forwarder was not running (a busy
	// host's other work); it does count time lost to preemption inside a
	// busy poll. genCost is the generator's (flowgen's cycles per packet
	// sent), mhz the TSC rate testpmd reports. 0: unknown.
	cost, genCost, mhz float64
	// share is the forwarder's threads' time on a CPU over their time on
	// a CPU or waiting for one (/proc/PID/task/*/schedstat) in the
	// window: 1 on a quiet host. cost*share is the busy time per frame
	// with the time it was preempted taken out (preemption lands on
	// busy and idle polls alike), what it would cost with the core to
	// itself.
	share float64
	// cpu is this process's CPU time per frame forwarded (ns) and busy
	// the fraction of one core it used (--cpu, for hvnet): robust to
	// stolen time, but with busy polling it includes idle polls.
	cpu, busy float64
	// place is how far apart the forwarder's and the generator's cores
	// were, just before and just after the run (coreRoundTrip).
	place placement
	// tries is how many times the run was measured (--retries): the
	// host moved the cores in all tries but the last, or ran them in
	// another placement than the round's first steady run had.
	tries int
}

// ownCore is the busy time per frame with preemption taken out (cost *
// share), in ns: what a frame costs the forwarder on a core of its own; 0
// if unknown.
func (r vhostResult) ownCore() float64 {
	if r.share <= 0 {
		return 0
	}
	return r.cost * r.share
}

// perDir is the rate per direction, the mean of the two.
func (r vhostResult) perDir() float64 { return (r.ab + r.ba) / 2 }

// cmdBenchVhost measures the vhost-user path: DPDK virtio-user flowgen on
// two ports -> forwarder -> back, with three forwarders in turn on the same
// cores in the same run: hvnet's switch (learning, VLAN 10 on both access
// ports), DPDK's own vhost backend (testpmd, two net_vhost ports, io
// forwarding: the single-core limit) and OVS-DPDK (a NORMAL netdev bridge
// with two dpdkvhostuser ports: what a user would run instead). Rounds
// interleave them, the order rotated each round; it prints per-direction
// Mpps and the ratios per round, then medians and ranges.
func cmdBenchVhost(e *env, args []string) int {
	fs := flag.NewFlagSet("bench vhost", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := benchVhostOpts{}
	fs.Float64Var(&o.seconds, "seconds", 5, "measurement time per run")
	sizes := fs.String("sizes", "64,1514", "frame sizes (bytes, with the FCS as flowgen counts them)")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds; each measures every forwarder at every size, the order rotated each round")
	fs.IntVar(&o.retries, "retries", 2, "times a run is measured again when the host moved the cores during it, or ran them near where the round's first steady run had them far (or far where near); the last try counts")
	fs.IntVar(&o.fwdCore, "fwd-core", 0, "core of the forwarder (hvnet's threads, DPDK's forwarding lcore, OVS's PMD and threads)")
	fs.IntVar(&o.genCore, "gen-core", 1, "forwarding core of the generator and sink (one testpmd, flowgen)")
	fs.BoolVar(&o.skipDPDK, "skip-dpdk", false, "do not measure testpmd io forwarding")
	fs.BoolVar(&o.skipHvnet, "skip-hvnet", false, "do not measure hvnet")
	fs.BoolVar(&o.skipOVS, "skip-ovs", false, "do not measure OVS-DPDK")
	verbose := fs.Bool("v", false, "show testpmd's and OVS's output")
	fs.BoolVar(&o.cpuStats, "cpu", false, "print each run's details: both directions, raw busy time, CPU share, the generator's busy time, hvnet's CPU time")
	cpuprofile := fs.String("cpuprofile", "", "") // hidden: write a CPU profile of the hvnet runs here
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 60 || n > 1518 {
			return fail(e, fmt.Errorf("%w: bench vhost: size %q: want 60..1518", errUsage, s))
		}
		o.sizes = append(o.sizes, n)
	}
	if o.rounds < 1 {
		return fail(e, fmt.Errorf("%w: bench vhost: --rounds %d: want at least 1", errUsage, o.rounds))
	}
	if o.retries < 0 {
		return fail(e, fmt.Errorf("%w: bench vhost: --retries %d: want 0 or more", errUsage, o.retries))
	}
	if *verbose {
		o.verbose = e.stderr
	}
	var fwds []forwarder
	if !o.skipHvnet {
		fwds = append(fwds, fwdHvnet)
	}
	if !o.skipDPDK {
		fwds = append(fwds, fwdTestpmd)
	}
	var ovs *ovsDPDK
	if !o.skipOVS {
		var err error
		if ovs, err = benchOVSSetup(e, o); errors.Is(err, errOVSMissing) {
			fmt.Fprintf(e.stdout, "OVS-DPDK not measured: %v (--skip-ovs to silence)\n", err)
		} else if err != nil {
			return fail(e, fmt.Errorf("bench vhost: OVS-DPDK: %w", err))
		} else {
			defer ovs.Close()
			fwds = append(fwds, fwdOVS)
		}
	}
	if len(fwds) == 0 {
		return fail(e, fmt.Errorf("%w: bench vhost: every forwarder skipped", errUsage))
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
	fmt.Fprintf(e.stdout, "vhost-user forwarding: DPDK virtio-user flowgen (A<->B) -> forwarder -> virtio-user; %d cores; forwarder on core %d, generator+sink on core %d; %.1f s per run, %d round(s), order rotated each round\n",
		runtimeCPUs(), o.fwdCore, o.genCore, o.seconds, o.rounds)
	fmt.Fprintf(e.stdout, "forwarders: hvnet (switch: learning, VLAN 10); testpmd (io forwarding, net_vhost x2); OVS (OVS-DPDK, NORMAL netdev bridge, dpdkvhostuser x2)\n")
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(e.stdout, "load average at start: %s\n", strings.Join(strings.Fields(string(l))[:3], " "))
	}
	fmt.Fprintf(e.stdout, "Mpps: per direction (the mean of A->B and B->A, frames received back by the generator)\n")
	fmt.Fprintf(e.stdout, "ns/frame: the forwarder's busy time per frame by its own accounting, idle polls left out (hvnet: PollBusyNanos; testpmd: --record-core-cycles;\n")
	fmt.Fprintf(e.stdout, "  OVS: pmd-stats-show processing cycles), times its threads' CPU share (on-CPU over on-CPU + run-queue wait, schedstat): its cost on a core of its own\n")
	fmt.Fprintf(e.stdout, "cores h/t/O: where the host ran the forwarder's and the generator's cores (vCPUs), by a cache line's round trip between them before and after each run:\n")
	fmt.Fprintf(e.stdout, "  near (<= %.0f ns: a shared cache), far (another die), moved (one of each, or the rate changed by more than %.0f%% between slices of the window)\n",
		float64(farRoundTrip.Nanoseconds()), 100*maxRateJump)
	fmt.Fprintf(e.stdout, "tries h/t/O: how many times each run was measured; a run is measured again (up to --retries %d times, the last try counts) when its cores moved,\n", o.retries)
	fmt.Fprintf(e.stdout, "  or were near where the round's first steady run had them far (or far where near): a round compares the forwarders in one placement where the host allows\n")
	fmt.Fprintf(e.stdout, "%-5s %-5s | %-20s | %-11s | %-20s | %-17s | %-14s %-16s %-11s %s\n", "", "", "Mpps", "ratio", "ns/frame", "CPU share %", "", "", "", "")
	fmt.Fprintf(e.stdout, "%-5s %-5s | %6s %7s %5s | %5s %5s | %6s %7s %5s | %5s %5s %5s | %-14s %-16s %-11s %s\n",
		"round", "bytes", "hvnet", "testpmd", "OVS", "h/t", "h/O", "hvnet", "testpmd", "OVS", "h", "t", "O", "loss% h/t/O", "cores h/t/O", "tries h/t/O", "order")
	// res[size][forwarder] holds every round's result.
	res := make([][nForwarders][]vhostResult, len(o.sizes))
	var again int // runs measured again
	for round := range o.rounds {
		for si, size := range o.sizes {
			var got [nForwarders]*vhostResult
			order := make([]string, len(fwds))
			var want string // the round's placement: its first steady run's
			for i := range fwds {
				f := fwds[(i+round)%len(fwds)]
				order[i] = f.String()
				var r vhostResult
				for try := 1; ; try++ {
					var err error
					if r, err = benchForwarder(e, o, f, size, ovs); err != nil {
						return fail(e, fmt.Errorf("bench vhost: round %d, %s, %d bytes: %w", round+1, f, size, err))
					}
					r.tries = try
					last := settled(r.place, want) || try > o.retries
					if o.cpuStats {
						printRunDetails(e.stdout, f, size, r, last)
					}
					if last {
						break
					}
					again++
				}
				if want == "" && (r.place.near() || r.place.far()) {
					want = r.place.String()
				}
				got[f] = &r
				res[si][f] = append(res[si][f], r)
			}
			cell := func(f forwarder, v func(*vhostResult) float64, format string) string {
				if got[f] == nil || v(got[f]) <= 0 {
					return "-"
				}
				return fmt.Sprintf(format, v(got[f]))
			}
			rate := func(r *vhostResult) float64 { return r.perDir() }
			cost := func(r *vhostResult) float64 { return r.ownCore() }
			share := func(r *vhostResult) float64 { return 100 * r.share }
			ratio := func(f forwarder) string {
				if got[fwdHvnet] == nil || got[f] == nil || got[f].perDir() == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", got[fwdHvnet].perDir()/got[f].perDir())
			}
			loss := make([]string, nForwarders)
			place := make([]string, nForwarders)
			tries := make([]string, nForwarders)
			for f := range nForwarders {
				loss[f] = cell(f, func(r *vhostResult) float64 { return 100*r.loss + 1e-9 }, "%.1f")
				tries[f] = cell(f, func(r *vhostResult) float64 { return float64(r.tries) }, "%.0f")
				place[f] = "-"
				if got[f] != nil {
					place[f] = got[f].place.String()
				}
			}
			fmt.Fprintf(e.stdout, "%-5d %-5d | %6s %7s %5s | %5s %5s | %6s %7s %5s | %5s %5s %5s | %-14s %-16s %-11s %s\n", round+1, size,
				cell(fwdHvnet, rate, "%.2f"), cell(fwdTestpmd, rate, "%.2f"), cell(fwdOVS, rate, "%.2f"),
				ratio(fwdTestpmd), ratio(fwdOVS),
				cell(fwdHvnet, cost, "%.0f"), cell(fwdTestpmd, cost, "%.0f"), cell(fwdOVS, cost, "%.0f"),
				cell(fwdHvnet, share, "%.0f"), cell(fwdTestpmd, share, "%.0f"), cell(fwdOVS, share, "%.0f"),
				strings.Join(loss, "/"), strings.Join(place, "/"), strings.Join(tries, "/"), strings.Join(order, ","))
		}
	}
	if again > 0 {
		fmt.Fprintf(e.stdout, "\nruns measured again because the host moved the cores or placed them otherwise than for the round's first steady run: %d\n", again)
	}
	fmt.Fprintf(e.stdout, "\nmedian (min-max) over %d round(s); ratios are per round, hvnet over the peer measured in the same round\n", o.rounds)
	fmt.Fprintf(e.stdout, "ns/frame ratios: the peer's over hvnet's, per round (above 1: hvnet does a frame in less time on its own core)\n")
	printVhostSummary(e.stdout, o.sizes, res, func(int, int) bool { return true })
	// every selects the (size, round)s where ok holds for every
	// forwarder's run; count counts them.
	every := func(ok func(r *vhostResult) bool) func(si, round int) bool {
		return func(si, round int) bool {
			for _, f := range fwds {
				if !ok(&res[si][f][round]) {
					return false
				}
			}
			return true
		}
	}
	count := func(keep func(si, round int) bool) (n int) {
		for si := range o.sizes {
			for round := range o.rounds {
				if keep(si, round) {
					n++
				}
			}
		}
		return n
	}
	// On a shared host the rounds where every forwarder had its core
	// (nearly) to itself are the ones to quote: chosen by the CPU
	// shares alone, before any rate is looked at.
	quiet := every(func(r *vhostResult) bool { return r.share >= quietShare })
	n := count(quiet)
	fmt.Fprintf(e.stdout, "\nquiet rounds only (every forwarder at >= %.0f%% CPU share): %d of %d\n", 100*quietShare, n, o.rounds*len(o.sizes))
	if n > 0 {
		printVhostSummary(e.stdout, o.sizes, res, quiet)
	}
	// The same rounds split by where the host ran the two cores: every
	// forwarder near, or every one far (rounds with a forwarder moved or
	// in the other placement are in neither).
	for _, pl := range steadyPlacements {
		keep := every(func(r *vhostResult) bool { return r.share >= quietShare && pl.is(r.place) })
		n := count(keep)
		fmt.Fprintf(e.stdout, "\nquiet rounds with every forwarder's cores %s: %d\n", pl.name, n)
		if n > 0 {
			printVhostSummary(e.stdout, o.sizes, res, keep)
		}
	}
	if len(res) > 0 && len(res[0][fwdHvnet]) > 0 && len(fwds) > 1 {
		printPairSummary(e.stdout, o.sizes, res)
	}
	return 0
}

// printPairSummary prints hvnet's ratio to each peer over the rounds in
// which the two ran quiet and steady in one placement, near or far,
// whatever the third did: the per-round goals compare two
// forwarders, and a round's third (OVS's rate is the least steady) need
// not keep a pair's rounds out.
func printPairSummary(w io.Writer, sizes []int, res [][nForwarders][]vhostResult) {
	fmt.Fprintf(w, "\nhvnet against each peer, over the rounds where the two ran in one placement (both steady, >= %.0f%% CPU share):\n", 100*quietShare)
	fmt.Fprintf(w, "%-6s %-8s %-9s %-6s %-18s %-18s\n", "bytes", "peer", "placement", "rounds", "Mpps hvnet/peer", "ns/frame peer/hvnet")
	for si, size := range sizes {
		h := res[si][fwdHvnet]
		for _, peer := range []forwarder{fwdTestpmd, fwdOVS} {
			p := res[si][peer]
			if len(p) == 0 {
				continue
			}
			for _, pl := range steadyPlacements {
				var rate, cost []float64
				for i := range min(len(h), len(p)) {
					a, b := h[i], p[i]
					if a.share < quietShare || b.share < quietShare || !pl.is(a.place) || !pl.is(b.place) {
						continue
					}
					if a.perDir() > 0 && b.perDir() > 0 {
						rate = append(rate, a.perDir()/b.perDir())
					}
					if a.ownCore() > 0 && b.ownCore() > 0 {
						cost = append(cost, b.ownCore()/a.ownCore())
					}
				}
				fmt.Fprintf(w, "%-6d %-8s %-9s %-6d %-18s %-18s\n", size, peer, pl.name, max(len(rate), len(cost)), medianRange(rate), medianRange(cost))
			}
		}
	}
}

// settled reports whether a run in placement p stands: its cores held one
// placement (or were not probed), and it is the placement want the
// round's first steady run had ("" before one).
func settled(p placement, want string) bool {
	pl := p.String()
	return pl == "-" || pl != "moved" && (want == "" || pl == want)
}

// printRunDetails prints --cpu's line for one try of a run; last is false
// for a try measured again.
func printRunDetails(w io.Writer, f forwarder, size int, r vhostResult, last bool) {
	fmt.Fprintf(w, "      %s %d B: %.2f Mpps per direction (A->B %.2f, B->A %.2f), busy %.0f ns/frame at %.0f%% CPU share; generator busy %.0f ns/frame",
		f, size, r.perDir(), r.ab, r.ba, r.cost, 100*r.share, r.genCost)
	if f == fwdHvnet {
		fmt.Fprintf(w, "; hvnet's CPU time %.0f ns/frame, %.0f%% of a core", r.cpu, 100*r.busy)
	}
	fmt.Fprintf(w, "; cores' round trip %.0f ns before, %.0f after, rate jump %.0f%% (%s)",
		float64(r.place.before.Nanoseconds()), float64(r.place.after.Nanoseconds()), 100*r.place.jump, r.place)
	if !last {
		fmt.Fprintf(w, "; try %d, measured again", r.tries)
	}
	fmt.Fprintln(w)
}

// steadyPlacements are the two placements a run can hold throughout,
// with their tests: the summaries' selections.
var steadyPlacements = []struct {
	name string
	is   func(placement) bool
}{{"near", placement.near}, {"far", placement.far}}

// quietShare is the CPU share above which a forwarder's run counts as
// undisturbed by the rest of the host.
const quietShare = 0.9

// printVhostSummary prints medians and ranges per size over the rounds
// keep selects: rates, busy time per frame and their per-round ratios.
func printVhostSummary(w io.Writer, sizes []int, res [][nForwarders][]vhostResult, keep func(si, round int) bool) {
	fmt.Fprintf(w, "%-6s %-9s %-18s %-18s %-18s %-18s %-18s\n", "bytes", "measure", "hvnet", "testpmd", "OVS", "hvnet/testpmd", "hvnet/OVS")
	for si, size := range sizes {
		col := func(f forwarder, v func(vhostResult) float64) string {
			var x []float64
			for i, r := range res[si][f] {
				if keep(si, i) && v(r) > 0 {
					x = append(x, v(r))
				}
			}
			return medianRange(x)
		}
		ratio := func(f forwarder, v func(vhostResult) float64, inverse bool) string {
			h, p := res[si][fwdHvnet], res[si][f]
			var x []float64
			for i := range min(len(h), len(p)) {
				a, b := v(h[i]), v(p[i])
				if inverse {
					a, b = b, a
				}
				if keep(si, i) && a > 0 && b > 0 {
					x = append(x, a/b)
				}
			}
			return medianRange(x)
		}
		rate := func(r vhostResult) float64 { return r.perDir() }
		cost := func(r vhostResult) float64 { return r.ownCore() }
		fmt.Fprintf(w, "%-6d %-9s %-18s %-18s %-18s %-18s %-18s\n", size, "Mpps",
			col(fwdHvnet, rate), col(fwdTestpmd, rate), col(fwdOVS, rate), ratio(fwdTestpmd, rate, false), ratio(fwdOVS, rate, false))
		fmt.Fprintf(w, "%-6d %-9s %-18s %-18s %-18s %-18s %-18s\n", size, "ns/frame",
			col(fwdHvnet, cost), col(fwdTestpmd, cost), col(fwdOVS, cost), ratio(fwdTestpmd, cost, true), ratio(fwdOVS, cost, true))
	}
}

// medianRange formats "median (min-max)", or "-" for no values.
func medianRange(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if m := medianF(v); m >= 100 {
		return fmt.Sprintf("%.0f (%.0f-%.0f)", m, lo, hi)
	} else {
		return fmt.Sprintf("%.2f (%.2f-%.2f)", m, lo, hi)
	}
}

// benchOVSSetup prepares OVS-DPDK for the run: hugepages, its database and
// bridge (ovs-vswitchd itself starts per measurement). errOVSMissing:
// not installed. The hugepage changes are undone by the returned ovsDPDK's
// Close.
func benchOVSSetup(e *env, o benchVhostOpts) (*ovsDPDK, error) {
	if err := ovsInstalled(); err != nil {
		return nil, err
	}
	restore, err := ensureHugepages(e.stdout)
	if err != nil {
		return nil, err
	}
	x, err := startOVS(o.fwdCore, o.verbose)
	if err != nil {
		restore()
		return nil, err
	}
	x.undo = restore
	return x, nil
}

// benchForwarder measures one forwarder at one size.
func benchForwarder(e *env, o benchVhostOpts, f forwarder, size int, ovs *ovsDPDK) (vhostResult, error) {
	// A failed probe (a core taken away) leaves the placement unknown
	// and the measurement as it is.
	before, _ := coreRoundTrip(o.fwdCore, o.genCore)
	var r vhostResult
	var err error
	switch f {
	case fwdHvnet:
		r, err = benchHvnet(e, o, size)
	case fwdTestpmd:
		r, err = benchDPDK(e, o, size)
	default:
		r, err = benchOVS(e, o, size, ovs)
	}
	r.place.before = before
	r.place.after, _ = coreRoundTrip(o.fwdCore, o.genCore)
	return r, err
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
// slice.) DPDK 22.11's flowgen ignores --eth-peer: every frame on both
// ports goes from 00:01:02:03:04:00 to 00:01:02:03:04:01
// (app/test-pmd/flowgen.c, cfg_ether_src and cfg_ether_dst), so a
// learning switch floods each frame to the one other port and sees the
// source move between the ports; the 1024 flows differ in the destination
// IP address. --txpkts counts the FCS: 64 gives 60-byte frames.
func genSink(o benchVhostOpts, size int, sockA, sockB string) (*dpdktest.Testpmd, error) {
	main := 0
	if o.genCore == 0 {
		main = 1
	}
	const macA, macB = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
	p, err := dpdktest.Start(dpdktest.Options{Cores: []int{main, o.genCore}, Log: o.verbose,
		Vdevs: []string{"net_virtio_user0,path=" + sockA + ",queues=1,queue_size=1024,mac=" + macA,
			"net_virtio_user1,path=" + sockB + ",queues=1,queue_size=1024,mac=" + macB},
		Args: []string{"--forward-mode=flowgen", "--txpkts=" + strconv.Itoa(size), "--record-core-cycles",
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

// rx2 returns both ports' counters: RX (frames the forwarder delivered
// to the port) and TX summed.
func rx2(p *dpdktest.Testpmd) (rxA, rxB, tx uint64, err error) {
	var rx [2]uint64
	for port := range 2 {
		r, t, err := p.Stats(port)
		if err != nil {
			return 0, 0, 0, err
		}
		rx[port], tx = r, tx+t
	}
	return rx[0], rx[1], tx, nil
}

// measure starts the generator, lets it warm up for a second and returns
// the rate received back in each direction and the fraction of generated
// frames that did not arrive. window, if not nil, is called as the
// measurement window opens (false) and closes (true).
func measure(o benchVhostOpts, p *dpdktest.Testpmd, fwdPid int, window func(end bool)) (vhostResult, error) {
	p.Cmd("start")
	time.Sleep(time.Second)
	ta := time.Now() // the slices' first start: see below
	a0, b0, tx0, err := rx2(p)
	if err != nil {
		return vhostResult{}, err
	}
	run0, wait0 := schedstat(fwdPid)
	t0, cpu0 := time.Now(), processCPU()
	if window != nil {
		window(false)
	}
	// The window in slices of about half a second (two at least): how
	// much the rate changes between them tells a run the host moved the
	// cores in (placement.jump). A slice's rate is port A's count (read
	// first) over the times taken just before asking for the counts:
	// with hvnet in this process, this goroutine may wait for the
	// forwarder's core after a read returns and between the two ports'
	// reads, but not between taking the time and asking.
	slices := max(2, int(math.Round(o.seconds/0.5)))
	a1, b1, tx1 := a0, b0, tx0
	lo, hi, prev := math.Inf(1), 0.0, ta
	for i := range slices {
		time.Sleep(time.Until(t0.Add(time.Duration(float64(i+1) / float64(slices) * o.seconds * float64(time.Second)))))
		now := time.Now()
		a, b, tx, err := rx2(p)
		if err != nil {
			return vhostResult{}, err
		}
		rate := float64(a-a1) / now.Sub(prev).Seconds()
		lo, hi = min(lo, rate), max(hi, rate)
		a1, b1, tx1, prev = a, b, tx, now
	}
	if window != nil {
		window(true)
	}
	run1, wait1 := schedstat(fwdPid)
	el, cpu := time.Since(t0).Seconds(), (processCPU() - cpu0).Seconds()
	p.Cmd("stop")
	// Port A (0) receives what the forwarder moved from B, and B (1)
	// what it moved from A.
	r := vhostResult{ab: float64(b1-b0) / el / 1e6, ba: float64(a1-a0) / el / 1e6, busy: cpu / el}
	if lo > 0 {
		r.place.jump = hi/lo - 1
	} else if hi > 0 {
		r.place.jump = math.Inf(1) // stopped in one slice, moving in another
	}
	r.frames = (a1 - a0) + (b1 - b0)
	if tx1 > tx0 {
		r.loss = max(0, 1-float64(r.frames)/float64(tx1-tx0))
	}
	if r.frames > 0 {
		r.cpu = cpu * 1e9 / float64(r.frames)
	}
	if run, wait := run1-run0, wait1-wait0; run > 0 {
		r.share = float64(run) / float64(run+wait)
	}
	// "stop" prints flowgen's cycles per packet sent (since "start").
	if c, mhz, err := p.ExpectCycles(5 * time.Second); err == nil && mhz > 0 {
		r.genCost, r.mhz = c/mhz*1e3, mhz
	}
	return r, nil
}

// schedstat sums the time the threads of process pid (0: this one) spent
// on a CPU and waiting for one (Documentation/scheduler/sched-stats.rst,
// /proc/PID/task/TID/schedstat: on-CPU ns, run-queue wait ns, slices).
func schedstat(pid int) (run, wait time.Duration) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid) + "/task"
	}
	tasks, _ := os.ReadDir(dir)
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		r, _ := strconv.ParseInt(f[0], 10, 64)
		w, _ := strconv.ParseInt(f[1], 10, 64)
		run, wait = run+time.Duration(r), wait+time.Duration(w)
	}
	return run, wait
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchHvnet runs hvnet's switch with two vhost-user ports in this process,
// pinned to the forwarder core.
func benchHvnet(e *env, o benchVhostOpts, size int) (vhostResult, error) {
	dir, err := os.MkdirTemp("", "hvnet-bench-vhost-")
	if err != nil {
		return vhostResult{}, err
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
			return vhostResult{}, err
		}
		defer p.Remove()
		ports = append(ports, p)
		go p.Run(ctx)
	}
	unpin, err := pinProcess(o.fwdCore)
	if err != nil {
		return vhostResult{}, err
	}
	defer unpin()
	// One P for the one core: Go sizes GOMAXPROCS from the affinity at
	// start (hvnet started with taskset -c N gets 1), and this process
	// was pinned after. With two Ps the two ports' ring workers are two
	// busy threads that the kernel time-slices on the core (a direction
	// stalls for a slice at a time), and on a loaded host they get two
	// shares of the core where testpmd's and OVS's one polling thread get
	// one. With one P they take turns after every batch (busyPoll's
	// Gosched), as one DPDK lcore polls its ports in turn.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	gen, err := genSink(o, size, filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"))
	if err != nil {
		return vhostResult{}, err
	}
	defer gen.Close()
	for _, p := range ports {
		if !p.Connected() {
			return vhostResult{}, errors.New("port " + p.Name() + " has no frontend")
		}
	}
	var busy int64 // the ports' PollBusyNanos over the window
	r, err := measure(o, gen, 0, func(end bool) {
		sign := int64(-1)
		if end {
			sign = 1
		}
		for _, p := range ports {
			busy += sign * p.NotifyStats().PollBusyNanos
		}
	})
	if err == nil && r.frames > 0 {
		r.cost = float64(busy) / float64(r.frames)
	}
	return r, err
}

// benchDPDK puts testpmd with two net_vhost ports (io forwarding) where
// hvnet was.
func benchDPDK(e *env, o benchVhostOpts, size int) (vhostResult, error) {
	dir, err := os.MkdirTemp("", "hvnet-bench-vhost-")
	if err != nil {
		return vhostResult{}, err
	}
	defer os.RemoveAll(dir)
	sa, sb := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	main := 1
	if o.fwdCore == 1 {
		main = 0
	}
	fwd, err := dpdktest.Start(dpdktest.Options{Cores: []int{main, o.fwdCore}, Log: o.verbose,
		Vdevs: []string{"net_vhost0,iface=" + sa + ",queues=1", "net_vhost1,iface=" + sb + ",queues=1"},
		Args:  []string{"--forward-mode=io", "--record-core-cycles"}})
	if err != nil {
		return vhostResult{}, err
	}
	defer fwd.Close()
	if err := fwd.WaitReady(60 * time.Second); err != nil {
		return vhostResult{}, err
	}
	fwd.Cmd("start")
	gen, err := genSink(o, size, sa, sb)
	if err != nil {
		return vhostResult{}, err
	}
	defer gen.Close()
	r, err := measure(o, gen, fwd.Pid(), nil)
	if err != nil {
		return r, err
	}
	// Cycles per packet forwarded since "start" (warm-up included).
	if c, mhz, err := fwd.FwdCycles(5 * time.Second); err == nil && mhz > 0 {
		r.cost = c / mhz * 1e3
	}
	return r, nil
}

// benchOVS starts ovs-vswitchd, measures it and stops it again: its PMD
// would otherwise poll the forwarding core during the other forwarders'
// runs.
func benchOVS(e *env, o benchVhostOpts, size int, ovs *ovsDPDK) (vhostResult, error) {
	if err := ovs.StartSwitch(); err != nil {
		return vhostResult{}, err
	}
	defer ovs.StopSwitch()
	sa, sb := ovs.Sockets()
	gen, err := genSink(o, size, sa, sb)
	if err != nil {
		return vhostResult{}, err
	}
	defer gen.Close()
	r, err := measure(o, gen, ovs.Pid(), nil)
	if err != nil {
		return r, err
	}
	st := ovs.Stats()
	if o.verbose != nil {
		fmt.Fprint(o.verbose, st)
	}
	// Processing cycles per packet since ovs-vswitchd started (TSC
	// cycles of PMD iterations that received packets), at the TSC rate
	// the generator's testpmd reported.
	if c := ovsCyclesPerPacket(st); c > 0 && r.mhz > 0 {
		r.cost = c / r.mhz * 1e3
	}
	return r, nil
}
