package vhost

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
)

// testpmd drives one interactive dpdk-testpmd process.
type testpmd struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	log   strings.Builder
}

// startTestpmd starts dpdk-testpmd with a virtio-user port on each socket
// (DPDK as the vhost-user frontend). extra are testpmd (not EAL) flags.
func startTestpmd(t testing.TB, socks []string, extra ...string) *testpmd {
	t.Helper()
	p := spawnTestpmd(t, socks, extra...)
	p.ready()
	return p
}

// ready waits for testpmd to have started its ports.
func (p *testpmd) ready() {
	p.t.Helper()
	p.expect("Checking link statuses", "port start")
}

// spawnTestpmd starts testpmd without waiting for its ports.
func spawnTestpmd(t testing.TB, socks []string, extra ...string) *testpmd {
	t.Helper()
	return spawnTestpmdQ(t, socks, 1, extra...)
}

// spawnTestpmdQ is spawnTestpmd with queues queue pairs a port.
func spawnTestpmdQ(t testing.TB, socks []string, queues int, extra ...string) *testpmd {
	t.Helper()
	bin, err := exec.LookPath("dpdk-testpmd")
	if err != nil {
		t.Fatalf("dpdk-testpmd not installed (apt-get install dpdk-dev librte-net-vhost23 librte-net-virtio23 librte-mempool-ring23): %v", err)
	}
	args := []string{"-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--log-level", "*:notice",
		"--file-prefix", fmt.Sprintf("hvnet-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	for i, s := range socks {
		args = append(args, "--vdev", fmt.Sprintf("net_virtio_user%d,path=%s,queues=%d,queue_size=1024", i, s, queues))
	}
	args = append(args, "--", "-i", "--total-num-mbufs=32768")
	args = append(args, extra...)
	// stdbuf: testpmd's stdout is a pipe; unbuffered, its prompt and
	// counters arrive as they are printed.
	args = append([]string{"-o0", bin}, args...)
	p := &testpmd{t: t, cmd: exec.Command("stdbuf", args...), lines: make(chan string, 4096)}
	p.stdin, _ = p.cmd.StdinPipe()
	out, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(p.stop)
	return p
}

// expect reads output until a line contains s (60 s deadlock guard).
func (p *testpmd) expect(s, what string) string {
	p.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("testpmd exited waiting for %s:\n%s", what, p.log.String())
			}
			p.log.WriteString(l + "\n")
			if strings.Contains(l, s) {
				return l
			}
		case <-deadline:
			p.t.Fatalf("testpmd: no %s in 60 s:\n%s", what, p.log.String())
		}
	}
}

func (p *testpmd) send(cmd string) { fmt.Fprintln(p.stdin, cmd) }

var statRE = regexp.MustCompile(`(RX|TX)-packets:\s+(\d+)`)

// stats returns RX and TX packets of port.
func (p *testpmd) stats(port int) (rx, tx uint64) {
	p.t.Helper()
	p.send(fmt.Sprintf("show port stats %d", port))
	p.expect(fmt.Sprintf("NIC statistics for port %d", port), "port stats")
	for got := 0; got < 2; {
		l := p.expect("-packets:", "packet counters")
		m := statRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseUint(m[2], 10, 64)
		if m[1] == "RX" {
			rx = n
		} else {
			tx = n
		}
		got++
	}
	return rx, tx
}

func (p *testpmd) stop() {
	if p.cmd.ProcessState == nil {
		p.send("quit")
		p.stdin.Close()
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	}
}

// waitCounter polls cond, refreshing with testpmd's stats (60 s guard).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two DPDK virtio-user ports on two hvnet ports: each sends one burst of 32
// frames (testpmd "start tx_first"); each receives the other's 32, and the
// DPDK and switch counters agree.
func TestDPDKVirtioUser(t *testing.T) {
	for _, tc := range []struct {
		name         string
		vlanA, vlanB uint16
	}{{"SameVLAN", 10, 10}, {"DifferentVLANs", 10, 20}} {
		t.Run(tc.name, func(t *testing.T) {
			pp := startPair(t, tc.vlanA, tc.vlanB, nil)
			pa, pb := pp.a, pp.b
			pmd := startTestpmd(t, []string{pp.ca.Socket, pp.cb.Socket}, "--forward-mode=rxonly")
			waitFor(t, pp.evA.up, "DPDK port 0")
			waitFor(t, pp.evB.up, "DPDK port 1")
			pmd.send("start tx_first")
			waitUntil(t, "32 frames into each switch port", func() bool {
				return pa.Handle().Counters().RxPackets == 32 && pb.Handle().Counters().RxPackets == 32
			})
			ka, kb := pa.Handle().Counters(), pb.Handle().Counters()
			if tc.vlanA != tc.vlanB {
				if ka.TxPackets != 0 || kb.TxPackets != 0 {
					t.Fatalf("frames crossed VLANs: a sent %d, b sent %d", ka.TxPackets, kb.TxPackets)
				}
				rx0, _ := pmd.stats(0)
				rx1, _ := pmd.stats(1)
				if rx0 != 0 || rx1 != 0 {
					t.Fatalf("DPDK received %d and %d frames across VLANs", rx0, rx1)
				}
				return
			}
			var rx0, tx0, rx1, tx1 uint64
			waitUntil(t, "DPDK to receive 32 frames on each port", func() bool {
				rx0, tx0 = pmd.stats(0)
				rx1, tx1 = pmd.stats(1)
				return rx0 >= 32 && rx1 >= 32
			})
			if rx0 != 32 || rx1 != 32 || tx0 != 32 || tx1 != 32 {
				t.Errorf("DPDK port 0 rx %d tx %d, port 1 rx %d tx %d; want 32 each", rx0, tx0, rx1, tx1)
			}
			ka, kb = pa.Handle().Counters(), pb.Handle().Counters()
			if ka.TxPackets != rx0 || kb.TxPackets != rx1 || ka.RxPackets != tx0 || kb.RxPackets != tx1 {
				t.Errorf("switch counters a %+v b %+v disagree with DPDK's", ka, kb)
			}
		})
	}
}

// xstats returns the named extended statistics of port ("show port
// xstats"), waiting for each in the order testpmd prints them.
func (p *testpmd) xstats(port int, names ...string) []uint64 {
	p.t.Helper()
	p.send(fmt.Sprintf("show port xstats %d", port))
	p.expect(fmt.Sprintf("NIC extended statistics for port %d", port), "port xstats")
	out := make([]uint64, len(names))
	for i, n := range names {
		l := p.expect(n+":", n)
		v, err := strconv.ParseUint(strings.TrimSpace(l[strings.Index(l, ":")+1:]), 10, 64)
		if err != nil {
			p.t.Fatalf("testpmd: %q: %v", l, err)
		}
		out[i] = v
	}
	return out
}

// DPDK's virtio-user with two queue pairs on each of two hvnet ports,
// one testpmd core polling all four streams: every transmit queue's
// burst (start tx_first: one per port and queue, frames with the same
// headers) crosses the switch and lands on the other port's receive
// queue of the same number, as the queue hint steers it (a hash of the
// headers would put all of them on one queue); the frontend's pairs are
// the device's active pairs.
func TestDPDKMultiqueue(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	dir := t.TempDir()
	evA, evB := newEvents(), newEvents()
	ca := PortConfig{Port: vswitch.PortConfig{Name: "a", PVID: 10}, Socket: filepath.Join(dir, "a.sock"), QueuePairs: 2}
	cb := PortConfig{Port: vswitch.PortConfig{Name: "b", PVID: 10}, Socket: filepath.Join(dir, "b.sock"), QueuePairs: 2}
	evA.hook(&ca)
	evB.hook(&cb)
	pa, pb := startPort(t, sw, ca), startPort(t, sw, cb)
	pmd := spawnTestpmdQ(t, []string{ca.Socket, cb.Socket}, 2, "--forward-mode=rxonly", "--rxq=2", "--txq=2", "--nb-cores=1")
	pmd.ready()
	waitFor(t, evA.up, "DPDK port 0")
	waitFor(t, evB.up, "DPDK port 1")
	for _, p := range []*Port{pa, pb} {
		waitUntil(t, "two active queue pairs", func() bool { _, n, ok := p.Negotiated(); return ok && n == 2 })
	}
	pmd.send("start tx_first")
	waitUntil(t, "64 frames into each switch port", func() bool {
		return pa.Handle().Counters().RxPackets == 64 && pb.Handle().Counters().RxPackets == 64
	})
	for port := range 2 {
		var v []uint64
		waitUntil(t, "DPDK to receive 64 frames", func() bool {
			v = pmd.xstats(port, "rx_good_packets", "rx_q0_good_packets", "rx_q1_good_packets", "tx_q0_good_packets", "tx_q1_good_packets")
			return v[0] >= 64
		})
		if v[0] != 64 || v[1] != 32 || v[2] != 32 || v[3] != 32 || v[4] != 32 {
			t.Errorf("DPDK port %d: rx %d (queue 0: %d, queue 1: %d), tx queue 0: %d, queue 1: %d; want 64 (32, 32), 32, 32",
				port, v[0], v[1], v[2], v[3], v[4])
		}
	}
	if ka, kb := pa.Handle().Counters(), pb.Handle().Counters(); ka.TxPackets != 64 || kb.TxPackets != 64 {
		t.Errorf("switch sent %d to a and %d to b, want 64 each", ka.TxPackets, kb.TxPackets)
	}
}
