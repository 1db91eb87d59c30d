package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// A short run of "hvnet bench vhost" produces a row per size with both
// rates (HVNET_BENCH_ARGS overrides the arguments, for real runs:
// HVNET_BENCH_ARGS="--seconds 10" go test -run BenchVhost -v).
func TestBenchVhostSmoke(t *testing.T) {
	args := []string{"--seconds", "0.5", "--sizes", "64"}
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
	if !strings.Contains(out.String(), "\n64 ") {
		t.Errorf("no 64-byte row:\n%s", out.String())
	}
}
