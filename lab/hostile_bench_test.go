package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"hvnet/vmtest"
)

const (
	hostileWindow = 8 * time.Second // attack in odd windows of wall-clock time
	hostileRuns   = 8               // victim iperf3 runs, one per window
)

// TestBenchHostile measures what a hostile guest costs its neighbours: a
// victim pair runs iperf3 TCP (-t 5) once per 8-second window of
// wall-clock time, while a third guest on the same switch runs the hostile
// driver (images/agent/hostile.go) in the odd windows only and leaves its
// device reset in the even ones. One lab run, same guests, both conditions
// interleaved; it logs the medians, ranges and the ratio
// disturbed/undisturbed (goal: >= 0.9).
func TestBenchHostile(t *testing.T) {
	if os.Getenv(EnvBench) == "" && !vmtest.InL1() {
		t.Skipf("benchmark: set %s=1 to run", EnvBench)
	}
	if vmtest.Nest(t, vmtest.NestOptions{MemMiB: 3072, Timeout: 8 * time.Minute}) {
		return
	}
	set := vmtest.Images(t)
	w := hostileWindow.String()
	srv := GuestConfig{Name: "srv", Addr: netip.MustParsePrefix("10.0.0.1/24"),
		Script: fmt.Sprintf("for i in $(seq 1 %d); do iperf3 -s -1; done\n", hostileRuns)}
	// Each run waits for the next window, starts an eighth into it and
	// ends well before it does; the tag says whether it was attacked.
	cli := GuestConfig{Name: "cli", Addr: netip.MustParsePrefix("10.0.0.2/24"),
		Script: waitPing("10.0.0.1") + fmt.Sprintf(`for r in $(seq 1 %d); do
  p=$(/init hostile -window %s -waitwindow)
  for i in 1 2 3; do
    if iperf3 -c 10.0.0.1 -t 5 -J > /tmp/r.json; then break; fi
  done
  echo BEGIN-run$r-p$p
  cat /tmp/r.json
  echo END-run$r-p$p
done
`, hostileRuns, w)}
	d := time.Duration(hostileRuns+3) * hostileWindow
	bad := GuestConfig{Name: "bad", Cmdline: hostileCmdline,
		Script: fmt.Sprintf("/init hostile -d %s -pace 400ms -window %s\n", d, w)}
	defer watchdog(t, 5*time.Minute)()
	res, err := Run(context.Background(), Config{Kernel: set.Kernel, Initrd: set.Initrd, Console: tlog{t},
		Guests: []GuestConfig{srv, cli, bad}, Timeout: 6 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Result{}
	for _, r := range res {
		by[r.Name] = r
		t.Logf("%s: status %d err %v\n  net %+v\n  pci %+v", r.Name, r.Status, r.Err, r.Net, r.PCI)
	}
	h, err := parseHostile(by["bad"].Console)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hostile driver: %+v", h)
	var quiet, attacked []float64
	for r := 1; r <= hostileRuns; r++ {
		for p, into := range map[string]*[]float64{"0": &quiet, "1": &attacked} {
			out, err := between(by["cli"].Console, fmt.Sprintf("run%d-p%s", r, p))
			if err != nil {
				continue
			}
			bps, err := iperfBPS(out)
			if err != nil {
				t.Logf("run %d: %v", r, err)
				continue
			}
			*into = append(*into, bps)
			t.Logf("BENCH run %d %s: %.1f Mbit/s", r, map[string]string{"0": "undisturbed", "1": "disturbed"}[p], bps/1e6)
		}
	}
	if len(quiet) == 0 || len(attacked) == 0 {
		t.Fatalf("runs: %d undisturbed, %d disturbed: need both", len(quiet), len(attacked))
	}
	for _, r := range []Result{by["srv"], by["cli"]} {
		checkVictim(t, r)
	}
	mq, ma := median(quiet), median(attacked)
	t.Logf("BENCH hostile-neighbour iperf3 TCP: undisturbed n=%d median %.1f Mbit/s [%s]; disturbed n=%d median %.1f Mbit/s [%s]; ratio %.2f (goal >= 0.90); hostile rounds %d, needs-reset %d",
		len(quiet), mq/1e6, span(quiet), len(attacked), ma/1e6, span(attacked), ma/mq, h.Rounds, h.NeedsReset)
}

// span formats min..max in Mbit/s.
func span(v []float64) string {
	return strings.TrimSpace(fmt.Sprintf("%.1f..%.1f", slices.Min(v)/1e6, slices.Max(v)/1e6))
}
