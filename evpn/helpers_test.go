package evpn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// loopbackUp brings lo up in the private namespace netnstest.Main runs
// the tests in (a new namespace starts with it down).
func loopbackUp(t testing.TB) {
	t.Helper()
	if netnstest.Private() {
		netnstest.Run(t, "ip", "link", "set", "lo", "up")
	}
}

// testLogger logs through t at the level of $EVPN_TEST_LOG (default
// warn), so that a failing test shows what GoBGP said.
func testLogger(t testing.TB, name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("EVPN_TEST_LOG"))
	if level == hclog.NoLevel {
		level = hclog.Warn
	}
	w := &tWriter{t: t}
	// Cleanups run last-in first-out: this one runs after the speakers'
	// Close. GoBGP goroutines that log later are not heard.
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: w})
}

// tWriter writes to t.Log until the test ends (t.Log after the end
// panics).
type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// freePort returns a TCP port nothing listens on at addr right now.
func freePort(t testing.TB, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatalf("find a free port on %s: %v", addr, err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// waitFor polls cond until it holds or timeout passes, then fails the test
// with what, and the recorders' histories.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool, recs ...*recorder) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			var hist []string
			for _, r := range recs {
				hist = append(hist, r.history())
			}
			t.Fatalf("timed out after %s waiting for %s\n%s", timeout, what, strings.Join(hist, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSpeaker starts a speaker closed at cleanup.
func startSpeaker(t testing.TB, cfg Config, h Handler) *Speaker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg, h)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// neighbor returns s's session with addr.
func neighbor(s *Speaker, addr netip.Addr) NeighborState {
	for _, n := range s.Neighbors() {
		if n.Addr == addr {
			return n
		}
	}
	return NeighborState{}
}

func established(s *Speaker, addr netip.Addr) func() bool {
	return func() bool { return neighbor(s, addr).State == "established" }
}

// recorder is a Handler that keeps the state the calls describe and
// checks that they are consistent (no double add, no withdrawal of what
// was not added, withdrawals naming the VTEP that was added).
type recorder struct {
	name string
	mu   sync.Mutex
	// vteps and macs are the current state.
	vteps map[vtepKey]bool
	macs  map[recKey]recMAC
	hist  []string
	errs  []string
	calls int
}

type recKey struct {
	vni uint32
	mac [6]byte
	ip  netip.Addr
}

type recMAC struct {
	vtep netip.Addr
	seq  uint32
}

var _ Handler = (*recorder)(nil)

func newRecorder(name string) *recorder {
	return &recorder{name: name, vteps: make(map[vtepKey]bool), macs: make(map[recKey]recMAC)}
}

func (r *recorder) RemoteVTEP(vni uint32, vtep netip.Addr, withdrawn bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.hist = append(r.hist, fmt.Sprintf("RemoteVTEP(%d, %s, withdrawn=%v)", vni, vtep, withdrawn))
	k := vtepKey{vni, vtep}
	if withdrawn != r.vteps[k] {
		r.errs = append(r.errs, "inconsistent: "+r.hist[len(r.hist)-1])
	}
	if withdrawn {
		delete(r.vteps, k)
	} else {
		r.vteps[k] = true
	}
}

func (r *recorder) RemoteMAC(vni uint32, mac [6]byte, ip, vtep netip.Addr, seq uint32, withdrawn bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.hist = append(r.hist, fmt.Sprintf("RemoteMAC(%d, %s, %s, %s, seq=%d, withdrawn=%v)",
		vni, net.HardwareAddr(mac[:]), ip, vtep, seq, withdrawn))
	k := recKey{vni, mac, ip}
	old, had := r.macs[k]
	if withdrawn {
		if !had || old.vtep != vtep {
			r.errs = append(r.errs, "inconsistent: "+r.hist[len(r.hist)-1])
		}
		delete(r.macs, k)
		return
	}
	if had && old.vtep != vtep {
		r.errs = append(r.errs, "moved without a withdrawal: "+r.hist[len(r.hist)-1])
	}
	r.macs[k] = recMAC{vtep, seq}
}

func (r *recorder) hasVTEP(vni uint32, vtep netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vteps[vtepKey{vni, vtep}]
}

// mac returns the current state of (vni, mac, ip).
func (r *recorder) mac(vni uint32, mac [6]byte, ip netip.Addr) (recMAC, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.macs[recKey{vni, mac, ip}]
	return m, ok
}

func (r *recorder) hasMAC(vni uint32, mac [6]byte, ip, vtep netip.Addr, seq uint32) func() bool {
	return func() bool {
		m, ok := r.mac(vni, mac, ip)
		return ok && m.vtep == vtep && m.seq == seq
	}
}

func (r *recorder) noMAC(vni uint32, mac [6]byte, ip netip.Addr) func() bool {
	return func() bool {
		_, ok := r.mac(vni, mac, ip)
		return !ok
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *recorder) history() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%s handler calls:\n  %s", r.name, strings.Join(r.hist, "\n  "))
}

// check fails the test if the calls were inconsistent.
func (r *recorder) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Errorf("%s: %s", r.name, e)
	}
}
