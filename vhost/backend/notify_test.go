package backend

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// Notification descriptors, white-box: the poll
// results that end a session, the worker and notifier that a frontend
// makes block, and the descriptor hand-over between them. The end-to-end
// attacks are vhost/notify_test.go's.

const fullCounter = 0xffff_ffff_ffff_fffe // an eventfd's largest value

func TestKickEvents(t *testing.T) {
	for _, tc := range []struct {
		revents int16
		read    bool
		err     error
	}{
		{0, false, nil},
		{unix.POLLIN, true, nil},
		{unix.POLLHUP, false, ErrKickHangup},
		{unix.POLLIN | unix.POLLHUP, false, ErrKickHangup}, // a pipe with data and no writer
		{unix.POLLERR, false, ErrKickFailed},               // an eventfd whose counter overflowed
		{unix.POLLNVAL, false, ErrKickFailed},
		{unix.POLLIN | unix.POLLERR | unix.POLLHUP, false, ErrKickFailed},
	} {
		read, err := kickEvents(tc.revents)
		if read != tc.read || !errors.Is(err, tc.err) {
			t.Errorf("kickEvents(%#x) = %v, %v; want %v, %v", tc.revents, read, err, tc.read, tc.err)
		}
	}
}

func newTestSession(t *testing.T, cfg Config) *Session {
	t.Helper()
	cfg.Name = "t"
	cfg.Sink = vnet.SinkFunc(func([]vnet.Frame) {})
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// closeRecorder is a Conn whose Close is observed.
type closeRecorder struct {
	Conn
	closed chan struct{}
	once   sync.Once
}

func (c *closeRecorder) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// A kick descriptor that hangs up (a pipe whose writer closed: refused at
// SET_VRING_KICK, planted here) ends the session with an error naming the
// queue, instead of a worker spinning on poll.
func TestKickHangupEndsSession(t *testing.T) {
	c := &closeRecorder{closed: make(chan struct{})}
	s := newTestSession(t, Config{})
	s.conn = c
	rd, wr := pipe(t)
	defer unix.Close(rd)
	r := s.vrings[1]
	r.kick = rd
	if err := s.startWorker(r); err != nil {
		t.Fatal(err)
	}
	w := r.w
	unix.Close(wr)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("worker still running 10 s after its kick pipe hung up")
	}
	select {
	case <-c.closed:
	default:
		t.Fatal("the connection was not closed")
	}
	err := s.aborted()
	if !errors.Is(err, ErrKickHangup) || err.Error() != "queue 1: kick eventfd: hung up (POLLHUP)" {
		t.Errorf("abort error %q, want queue 1's hang-up", err)
	}
	if n := s.Counters().KickHangups.Load(); n != 1 {
		t.Errorf("KickHangups = %d, want 1", n)
	}
	r.kick = -1
	s.stopRing(r) // the worker is gone: returns at once
}

// Serve returns abort's error once the connection is closed under it.
func TestServeReturnsAbortError(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "backend")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	s := newTestSession(t, Config{OnStart: func(*vnet.Device) { close(started) }})
	done := make(chan error, 1)
	go func() { done <- s.Serve(proto.NewConn(fc.(*net.UnixConn))) }()
	<-started
	want := errors.New("queue 0: kick eventfd: hung up (POLLHUP)")
	s.abort(want)
	select {
	case err := <-done:
		if err != want {
			t.Errorf("Serve = %v, want %v", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after abort")
	}
}

// A worker stuck in its kick read (possible on kernels without
// preadv2(RWF_NOWAIT) for eventfds) is abandoned after StopTimeout: the
// session goes on; the worker closes its kick descriptor when it returns.
func TestStopRingAbandonsStuckWorker(t *testing.T) {
	inRead, release := make(chan struct{}), make(chan struct{})
	old := kickRead
	kickRead = func(*virtio.EventFD) { close(inRead); <-release }
	defer func() { kickRead = old }()

	s := newTestSession(t, Config{StopTimeout: 20 * time.Millisecond})
	kick, err := virtio.NewEventFD(true)
	if err != nil {
		t.Fatal(err)
	}
	r := s.vrings[0]
	r.kick, r.started = kick.FD(), true
	if err := s.startWorker(r); err != nil {
		t.Fatal(err)
	}
	w := r.w
	kick.Signal()
	<-inRead
	s.stopRing(r) // returns after StopTimeout
	if n := s.Counters().WorkersAbandoned.Load(); n != 1 {
		t.Errorf("WorkersAbandoned = %d, want 1", n)
	}
	if n := s.Counters().Stuck.Load(); n != 1 {
		t.Errorf("Stuck = %d with the worker blocked, want 1", n)
	}
	if r.w != nil || r.kick != -1 {
		t.Errorf("after abandoning: worker %v kick %d, want none", r.w, r.kick)
	}
	if !isOpen(kick.FD()) {
		t.Fatal("kick descriptor closed under the abandoned worker")
	}
	close(release)
	<-w.done
	if isOpen(kick.FD()) {
		t.Error("the abandoned worker did not close its kick descriptor")
	}
	if n := s.Counters().Stuck.Load(); n != 0 {
		t.Errorf("Stuck = %d after the worker returned, want 0", n)
	}
}

// tenantEventFD is a full eventfd shared with the "frontend": the notifier
// gets a duplicate (same file description), the frontend keeps fd and
// clears O_NONBLOCK on it.
func tenantEventFD(t *testing.T) (tenant int, ours *virtio.EventFD) {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := virtio.EventFDFrom(fd).Write(fullCounter); err != nil {
		t.Fatal(err)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd, virtio.EventFDFrom(dup)
}

// waitWriting waits until the notifier is in a write to e.
func waitWriting(t *testing.T, n *notifier, e *virtio.EventFD) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		cur := n.cur
		n.mu.Unlock()
		if cur == e {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the notifier did not start writing in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A write the frontend made block (O_NONBLOCK cleared, counter full)
// holds only the notifier: marks return at once, and stop unsticks the
// write by draining the eventfd, counts the stall and closes the
// descriptors.
func TestNotifierUnsticksBlockedWrite(t *testing.T) {
	c := new(Counters)
	n := newNotifier(hclog.NewNullLogger(), c, 2)
	tenant, ours := tenantEventFD(t)
	fd := ours.FD()
	n.set(callSlot(1), ours)
	n.start()
	n.mark(callSlot(1))
	waitWriting(t, n, ours)
	for range 1000 { // the dataplane's side never waits
		n.mark(callSlot(1))
		n.mark(errSlot(0))
	}
	n.stop(10 * time.Second)
	select {
	case <-n.done:
	default:
		t.Fatal("stop returned with the notifier still running")
	}
	st := c.Snapshot()
	if st.NotifyStalls != 1 || st.NotifiersAbandoned != 0 {
		t.Errorf("counters %+v, want 1 stall, none abandoned", st)
	}
	if isOpen(fd) {
		t.Error("the notifier's descriptor is still open")
	}
	// Drained, then the blocked write of 1 went through.
	v, err := virtio.EventFDFrom(tenant).ReadNoWait()
	if err != nil || v != 1 {
		t.Errorf("tenant's counter %d (%v), want 1", v, err)
	}
}

// A notifier stop cannot unstick (a descriptor draining does not help:
// here a full pipe, which SET_VRING_CALL refuses) is abandoned after the
// timeout, counted, and closes its descriptors once its write returns.
func TestNotifierAbandoned(t *testing.T) {
	c := new(Counters)
	n := newNotifier(hclog.NewNullLogger(), c, 1)
	rd, wr := pipe(t)
	defer unix.Close(rd)
	if err := unix.SetNonblock(wr, true); err != nil {
		t.Fatal(err)
	}
	var chunk [4096]byte
	for { // fill the pipe
		if _, err := unix.Write(wr, chunk[:]); err != nil {
			break
		}
	}
	unix.SetNonblock(wr, false)
	ours := virtio.EventFDFrom(wr)
	n.set(callSlot(0), ours)
	n.start()
	n.mark(callSlot(0))
	waitWriting(t, n, ours)
	n.stop(20 * time.Millisecond)
	if st := c.Snapshot(); st.NotifiersAbandoned != 1 || st.Stuck != 1 {
		t.Errorf("counters %+v, want 1 abandoned, 1 stuck", st)
	}
	if !isOpen(wr) {
		t.Fatal("descriptor closed under the abandoned notifier's write")
	}
	for { // the "frontend" reads: the write completes, the notifier exits
		if _, err := unix.Read(rd, chunk[:]); err != nil {
			t.Fatal(err)
		}
		select {
		case <-n.done:
			if isOpen(wr) {
				t.Error("the abandoned notifier did not close its descriptor")
			}
			if st := c.Snapshot(); st.Stuck != 0 {
				t.Errorf("counters %+v after the notifier returned, want none stuck", st)
			}
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// A call eventfd replaced (SET_VRING_CALL) while the notifier writes it
// stays open until that write returns; one replaced while idle is closed
// at once.
func TestNotifierReplaceDuringWrite(t *testing.T) {
	c := new(Counters)
	n := newNotifier(hclog.NewNullLogger(), c, 1)
	tenant, a := tenantEventFD(t)
	afd := a.FD() // a is the notifier's from here on
	n.set(callSlot(0), a)
	n.start()
	n.mark(callSlot(0))
	waitWriting(t, n, a)
	b, err := virtio.NewEventFD(true)
	if err != nil {
		t.Fatal(err)
	}
	bfd := b.FD()
	n.set(callSlot(0), b)
	if !isOpen(afd) {
		t.Fatal("the descriptor being written was closed")
	}
	n.set(callSlot(0), nil)
	if isOpen(bfd) {
		t.Error("an idle replaced descriptor stayed open")
	}
	if _, err := virtio.EventFDFrom(tenant).ReadNoWait(); err != nil { // the write completes
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for isOpen(afd) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if isOpen(afd) {
		t.Error("the replaced descriptor was not closed after its write")
	}
	n.stop(10 * time.Second)
}
