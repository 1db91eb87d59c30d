package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

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
