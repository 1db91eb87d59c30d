package vhost

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
)

func countFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// quiescent returns the goroutine count once it has stopped falling: the
// baseline after a warm-up cycle whose teardown goroutines may still be
// finishing.
func quiescent() int {
	n, same := runtime.NumGoroutine(), 0
	for i := 0; i < 500 && same < 20; i++ {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = min(n, m), 0
		}
	}
	return n
}

// settle waits for goroutines that already finished their work to exit:
// it polls for up to 10 s (200 ms was short: on a loaded machine the
// last sessions' teardown goroutines can take longer to be scheduled and
// exit); it ends as soon as the count is down, and a real leak still
// fails.
func settle(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); n > want && time.Now().Before(deadline); {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// 100 frontends connect, pass traffic and disconnect (half cleanly, half
// mid-traffic with rings running): descriptors and goroutines come back to
// where they were, and the port re-attaches every time.
func TestConnectCyclesLeakNothing(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	ev := newEvents()
	cfg := PortConfig{Port: vswitch.PortConfig{Name: "b", PVID: 1}, Socket: filepath.Join(t.TempDir(), "b.sock")}
	ev.hook(&cfg)
	startPort(t, sw, cfg)
	a := dialGuest(t, sockA)
	a.mustNegotiate()

	cycle := func(i int) {
		b := dialGuest(t, cfg.Socket)
		waitFor(t, ev.up, "session start")
		b.mustNegotiate()
		b.postRx(2)
		f := ethFrame(0xff, 1, byte(i))
		a.send(f)
		if got := b.recv(1); !bytes.Equal(got[0], f) {
			t.Fatalf("cycle %d: got % x", i, got[0])
		}
		if i%2 == 0 {
			a.send(ethFrame(0xff, 1, 0)) // in flight as the frontend goes
		}
		b.close()
		a.waitTxDone()
		waitFor(t, ev.down, "session end")
	}
	cycle(0) // warm up: lazily created runtime threads and buffers
	fds, gs := countFDs(t), quiescent()
	for i := 1; i <= 100; i++ {
		cycle(i)
	}
	if n := settle(gs); n > gs {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after 100 cycles, %d before\n%s", n, gs, buf[:runtime.Stack(buf, true)])
	}
	n := countFDs(t) // closed by the teardown too: polled like the goroutines
	for deadline := time.Now().Add(10 * time.Second); n != fds && time.Now().Before(deadline); n = countFDs(t) {
		time.Sleep(time.Millisecond)
	}
	if n != fds {
		t.Errorf("open descriptors: %d after 100 cycles, %d before", n, fds)
	}
}

// In client mode hvnet connects to a listening frontend; when the frontend
// dies and comes back, and when the backend itself restarts, it connects
// again and traffic resumes.
func TestClientModeReconnect(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	a := dialGuest(t, sockA)
	a.mustNegotiate()
	sock := filepath.Join(t.TempDir(), "fe.sock")

	listen := func() *net.UnixListener {
		os.Remove(sock)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	accept := func(ln *net.UnixListener) *guest {
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		g := dialGuestConn(t, frontend.New(c))
		g.mustNegotiate()
		return g
	}
	check := func(g *guest, seq byte) {
		t.Helper()
		g.postRx(1)
		f := ethFrame(0xff, 1, seq)
		a.send(f)
		if got := g.recv(1); !bytes.Equal(got[0], f) {
			t.Fatalf("got % x, want % x", got[0], f)
		}
	}
	run := func() (*Port, func()) {
		p, err := NewPort(sw, PortConfig{Port: vswitch.PortConfig{Name: "b", PVID: 1}, Socket: sock, Mode: Client,
			RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		return p, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
			p.Remove()
		}
	}

	// The backend starts first and retries until the frontend listens.
	_, stop := run()
	ln := listen()
	g := accept(ln)
	check(g, 1)

	// The frontend is killed mid-traffic and restarts.
	a.send(ethFrame(0xff, 1, 2))
	g.close()
	a.waitTxDone()
	ln.Close()
	ln = listen()
	g = accept(ln)
	check(g, 3)

	// The backend restarts; the frontend accepts it again.
	stop()
	g.close()
	_, stop = run()
	defer stop()
	g = accept(ln)
	check(g, 4)
	ln.Close()
}
