package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hvnet/hvnet/lab"
	vswitch "github.com/hvnet/hvnet/switch"
)

// Reach is one cell of the reachability matrix.
type Reach struct {
	From, To string
	Expect   bool // reachable expected (same VLAN)
	Got      bool
	Tested   bool // false: no result (the guest died before)
}

// Throughput is one guest's iperf3 result.
type Throughput struct {
	Guest string
	VLAN  uint16
	Rate  int64   // configured, bits per second (0: unlimited)
	BPS   float64 // measured over the whole run (the one-time burst in it)
	// Steady is the second half of the run: the shaper's rate without
	// its one-time burst.
	Steady float64
	Err    error
}

// Report is the outcome of a demo run.
type Report struct {
	Guests     []lab.Result
	Reach      []Reach
	Throughput []Throughput
	Counters   []vswitch.PortCounters
	PcapFrames int
	Elapsed    time.Duration
	Failures   []string // failed expectations; empty when all held
}

// Rate-limited throughput must land within these fractions of the rate.
// The shaper's one-time burst (128 KiB) over the whole 4-second run adds
// an eighth of a 2 Mbit/s rate on top; emulation costs below it. Its
// steady state (the second half) may not pass the rate by more than
// steadyHigh (iperf3's intervals end on the receiver's clock).
const (
	rateLow    = 0.4
	rateHigh   = 1.5
	steadyHigh = 1.05
)

func report(specs []guestSpec, res []lab.Result, physReach []bool, rate int64) *Report {
	r := &Report{Guests: res}
	fail := func(f string, a ...any) { r.Failures = append(r.Failures, fmt.Sprintf(f, a...)) }
	by := map[string]lab.Result{}
	for _, g := range res {
		by[g.Name] = g
		if g.Status != 0 || g.Err != nil {
			fail("guest %s ended with status %d (error %v)", g.Name, g.Status, g.Err)
		}
	}
	for _, g := range specs {
		p := parseConsole(by[g.name].Console)
		for _, t := range targets(g, specs) {
			got, ok := p.reach[t.name]
			c := Reach{From: g.name, To: t.name, Expect: t.expect, Got: got, Tested: ok}
			r.Reach = append(r.Reach, c)
			switch {
			case !ok:
				fail("%s -> %s: not tested (no DEMO-REACH line)", g.name, t.name)
			case got != t.expect:
				fail("%s -> %s (%s): %s, expected %s", g.name, t.name, t.addr, word(got), word(t.expect))
			}
		}
		tp := Throughput{Guest: g.name, VLAN: g.vlan, Rate: g.rate, BPS: p.bps, Steady: p.steady, Err: p.err}
		r.Throughput = append(r.Throughput, tp)
		switch {
		case p.err != nil:
			fail("%s: iperf3: %v", g.name, p.err)
		case p.bps <= 0:
			fail("%s: iperf3 moved nothing", g.name)
		case g.rate > 0 && (p.bps < rateLow*float64(g.rate) || p.bps > rateHigh*float64(g.rate)):
			fail("%s: %.2f Mbit/s, want %.0f%%..%.0f%% of its %.2f Mbit/s limit", g.name, p.bps/1e6,
				rateLow*100, rateHigh*100, float64(g.rate)/1e6)
		case g.rate > 0 && p.steady > steadyHigh*float64(g.rate):
			fail("%s: %.2f Mbit/s in the steady state, more than its %.2f Mbit/s limit", g.name, p.steady/1e6, float64(g.rate)/1e6)
		}
	}
	for i, g := range specs {
		r.Reach = append(r.Reach, Reach{From: "phys", To: g.name, Expect: true, Got: physReach[i], Tested: true})
		if !physReach[i] {
			fail("phys -> %s (%s): unreachable, expected reachable", g.name, g.addr.Addr())
		}
	}
	return r
}

func word(ok bool) string {
	if ok {
		return "reachable"
	}
	return "unreachable"
}

// Print writes the summary.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintln(w, "reachability (rows ping columns; ok = reply, -- = none; expected in brackets, ! = mismatch):")
	fmt.Fprintln(w, "  g1, g2: VLAN 10; g3: VLAN 20 (with an address in VLAN 10's subnet); phys: the physical host on the uplink trunk")
	printMatrix(w, r.Reach)

	fmt.Fprintf(w, "\nthroughput (iperf3 -R -t %d from the physical host into each guest; the whole run includes the shaper's one-time burst of 128 KiB, the steady state is its last %d s):\n", iperfSecs, iperfSecs/2)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  guest\tvlan\tconfigured rate\twhole run\tsteady state\t")
	for _, t := range r.Throughput {
		rate := "unlimited"
		if t.Rate > 0 {
			rate = fmt.Sprintf("%.2f Mbit/s", float64(t.Rate)/1e6)
		}
		got, steady := fmt.Sprintf("%.2f Mbit/s", t.BPS/1e6), fmt.Sprintf("%.2f Mbit/s", t.Steady/1e6)
		switch {
		case t.Err != nil:
			got, steady = "error: "+t.Err.Error(), ""
		case t.Rate > 0:
			got += fmt.Sprintf(" (%.0f%%)", 100*t.BPS/float64(t.Rate))
			steady += fmt.Sprintf(" (%.0f%%)", 100*t.Steady/float64(t.Rate))
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t\n", t.Guest, t.VLAN, rate, got, steady)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nswitch port counters:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  port\trx packets\trx bytes\ttx packets\ttx bytes\tdrops\t")
	for _, c := range r.Counters {
		var d []string
		for i, n := range c.Drops {
			if n != 0 {
				d = append(d, fmt.Sprintf("%s=%d", vswitch.DropReason(i), n))
			}
		}
		if len(d) == 0 {
			d = []string{"0"}
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%s\t\n", c.Name, c.RxPackets, c.RxBytes, c.TxPackets, c.TxBytes, strings.Join(d, " "))
	}
	tw.Flush()
}

func mark(ok bool) string {
	if ok {
		return "ok"
	}
	return "--"
}

// PrintResult writes the verdict: every failed expectation, or that all held.
func (r *Report) PrintResult(w io.Writer) {
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "\nresult: every expectation held (guests ran for %.1f s)\n", r.Elapsed.Seconds())
		return
	}
	fmt.Fprintf(w, "\nresult: %d expectation(s) failed:\n", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintln(w, "  FAIL "+f)
	}
}

// printMatrix writes the reachability matrix of reach: a row per pinger,
// a column per target, in their first appearance's order.
func printMatrix(w io.Writer, reach []Reach) {
	names := []string{}
	seen := map[string]bool{}
	for _, c := range reach {
		for _, n := range []string{c.From, c.To} {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	cell := map[[2]string]Reach{}
	for _, c := range reach {
		cell[[2]string{c.From, c.To}] = c
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "  from\\to\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw)
	for _, from := range names {
		fmt.Fprintf(tw, "  %s\t", from)
		for _, to := range names {
			c, ok := cell[[2]string{from, to}]
			switch {
			case from == to:
				fmt.Fprint(tw, "\\\t")
			case !ok:
				fmt.Fprint(tw, "\t")
			case !c.Tested:
				fmt.Fprintf(tw, "?? [%s]!\t", mark(c.Expect))
			case c.Got != c.Expect:
				fmt.Fprintf(tw, "%s [%s]!\t", mark(c.Got), mark(c.Expect))
			default:
				fmt.Fprintf(tw, "%s [%s]\t", mark(c.Got), mark(c.Expect))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
