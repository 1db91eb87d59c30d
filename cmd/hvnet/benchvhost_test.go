package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// runBenchVhost runs "hvnet bench vhost" in this process with args, or
// with HVNET_BENCH_ARGS for real runs.
func runBenchVhost(t *testing.T, args ...string) string {
	t.Helper()
	if a := os.Getenv("HVNET_BENCH_ARGS"); a != "" {
		args = strings.Fields(a)
	}
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, log: hclog.New(&hclog.LoggerOptions{Output: &errb, Level: hclog.Warn})}
	if st := cmdBenchVhost(e, args); st != 0 {
		t.Fatalf("status %d\n%s\n%s", st, out.String(), errb.String())
	}
	t.Logf("\n%s", out.String())
	if os.Getenv("HVNET_BENCH_ARGS") != "" {
		t.Logf("stderr:\n%s", errb.String())
	}
	return out.String()
}

// summaryRow returns the columns of the summary row for size and
// measure ("Mpps" or "ns/frame"), over all rounds (the first such line):
// bytes, measure, hvnet, testpmd, OVS, hvnet/testpmd, hvnet/OVS, each
// "median (min-max)" or "-".
func summaryRow(t *testing.T, out, size, measure string) []string {
	t.Helper()
	var row []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != size || f[1] != measure || row != nil {
			continue
		}
		row = []string{}
		for _, x := range f {
			if strings.HasPrefix(x, "(") && len(row) > 0 {
				row[len(row)-1] += " " + x
			} else {
				row = append(row, x)
			}
		}
	}
	if row == nil {
		t.Fatalf("no %s-byte %s row:\n%s", size, measure, out)
	}
	return row
}

// A short run of "hvnet bench vhost" produces a row per size with hvnet's
// and testpmd's rates (HVNET_BENCH_ARGS overrides the arguments, for real
// runs: HVNET_BENCH_ARGS="--seconds 10 --rounds 6" go test -run BenchVhost -v).
func TestBenchVhostSmoke(t *testing.T) {
	out := runBenchVhost(t, "--seconds", "0.5", "--sizes", "64", "--skip-ovs")
	if os.Getenv("HVNET_BENCH_ARGS") != "" {
		return
	}
	for _, m := range []string{"Mpps", "ns/frame"} {
		if row := summaryRow(t, out, "64", m); len(row) != 7 || row[2] == "-" || row[3] == "-" || row[4] != "-" || row[5] == "-" {
			t.Errorf("%s: want hvnet and testpmd measured, OVS not, got %q:\n%s", m, row, out)
		}
	}
	// The pair summary has hvnet against testpmd, near and far, and no
	// OVS row.
	rows := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "64" && (f[2] == "near" || f[2] == "far") {
			rows[f[1]+" "+f[2]] = true
		}
	}
	if !rows["testpmd near"] || !rows["testpmd far"] || rows["OVS near"] || rows["OVS far"] {
		t.Errorf("pair summary rows %v, want testpmd near and far only:\n%s", rows, out)
	}
	// The round's row says where the host ran the two cores for each
	// forwarder measured (near, far or moved: the probe ran), none for OVS.
	// And how many times each was measured: 1 to 1+--retries (2).
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "1" && f[1] == "64" {
			place := strings.Split(f[len(f)-3], "/")
			if len(place) != 3 || place[0] == "-" || place[1] == "-" || place[2] != "-" {
				t.Errorf("round 1: cores h/t/O %q, want a placement for hvnet and testpmd:\n%s", f[len(f)-3], out)
			}
			tries := strings.Split(f[len(f)-2], "/")
			if len(tries) != 3 || tries[2] != "-" {
				t.Fatalf("round 1: tries h/t/O %q, want counts for hvnet and testpmd:\n%s", f[len(f)-2], out)
			}
			for _, n := range tries[:2] {
				if n != "1" && n != "2" && n != "3" {
					t.Errorf("round 1: tries h/t/O %q, want 1-3 each for hvnet and testpmd:\n%s", f[len(f)-2], out)
				}
			}
			return
		}
	}
	t.Errorf("no row for round 1:\n%s", out)
}

// OVS-DPDK alone as the forwarder, two rounds (ovs-vswitchd started and
// stopped twice): a row with its rate. Skipped where OVS-DPDK cannot run
// (not installed, or no hugepages and not root).
func TestBenchVhostOVSSmoke(t *testing.T) {
	if err := ovsCanRun(); err != nil {
		t.Skipf("OVS-DPDK cannot run here: %v", err)
	}
	if testing.Short() {
		t.Skip("starts OVS-DPDK twice (seconds each)")
	}
	out := runBenchVhost(t, "--seconds", "0.5", "--sizes", "64", "--rounds", "2", "--retries", "0", "--skip-hvnet", "--skip-dpdk")
	for _, m := range []string{"Mpps", "ns/frame"} {
		if row := summaryRow(t, out, "64", m); len(row) != 7 || row[2] != "-" || row[3] != "-" || row[4] == "-" {
			t.Errorf("%s: want OVS measured only, got %q:\n%s", m, row, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "OVS-DPDK not measured") {
			t.Errorf("OVS skipped: %s", l)
		}
	}
}

// Bad arguments are refused before anything starts, naming the flag.
func TestBenchVhostUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retries", "-1"}, "--retries -1"},
		{[]string{"--rounds", "0"}, "--rounds 0"},
		{[]string{"--sizes", "64,59"}, `size "59"`},
		{[]string{"--sizes", "64,x"}, `size "x"`},
		{[]string{"--skip-hvnet", "--skip-dpdk", "--skip-ovs"}, "every forwarder skipped"},
	} {
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb, log: hclog.New(&hclog.LoggerOptions{Output: &errb, Level: hclog.Warn})}
		if st := cmdBenchVhost(e, tc.args); st != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: status %d, stderr %q; want 2 and %q", tc.args, st, errb.String(), tc.want)
		}
	}
}

// The pair summary takes a round for hvnet and a peer when both ran quiet
// and steady in the same placement, whatever else ran in the round.
func TestPairSummary(t *testing.T) {
	ns := time.Nanosecond
	near, far := placement{80 * ns, 90 * ns, 0.05}, placement{400 * ns, 410 * ns, 0.05}
	moved := placement{80 * ns, 90 * ns, 0.5}
	run := func(mpps float64, p placement, share float64) vhostResult {
		return vhostResult{ab: mpps, ba: mpps, cost: 1000 / mpps, share: share, place: p}
	}
	var res [1][nForwarders][]vhostResult
	for _, r := range []struct {
		h, t    float64
		hp, tp  placement
		hs, tsh float64
	}{
		{4, 5, near, near, 1, 1},    // 0.80
		{5, 5, near, near, 1, 1},    // 1.00
		{5, 4, near, near, 1, 0.95}, // 1.25
		{3, 2, far, far, 1, 1},      // 1.50, far
		{2, 4, near, far, 1, 1},     // in neither
		{2, 4, moved, near, 1, 1},   // in neither
		{2, 4, near, near, 1, 0.5},  // testpmd not quiet
	} {
		res[0][fwdHvnet] = append(res[0][fwdHvnet], run(r.h, r.hp, r.hs))
		res[0][fwdTestpmd] = append(res[0][fwdTestpmd], run(r.t, r.tp, r.tsh))
	}
	var b bytes.Buffer
	printPairSummary(&b, []int{64}, res[:])
	want := map[string]string{
		// ns/frame: busy time times the share (testpmd's 0.95: 1.25*0.95).
		"near": "3 1.00 (0.80-1.25) 1.00 (0.80-1.19)",
		"far":  "1 1.50 (1.50-1.50) 1.50 (1.50-1.50)",
	}
	got := map[string]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[0] == "64" {
			if f[1] != "testpmd" {
				t.Errorf("a row for %q, which was not measured:\n%s", f[1], b.String())
			}
			got[f[2]] = strings.Join(f[3:], " ")
		}
	}
	for pl, w := range want {
		if got[pl] != w {
			t.Errorf("%s: %q, want %q:\n%s", pl, got[pl], w, b.String())
		}
	}
}
