package bond

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
)

// The bond's benchmarks (BENCHMARKS.md, "Bonds"): run with HVNET_BENCH=1
// (./run.sh bench bond); HVNET_BENCH_CUTS sets the number of link cuts
// (default 20). Times are measured on the traffic, not asserted.

const envBench = "HVNET_BENCH"

func benchCuts() int {
	if n, err := strconv.Atoi(os.Getenv("HVNET_BENCH_CUTS")); err == nil && n > 0 {
		return n
	}
	return 20
}

// stream sends a numbered UDP datagram from the endpoint to the host every
// interval and records when each arrives.
type stream struct {
	interval time.Duration
	mu       sync.Mutex
	arrived  map[uint32]time.Time
	sent     map[uint32]time.Time
	dups     int // datagrams that arrived at the far host more than once
	stop     chan struct{}
	done     sync.WaitGroup
}

func (r *tor) startStream(t *testing.T, interval time.Duration) *stream {
	s := &stream{interval: interval, arrived: map[uint32]time.Time{}, sent: map[uint32]time.Time{}, stop: make(chan struct{})}
	var rc *net.UDPConn
	if err := r.host.Do(func() (err error) {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 9, 0, 2), Port: 6000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var sc *net.UDPConn
	if err := r.ep.Do(func() (err error) {
		sc, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 9, 0, 2), Port: 6000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		buf := make([]byte, 64)
		for {
			n, err := rc.Read(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				now := time.Now()
				s.mu.Lock()
				if _, ok := s.arrived[binary.BigEndian.Uint32(buf)]; !ok {
					s.arrived[binary.BigEndian.Uint32(buf)] = now
				} else {
					s.dups++
				}
				s.mu.Unlock()
			}
		}
	}()
	go func() {
		defer s.done.Done()
		defer sc.Close()
		var b [32]byte
		next := time.Now()
		for seq := uint32(0); ; seq++ {
			select {
			case <-s.stop:
				time.Sleep(200 * time.Millisecond)
				rc.Close()
				return
			default:
			}
			binary.BigEndian.PutUint32(b[:], seq)
			s.mu.Lock()
			s.sent[seq] = time.Now()
			s.mu.Unlock()
			sc.Write(b[:])
			next = next.Add(interval)
			time.Sleep(time.Until(next))
		}
	}()
	return s
}

func (s *stream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrived)
}

func (s *stream) end() {
	close(s.stop)
	s.done.Wait()
}

// outage is the traffic's gap around a cut at time cut: from the last
// datagram sent before the cut that arrived to the first sent after it
// that arrived (the time nothing got through), and how many were lost.
func (s *stream) outage(cut time.Time) (time.Duration, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seqs []uint32
	for q := range s.sent {
		seqs = append(seqs, q)
	}
	slices.Sort(seqs)
	var lastOK, firstAfter time.Time
	lost := 0
	for _, q := range seqs {
		st := s.sent[q]
		_, ok := s.arrived[q]
		if st.Before(cut.Add(-time.Second)) || st.After(cut.Add(3*time.Second)) {
			continue
		}
		switch {
		case st.Before(cut) && ok:
			lastOK, lost = st, 0
		case !ok:
			lost++
		case firstAfter.IsZero():
			firstAfter = st
		}
		if !firstAfter.IsZero() {
			break
		}
	}
	if firstAfter.IsZero() || lastOK.IsZero() {
		return -1, lost
	}
	// Datagrams leave every interval: a gap of one interval is none.
	return max(0, firstAfter.Sub(lastOK)-s.interval), lost
}

func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return fmt.Sprintf("n=%d min %v p50 %v p90 %v max %v", len(ds), ds[0].Round(100*time.Microsecond), q(0.5).Round(100*time.Microsecond),
		q(0.9).Round(100*time.Microsecond), ds[len(ds)-1].Round(100*time.Microsecond))
}

// failovers cuts the carrying member's link (on the top-of-rack side:
// hvnet sees the carrier go) under a stream of a datagram per
// millisecond, brings it back 0.7 s later, and returns each cut's
// outage and each return's (a member that comes back must not stop the
// traffic either). settled, if set, is waited for after each return.
func (r *tor) failovers(t *testing.T, cuts int, settled func() bool) (outs, backs []time.Duration) {
	s := r.startStream(t, time.Millisecond)
	// Until the stream flows (the endpoint resolves the host's address).
	for end := time.Now().Add(5 * time.Second); s.count() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the stream does not arrive")
		}
	}
	time.Sleep(300 * time.Millisecond)
	var at, up []time.Time
	for range cuts {
		st := r.bond.Stats()
		dev := ""
		for i, m := range st.Members {
			if m.Carrying {
				dev = "sw0" + string(rune('a'+i))
				break
			}
		}
		if dev == "" {
			t.Fatalf("no member carries traffic: %+v", st)
		}
		cut := time.Now()
		if err := r.tor.H.LinkSetDown(r.tor.Link(t, dev)); err != nil {
			t.Fatal(err)
		}
		at = append(at, cut)
		time.Sleep(700 * time.Millisecond)
		up = append(up, time.Now())
		if err := r.tor.H.LinkSetUp(r.tor.Link(t, dev)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(800 * time.Millisecond)
		if settled != nil {
			r.wait("the member back in", 15*time.Second, settled)
			time.Sleep(300 * time.Millisecond)
		}
	}
	s.end()
	s.mu.Lock()
	t.Logf("stream: %d datagrams sent, %d arrived, %d arrived twice", len(s.sent), len(s.arrived), s.dups)
	if s.dups != 0 {
		t.Errorf("%d datagrams arrived at the far host more than once", s.dups)
	}
	s.mu.Unlock()
	for i, cut := range at {
		for _, ev := range []struct {
			at   time.Time
			what string
			to   *[]time.Duration
		}{{cut, "cut", &outs}, {up[i], "return", &backs}} {
			d, lost := s.outage(ev.at)
			if d < 0 {
				t.Logf("%s at %v: traffic did not come back within 3 s (%d lost)", ev.what, ev.at.Format("15:04:05.000"), lost)
				d = 3 * time.Second
			}
			*ev.to = append(*ev.to, d)
		}
	}
	return outs, backs
}

// Failover time from carrier loss to traffic flowing again, active-backup
// behind a Linux bridge (goal: 100 ms or less).
func TestBenchFailoverActiveBackup(t *testing.T) {
	if os.Getenv(envBench) == "" {
		t.Skip("a benchmark: HVNET_BENCH=1 (./run.sh bench bond)")
	}
	netnstest.Need(t)
	r := newTor(t, "bridge", Config{Mode: ModeActiveBackup})
	outs, backs := r.failovers(t, benchCuts(), nil)
	t.Logf("BENCH bond failover active-backup (Linux bridge peer): %s", quantiles(outs))
	t.Logf("BENCH bond active-backup, a member's return: %s", quantiles(backs))
}

// The same with LACP against a Linux 802.3ad bond (in the nested test
// host where this kernel has no bonding), and the outage when the member
// comes back and is aggregated again.
func TestBenchLACP(t *testing.T) {
	if os.Getenv(envBench) == "" {
		t.Skip("a benchmark: HVNET_BENCH=1 (./run.sh bench bond)")
	}
	if needBonding(t) {
		return
	}
	r := newTor(t, "lacp", Config{Mode: ModeLACP, LACPRate: RateFast, LACPFallback: true, Hash: HashL34})
	both := func() bool {
		s := r.bond.Stats()
		return s.Members[0].Carrying && s.Members[1].Carrying
	}
	r.wait("both members aggregated", 15*time.Second, both)
	outs, backs := r.failovers(t, benchCuts(), both)
	t.Logf("BENCH bond failover lacp (Linux 802.3ad peer, one flow): %s", quantiles(outs))
	t.Logf("BENCH bond lacp, a member's return (until re-aggregated): %s", quantiles(backs))
}

// Throughput over two members against one, in the same run, alternating:
// balance-slb behind a Linux bridge, four endpoints (four source MACs,
// their buckets spread over both members) each running an iperf3 client
// to its own server on the host at once; "one member" is the same with
// the second member's link down.
func TestBenchTwoMembers(t *testing.T) {
	if os.Getenv(envBench) == "" {
		t.Skip("a benchmark: HVNET_BENCH=1 (./run.sh bench bond)")
	}
	netnstest.Need(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatal("iperf3 is not installed (run.sh installs it)")
	}
	r := newTor(t, "bridge", Config{Mode: ModeBalanceSLB})
	eps := r.endpoints(t, "tput", 4, 21)
	for i, n := range eps {
		// Each endpoint's bucket on member i%2: two on each.
		mac := [6]byte(n.Link(t, "e0").Attrs().HardwareAddr)
		r.bond.slb[slbBucket(mac, 0)].Store(int32(i % 2))
	}
	var servers []*exec.Cmd
	for i := range eps {
		var out bytes.Buffer
		c, err := r.host.Start(&out, "iperf3", "-s", "-p", strconv.Itoa(5301+i))
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, c)
	}
	t.Cleanup(func() {
		for _, c := range servers {
			c.Process.Kill()
			c.Wait()
		}
	})
	time.Sleep(300 * time.Millisecond)
	run := func() float64 {
		var wg sync.WaitGroup
		bps := make([]float64, len(eps))
		for i, n := range eps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := n.Run("iperf3", "-c", "10.9.0.2", "-p", strconv.Itoa(5301+i), "-t", "4", "-J")
				if err != nil {
					t.Logf("iperf3 from endpoint %d: %v", i, err)
					return
				}
				var res struct {
					End struct {
						SumReceived struct {
							BitsPerSecond float64 `json:"bits_per_second"`
						} `json:"sum_received"`
					} `json:"end"`
				}
				if json.Unmarshal([]byte(out), &res) == nil {
					bps[i] = res.End.SumReceived.BitsPerSecond
				}
			}()
		}
		wg.Wait()
		sum := 0.0
		for _, b := range bps {
			sum += b
		}
		return sum
	}
	var ratios []float64
	for round := range 3 {
		got := map[bool]float64{}
		for _, two := range []bool{round%2 == 0, round%2 != 0} {
			if two {
				r.tor.Up(t, "sw0b")
			} else {
				r.tor.Down(t, "sw0b")
			}
			time.Sleep(500 * time.Millisecond)
			if two {
				for i, n := range eps { // the buckets back where they were
					r.bond.slb[slbBucket([6]byte(n.Link(t, "e0").Attrs().HardwareAddr), 0)].Store(int32(i % 2))
				}
			}
			bps := run()
			s := r.bond.Stats()
			t.Logf("round %d, %s: %.0f Mbit/s in all (member tx %d / %d)", round, map[bool]string{true: "two members", false: "one member"}[two],
				bps/1e6, s.Members[0].TxFrames, s.Members[1].TxFrames)
			got[two] = bps
		}
		if got[false] > 0 {
			ratios = append(ratios, got[true]/got[false])
		}
	}
	if len(ratios) < 3 {
		t.Fatalf("rounds without a result: %v", ratios)
	}
	slices.Sort(ratios)
	t.Logf("BENCH bond balance-slb two members / one (4 iperf3 flows, same run): median %.2f (%.2f..%.2f)", ratios[1], ratios[0], ratios[2])
}

// goPartner is an LACP partner in the top-of-rack namespace on one
// link: this package's engine behind a raw socket, which can fall
// silent without a goodbye and without a carrier change (Linux's bond
// cannot: releasing a port sends a last LACPDU and flaps the link).
func (r *tor) goPartner(t *testing.T, dev string) (stop func()) {
	idx := r.tor.Link(t, dev).Attrs().Index
	var fd int
	if err := r.tor.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(SlowProtocolsType)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(SlowProtocolsType), Ifindex: idx})
	}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Usec: 20_000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	mac := [6]byte(r.tor.Link(t, dev).Attrs().HardwareAddr)
	l := NewLACP(System{Priority: 1, ID: [6]byte{2, 0x77, 0, 0, 0, 1}, Key: 7}, RateFast, false, 1)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fd)
		l.SetLink(0, true, time.Now())
		buf := make([]byte, 256)
		var send []int
		for {
			select {
			case <-quit:
				return
			default:
			}
			if n, _, err := unix.Recvfrom(fd, buf, 0); err == nil && n > 14 && IsSlowProtocols(buf[:n]) {
				if d, err := DecodeLACPDU(buf[14:n]); err == nil {
					l.Receive(0, d, time.Now())
				}
			}
			for range l.Tick(time.Now(), send[:0]) {
				d := l.PDU(0)
				unix.Sendto(fd, d.AppendFrame(nil, mac), 0, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6})
			}
		}
	}()
	return func() { close(quit); <-done }
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// How long a partner that falls silent (no goodbye, the carrier kept)
// takes to be noticed at the fast rate: the standard's short timeout is
// 3 s after its last LACPDU, which came 0..1 s before.
func TestBenchLACPSilentPartner(t *testing.T) {
	if os.Getenv(envBench) == "" {
		t.Skip("a benchmark: HVNET_BENCH=1 (./run.sh bench bond)")
	}
	netnstest.Need(t)
	r := newTor(t, "one", Config{Mode: ModeLACP, LACPRate: RateFast, LACPFallback: true})
	var detect []time.Duration
	for range max(3, benchCuts()/4) {
		stop := r.goPartner(t, "sw0b")
		r.wait("hv0b aggregated with the Go partner", 10*time.Second, func() bool {
			s := r.bond.Stats()
			return s.LACPAggregate && s.Members[1].Carrying
		})
		time.Sleep(time.Duration(200+len(detect)*137%800) * time.Millisecond) // a different phase each time
		stop()
		t0 := time.Now()
		// Noticed: the member leaves the aggregator (the fallback may
		// still carry traffic on it, as active-backup).
		for r.bond.Stats().Members[1].LACP.Selected {
			if time.Since(t0) > 10*time.Second {
				t.Fatal("a silent partner was not noticed in 10 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		detect = append(detect, time.Since(t0))
	}
	t.Logf("BENCH bond lacp silent partner noticed (fast rate, from its silence): %s", quantiles(detect))
}
