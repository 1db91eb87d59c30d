package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// benchEnv runs a bench command in this process; the processes it
// starts (this test binary) run hvnet's main.
func benchEnv(t *testing.T) (*env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	t.Setenv(mainEnv, "1")
	var out, errb bytes.Buffer
	return &env{stdout: &out, stderr: &errb, log: hclog.New(&hclog.LoggerOptions{Output: &errb, Level: hclog.Warn})}, &out, &errb
}

// A short run of "hvnet bench vxlan" carries the generator's frames to
// the far endpoint through both paths: Linux's bridge and vxlan devices,
// and hvnet's uplink and vxlan ports (HVNET_BENCH_ARGS overrides the
// arguments, for real runs).
func TestBenchVxlanSmoke(t *testing.T) {
	e, out, errb := benchEnv(t)
	args := []string{"--seconds", "0.5", "--sizes", "64", "--rounds", "1"}
	if a := os.Getenv("HVNET_BENCH_ARGS"); a != "" {
		args = strings.Fields(a)
	}
	if st := cmdBenchVxlan(e, args); st != 0 {
		t.Fatalf("status %d\n%s\n%s", st, out.String(), errb.String())
	}
	t.Logf("\n%s", out.String())
	delivered := map[string]float64{}
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == "64" && (f[2] == "kernel" || f[2] == "hvnet") {
			d, err := strconv.ParseFloat(f[4], 64)
			if err != nil {
				t.Fatalf("row %q: %v", l, err)
			}
			delivered[f[2]] += d
		}
	}
	for _, path := range []string{"kernel", "hvnet"} {
		if delivered[path] <= 0 {
			t.Errorf("%s: nothing delivered\n%s\n%s", path, out.String(), errb.String())
		}
	}
}

// A short run of "hvnet bench evpn" sees every MAC that appears on host A
// arrive at host B's vxlan port and leave it again.
func TestBenchEVPNSmoke(t *testing.T) {
	e, out, errb := benchEnv(t)
	if st := cmdBenchEVPN(e, []string{"--macs", "300", "--rounds", "1"}); st != 0 {
		t.Fatalf("status %d\n%s\n%s", st, out.String(), errb.String())
	}
	t.Logf("\n%s", out.String())
	for _, want := range []string{"\nall   appear ", "\nall   withdraw ", "bytes per remote MAC"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the output:\n%s", want, out.String())
		}
	}
}
