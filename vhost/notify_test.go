package vhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/lines"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// Notification descriptors, end to end with
// frontends written from scratch: every wrong kind of descriptor for
// SET_VRING_CALL, SET_VRING_ERR and SET_VRING_KICK is refused with an
// error naming it; call and error eventfds the frontend makes block (full
// counter, O_NONBLOCK cleared) hold up neither the other ports nor the
// attacker's removal. Hung-up kick descriptors are backend/notify_test.go's
// (an accepted eventfd cannot hang up).

// wrongFD is a kind of descriptor that is not an eventfd: open returns it
// (closed at cleanup) and what the backend must call it.
type wrongFD struct {
	name string
	kind string
	open func(t *testing.T) int
}

func closeAtEnd(t *testing.T, fds ...int) {
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
}

var wrongFDs = []wrongFD{
	{"pipe-read-end", "a pipe (read end)", func(t *testing.T) int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, p[:]...)
		return p[0]
	}},
	{"pipe-write-end", "a pipe (write end)", func(t *testing.T) int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, p[:]...)
		return p[1]
	}},
	{"socket", "a socket", func(t *testing.T) int {
		s, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, s[:]...)
		return s[0]
	}},
	{"regular-file", "a regular file", func(t *testing.T) int {
		f, err := os.CreateTemp(t.TempDir(), "notify")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return int(f.Fd())
	}},
	{"dev-null", "a character device (/dev/null)", func(t *testing.T) int {
		fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, fd)
		return fd
	}},
	{"memfd", "a memfd", func(t *testing.T) int {
		fd, err := unix.MemfdCreate("notify", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, fd)
		return fd
	}},
}

var vringFDRequests = []struct {
	req  proto.Request
	send func(f *frontend.Frontend, q uint32, fd int) error
}{
	{proto.SetVringCall, (*frontend.Frontend).SetVringCall},
	{proto.SetVringErr, (*frontend.Frontend).SetVringErr},
	{proto.SetVringKick, (*frontend.Frontend).SetVringKick},
}

// refusal is the error text the backend gives for kind on queue q.
func refusal(req proto.Request, q uint32, kind string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("vhost-user %v: invalid payload: queue %d: fd ", req, q)) +
		`\d+` + regexp.QuoteMeta(" is "+kind+", not an eventfd"))
}

// Every wrong kind of descriptor is refused with an error naming the
// message, the queue and what the descriptor is: with REPLY_ACK a NACK
// (the session goes on and works), without it the session ends and the
// port takes the next frontend.
func TestRefuseNonEventFDs(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	// The port's log, for the refusal messages: at Debug, since refusals
	// after the first ones are logged at Debug only (1, 2, 4, ... at Warn).
	var log lines.Buffer
	ev := newEvents()
	cfg := PortConfig{Port: vswitch.PortConfig{Name: "x", PVID: 1}, Socket: filepath.Join(t.TempDir(), "x.sock"),
		Logger: hclog.New(&hclog.LoggerOptions{Name: "x", Output: &log, Level: hclog.Debug})}
	ev.hook(&cfg)
	px := startPort(t, sw, cfg)
	a := dialGuest(t, sockA)
	a.mustNegotiate()

	x := dialGuest(t, cfg.Socket)
	waitFor(t, ev.up, "session start")
	x.mustNegotiate() // REPLY_ACK negotiated: refusals are NACKs
	refused := 0
	for _, r := range vringFDRequests {
		for _, w := range wrongFDs {
			t.Run("ack/"+r.req.String()+"/"+w.name, func(t *testing.T) {
				err := r.send(x.f, 1, w.open(t))
				if !errors.Is(err, frontend.ErrRejected) {
					t.Fatalf("%v with %s: %v, want a NACK", r.req, w.name, err)
				}
				refused++
				if re := refusal(r.req, 1, w.kind); !re.MatchString(log.String()) {
					t.Errorf("log has no %q:\n%s", re, log.String())
				}
			})
		}
	}
	// The session still works: the refusals left the rings as they were.
	x.postRx(1)
	f := ethFrame(0xff, 1, 1)
	a.send(f)
	if got := x.recv(1); !bytes.Equal(got[0], f) {
		t.Fatalf("after the refusals x received % x, want % x", got[0], f)
	}
	x.close()
	waitFor(t, ev.down, "session end")

	// Without REPLY_ACK a refusal ends the session.
	for _, r := range vringFDRequests {
		t.Run("noack/"+r.req.String(), func(t *testing.T) {
			w := wrongFDs[0]
			g := dialGuest(t, cfg.Socket)
			waitFor(t, ev.up, "session start")
			if err := r.send(g.f, 0, w.open(t)); err != nil {
				t.Fatal(err)
			}
			refused++
			if m, err := g.f.Conn().ReadMsg(); err == nil {
				t.Fatalf("backend answered %v instead of closing the connection", m.Request)
			}
			waitFor(t, ev.down, "session end")
			if re := refusal(r.req, 0, w.kind); !re.MatchString(log.String()) {
				t.Errorf("log has no %q:\n%s", re, log.String())
			}
		})
	}
	if st := px.NotifyStats(); st.RefusedFDs != uint64(refused) || refused != 3*len(wrongFDs)+3 {
		t.Errorf("RefusedFDs = %d, want %d (of %d)", st.RefusedFDs, refused, 3*len(wrongFDs)+3)
	}
	// And the port takes a well-behaved frontend.
	g := dialGuest(t, cfg.Socket)
	waitFor(t, ev.up, "session start")
	g.mustNegotiate()
}

// attack is how a frontend makes its notification eventfds block.
type attack struct {
	name string
	// err: the attacked descriptor is the transmit ring's error eventfd
	// (signalled by a ring fault), not the call eventfds.
	err bool
	// clear: the frontend clears O_NONBLOCK after handing the eventfd
	// over (the backend set it on the shared file description).
	clear bool
	// stalls: the backend's write blocks.
	stalls bool
}

var attacks = []attack{
	{name: "full-call-fd"},
	{name: "full-err-fd", err: true},
	{name: "full-call-fd-nonblock-cleared", clear: true, stalls: true},
	{name: "full-err-fd-nonblock-cleared", err: true, clear: true, stalls: true},
}

// fullEventFD returns an eventfd whose counter is full (the largest value
// a write can reach): any further write of 1 blocks, or fails with EAGAIN.
func fullEventFD(t *testing.T) *virtio.EventFD {
	t.Helper()
	e, err := virtio.NewEventFD(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(0xffff_ffff_ffff_fffe); err != nil {
		t.Fatal(err)
	}
	return e
}

// An attacker whose call or error eventfds block (a full counter; with
// O_NONBLOCK cleared, a write would wait for a read that never comes)
// while frames are flooded to it from another port's goroutine: the other
// ports keep forwarding during the attack, and the attacker's port is
// removed in bounded time (its session's notifier is unstuck, not waited
// for).
func TestBlockingNotifyFDs(t *testing.T) {
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			sw := vswitch.New(vswitch.Config{})
			_, sockA := testPort(t, sw, "a", 1)
			_, sockB := testPort(t, sw, "b", 1)
			a, b := dialGuest(t, sockA), dialGuest(t, sockB)
			a.mustNegotiate()
			b.mustNegotiate()

			xcfg := PortConfig{Port: vswitch.PortConfig{Name: "x", PVID: 1}, Socket: filepath.Join(t.TempDir(), "x.sock"),
				Logger: hclog.New(&hclog.LoggerOptions{Name: "x", Level: hclog.LevelFromString(envOr("HVNET_TEST_LOG", "off"))})}
			px, err := NewPort(sw, xcfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- px.Run(ctx) }()

			x := dialGuest(t, xcfg.Socket)
			var victim *virtio.EventFD
			if !at.err {
				for i := range x.call {
					x.call[i].Close()
					x.call[i] = fullEventFD(t)
				}
				victim = x.call[0] // the receive queue's: signalled from a's goroutine
			}
			x.mustNegotiate()
			if at.err {
				victim = fullEventFD(t)
				defer victim.Close()
				if err := x.f.SetVringErr(1, victim.FD()); err != nil {
					t.Fatal(err)
				}
			}
			if at.clear {
				if err := unix.SetNonblock(victim.FD(), false); err != nil {
					t.Fatal(err)
				}
			}
			x.postRx(qSize)
			if at.err {
				// A descriptor index out of range: the transmit queue
				// faults and its error eventfd is signalled.
				x.tx.Push(999)
				x.kick[1].Signal()
			}
			// Frames flooded from a reach x (signalled on a's
			// goroutine) and b; b keeps receiving throughout.
			for i := range 3 * qSize / 2 {
				b.postRx(1)
				f := ethFrame(0xff, 1, byte(i))
				a.send(f)
				if got := b.recv(1); !bytes.Equal(got[0], f) {
					t.Fatalf("round %d: b received % x, want % x", i, got[0], f)
				}
				a.waitTxDone()
			}
			if got := x.rx.UsedIdx(); got == 0 {
				t.Fatal("the attacker received nothing: its call eventfd was never due")
			}

			// The attacker's port goes (the control API's DELETE).
			px.Close()
			select {
			case err := <-ran:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the attacker's port still running 10 s after Close")
			}
			if err := px.Remove(); err != nil {
				t.Fatal(err)
			}
			st := px.NotifyStats()
			if st.NotifiersAbandoned != 0 || st.WorkersAbandoned != 0 {
				t.Errorf("counters %+v: the session's goroutines were abandoned, not stopped", st)
			}
			if at.stalls && st.NotifyStalls == 0 {
				t.Errorf("counters %+v: no stall counted", st)
			}
			// The attacked eventfd got its signal: drained and written
			// (stalled write), or full all along (EAGAIN: pending).
			v, err := victim.ReadNoWait()
			if err != nil || v == 0 {
				t.Errorf("attacked eventfd: %d, %v; want a pending signal", v, err)
			}
			// And the remaining ports still forward.
			b.postRx(1)
			f := ethFrame(0xff, 1, 0xee)
			a.send(f)
			if got := b.recv(1); !bytes.Equal(got[0], f) {
				t.Fatalf("after the attacker left: b received % x, want % x", got[0], f)
			}
		})
	}
}

// A frontend that drains its own kick eventfds with O_NONBLOCK cleared,
// racing the backend's read after each poll, neither blocks the worker
// nor its stop.
func TestKickDrainedByFrontend(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	xcfg := PortConfig{Port: vswitch.PortConfig{Name: "x", PVID: 1}, Socket: filepath.Join(t.TempDir(), "x.sock"), BusyPoll: -1}
	px, err := NewPort(sw, xcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- px.Run(ctx) }()
	a := dialGuest(t, sockA)
	a.mustNegotiate()
	x := dialGuest(t, xcfg.Socket)
	x.mustNegotiate()
	for i := range x.kick {
		if err := unix.SetNonblock(x.kick[i].FD(), false); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range x.kick {
		wg.Add(1)
		go func(k *virtio.EventFD) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				k.Signal()
				k.ReadNoWait() // never blocks the frontend either
			}
		}(x.kick[i])
	}
	// x's transmit ring works meanwhile (its kicks may be eaten: the
	// frontend kicks again until the chains are used).
	a.postRx(qSize)
	for i := range 8 {
		x.tx.FreeAll()
		x.tx.Push(x.tx.AddChain(virtiotest.Buf{Data: append(make([]byte, hdrLen), ethFrame(0xff, 3, byte(i))...)}))
		deadline := time.Now().Add(10 * time.Second)
		for x.tx.UsedIdx() != x.tx.AvailIdx() {
			if time.Now().After(deadline) {
				t.Fatal("x's transmit chains not used in 10 s")
			}
			x.kick[1].Signal()
			waitFD(x.call[1], 10)
		}
	}
	px.Close()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("x's port still running 10 s after Close")
	}
	close(stop)
	wg.Wait()
	px.Remove()
	if st := px.NotifyStats(); st.WorkersAbandoned != 0 {
		t.Errorf("counters %+v: a worker was abandoned", st)
	}
	if got := a.recv(8); len(got) != 8 {
		t.Errorf("a received %d of x's frames, want 8", len(got))
	}
}

// A frontend that keeps its notifier blocked past StopTimeout (refilling
// its eventfd faster than the backend drains it) leaves a goroutine, a
// thread and descriptors behind each session: reconnecting over and over
// would grow them without end. The port refuses new frontends while
// MaxStuck of them are alive (counted, logged, with its backoff between
// attempts) and takes frontends again once they are gone. The gauge's own
// life (abandoned, then returned) is backend/notify_test.go's.
func TestRefusedWhileStuck(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	var log lines.Buffer // the port's log, for the refusal messages
	cfg := PortConfig{Port: vswitch.PortConfig{Name: "x", PVID: 1}, Socket: filepath.Join(t.TempDir(), "x.sock"),
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "x", Output: &log, Level: hclog.Error})}
	p := startPort(t, sw, cfg)
	p.notify.Stuck.Add(DefaultMaxStuck) // as left by earlier sessions' abandoned goroutines

	for i := range 3 {
		f, err := frontend.Dial(cfg.Socket) // the listen backlog takes it
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.GetFeatures(); err == nil {
			t.Fatalf("attempt %d: a frontend was served with %d goroutines stuck", i, DefaultMaxStuck)
		}
		f.Close()
	}
	st := p.NotifyStats()
	if st.SessionsRefused != 3 || st.Stuck != DefaultMaxStuck || p.Sessions() != 0 {
		t.Errorf("counters %+v, sessions %d: want 3 refused, %d stuck, no session", st, p.Sessions(), DefaultMaxStuck)
	}
	if !strings.Contains(log.String(), "frontend refused: earlier frontends left goroutines blocked") {
		t.Errorf("no refusal logged: %q", log.String())
	}

	p.notify.Stuck.Add(-1) // one of them returned: below the limit
	g := dialGuest(t, cfg.Socket)
	g.mustNegotiate()
	if n := p.Sessions(); n != 1 {
		t.Errorf("sessions = %d after the stuck count fell, want 1", n)
	}
}
