package progress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/lines"
)

// fakeClock advances only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(tty bool, utf bool, width int) (*Reporter, *lines.Buffer, *fakeClock) {
	var out lines.Buffer
	r := NewMode(&out, tty)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r.now = clk.now
	r.width = func() int { return width }
	if utf {
		r.spin, r.doneMk, r.failMk = strings.Split("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏", ""), "✓", "✗"
	} else {
		r.spin, r.doneMk, r.failMk = []string{"|", "/", "-", `\`}, "ok", "FAILED"
	}
	return r, &out, clk
}

func TestElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.0s", 420 * time.Millisecond: "0.4s", 9940 * time.Millisecond: "9.9s", 12300 * time.Millisecond: "12s",
		65 * time.Second: "1m05s", 61*time.Minute + 500*time.Millisecond: "61m01s",
	} {
		if got := Elapsed(d); got != want {
			t.Errorf("Elapsed(%v) = %q, want %q", d, got, want)
		}
	}
}

// Plain output: a line as each step starts, its notes, its end with the
// time it took, and no control characters.
func TestPlain(t *testing.T) {
	r, out, clk := newTest(false, true, 0)
	r.Heartbeat = 0
	s := r.Start("images: preparing kernel %s", "linux-image-6.1")
	clk.add(1500 * time.Millisecond)
	s.Note("downloading with apt-get")
	r.Note("unpacking")
	clk.add(40 * time.Second)
	s.Done()
	s.Done() // twice: nothing more
	s = r.Start("images: building initramfs")
	clk.add(2 * time.Second)
	r.Start("nested: booting") // ends the one before
	clk.add(65 * time.Second)
	r.Printf("images: ready")
	r.cur.Fail(errors.New("qemu died"))
	want := `images: preparing kernel linux-image-6.1 ...
images: preparing kernel linux-image-6.1: downloading with apt-get
images: preparing kernel linux-image-6.1: unpacking
images: preparing kernel linux-image-6.1: done in 42s
images: building initramfs ...
images: building initramfs: done in 2.0s
nested: booting ...
images: ready
nested: booting: failed after 1m05s: qemu died
`
	if got := out.String(); got != want {
		t.Errorf("plain output:\n%s\nwant:\n%s", got, want)
	}
	if w := r.Wrap(io.Discard); w != io.Discard {
		t.Error("Wrap changed a writer in plain mode")
	}
}

// Plain output says a long step still runs, every Heartbeat.
func TestPlainHeartbeat(t *testing.T) {
	r, out, clk := newTest(false, false, 0)
	r.Heartbeat = 10 * time.Millisecond
	s := r.Start("nested: booting the test host")
	clk.add(30 * time.Second)
	// Until two heartbeats came after the clock moved (one before it,
	// on a loaded machine, says 0s and does not count).
	waitOut(t, out, "two heartbeats", func(got string) bool {
		return strings.Count(got, "nested: booting the test host: still running after 30s\n") >= 2
	})
	s.Done()
	got := out.String()
	if n := strings.Count(got, "nested: booting the test host: still running after 30s\n"); n < 2 {
		t.Errorf("%d heartbeats in:\n%s", n, got)
	}
	if !strings.HasSuffix(got, "nested: booting the test host: done in 30s\n") {
		t.Errorf("no end line:\n%s", got)
	}
	time.Sleep(30 * time.Millisecond)
	if out.String() != got {
		t.Error("heartbeats after the step ended")
	}
}

// waitOut polls out until cond holds (up to 30 s: it ends as soon as it
// does; a loaded machine can hold the reporter's ticker for seconds).
func waitOut(t *testing.T, out *lines.Buffer, what string, cond func(string) bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(out.String()); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in 30 s: %q", what, out.String())
		}
	}
}

// On a terminal: the spinner line is drawn in place (carriage return,
// erase to the end of the line), turns, shows notes and the time, and
// ends as a line of its own with a check mark; a failure with a cross.
func TestTerminal(t *testing.T) {
	r, out, clk := newTest(true, true, 0)
	s := r.Start("images: building initramfs")
	clk.add(3 * time.Second)
	// Frames until one shows the clock moved. (The ticker runs on its
	// own: on a loaded machine its first frame can come before the clock
	// moves, so which frame first shows 3.0s is not fixed.)
	waitOut(t, out, "a frame at 3.0s", func(got string) bool {
		return strings.Contains(got, " images: building initramfs (3.0s)\x1b[K")
	})
	s.Note("u-root")
	s.Done()
	got := out.String()
	if !strings.HasPrefix(got, "\r⠋ images: building initramfs (0.0s)\x1b[K") {
		t.Errorf("first frame: %q", got)
	}
	if !strings.HasPrefix(got, "\r⠋ images: building initramfs (0.0s)\x1b[K\r⠙ images: building initramfs (") {
		t.Errorf("the second frame has not turned: %q", got)
	}
	if !strings.Contains(got, "images: building initramfs (3.0s)\x1b[K") {
		t.Errorf("no frame with the time: %q", got)
	}
	if !strings.Contains(got, "images: building initramfs: u-root (3.0s)\x1b[K") {
		t.Errorf("no note: %q", got)
	}
	if !strings.HasSuffix(got, "\r\x1b[K✓ images: building initramfs (3.0s)\n") {
		t.Errorf("end: %q", got)
	}
	out.Reset()
	s = r.Start("nested: booting")
	s.Fail(errors.New("no result"))
	if got := out.String(); !strings.HasSuffix(got, "\r\x1b[K✗ nested: booting (0.0s): no result\n") {
		t.Errorf("failure: %q", got)
	}
}

// Without a UTF-8 locale the spinner and marks are ASCII.
func TestTerminalASCII(t *testing.T) {
	r, out, _ := newTest(true, false, 0)
	r.Start("step").Done()
	if got := out.String(); got != "\r| step (0.0s)\x1b[K\r\x1b[Kok step (0.0s)\n" {
		t.Errorf("%q", got)
	}
}

// The spinner line is cut to the terminal's width (one that wraps could
// not be redrawn in place): the step's name first, so that its note and
// time stay in view, then the line's end.
func TestTerminalWidth(t *testing.T) {
	r, out, _ := newTest(true, false, 40)
	s := r.Start("images: preparing kernel linux-image-6.1.0-57-cloud-amd64")
	s.Note("unpacking")
	s.Done()
	frames := strings.Split(out.String(), "\x1b[K")
	for want, i := range map[string]int{"| images: preparing kernel linu… (0.0s)": 0, "| images: preparing …: unpacking (0.0s)": 1} {
		if got := strings.TrimPrefix(frames[i], "\r"); got != want {
			t.Errorf("cut line %q, want %q", got, want)
		}
	}
	for _, c := range []struct {
		name, tail string
		width      int
		want       string
	}{
		{"short", " (1.0s)", 0, "| short (1.0s)"},
		{"short", " (1.0s)", 14, "| short (1.0s)"},
		{"a step with a name", ": a very long note that does not fit (1.0s)", 30, "| a step with a name: a very …"},
	} {
		if got := fit("| ", c.name, c.tail, c.width); got != c.want || utf8.RuneCountInString(got) > max(c.width, len(got)) {
			t.Errorf("fit(%q, %q, %d) = %q, want %q", c.name, c.tail, c.width, got, c.want)
		}
	}
}

// Other output through Wrap clears the spinner first and draws it again
// after a whole line; half a line is left alone until it ends.
func TestWrap(t *testing.T) {
	r, out, _ := newTest(true, false, 0)
	var console bytes.Buffer
	w := r.Wrap(&console)
	s := r.Start("nested: running the job")
	out.Reset()
	fmt.Fprintln(w, "L1| hello")
	if got := out.String(); got != "\r\x1b[K\r| nested: running the job (0.0s)\x1b[K" {
		t.Errorf("around a line: %q", got)
	}
	out.Reset()
	io.WriteString(w, "half ")
	time.Sleep(250 * time.Millisecond) // frames would draw now
	if got := out.String(); got != "\r\x1b[K" {
		t.Errorf("around half a line, and after it: %q", got)
	}
	io.WriteString(w, "line\n")
	if got := out.String(); !strings.HasSuffix(got, "nested: running the job (0.0s)\x1b[K") || strings.Count(got, "\r\x1b[K") != 1 {
		t.Errorf("the line's end: %q", got)
	}
	s.Done()
	if console.String() != "L1| hello\nhalf line\n" {
		t.Errorf("console %q", console.String())
	}
	// With no step running, a wrapped write is the write alone.
	out.Reset()
	fmt.Fprintln(w, "after")
	if out.String() != "" {
		t.Errorf("no step, yet %q", out.String())
	}
}

// A nil Reporter, and its nil Steps, show nothing and do not fail.
func TestNil(t *testing.T) {
	var r *Reporter
	s := r.Start("x")
	s.Note("y")
	r.Note("z")
	s.Done()
	s.Fail(errors.New("e"))
	r.Printf("p")
	if r.Wrap(os.Stderr) != os.Stderr || r.Terminal() {
		t.Error("nil Reporter")
	}
}

// openPTY opens a pseudo-terminal pair as posix_openpt(3), grantpt and
// unlockpt do: /dev/ptmx, unlocked, and its /dev/pts/N.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		t.Skipf("ptsname: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { slave.Close(); master.Close() })
	return master, slave
}

// New draws a spinner on a real terminal (a pty) and writes plain lines
// to a pipe; $TERM=dumb asks for plain lines on a terminal too.
func TestNewDetectsTerminal(t *testing.T) {
	master, slave := openPTY(t)
	if !IsTerminal(slave) {
		t.Fatal("IsTerminal(pty) = false")
	}
	unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 33, Row: 24})
	t.Setenv("TERM", "xterm")
	t.Setenv("LC_ALL", "C.UTF-8")
	r := New(slave)
	if !r.Terminal() {
		t.Fatal("New(pty) is not in terminal mode")
	}
	if w := r.width(); w != 33 {
		t.Errorf("width %d, want 33", w)
	}
	// A clock that stands: the lines below say 0.0s however long a
	// loaded machine takes between Start and Done.
	r.now = (&fakeClock{t: time.Unix(1000, 0)}).now
	r.Start("images: a step whose name is long").Done()
	buf := make([]byte, 4096)
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for !bytes.Contains(got, []byte("\n")) {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("read pty: %v (so far %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	// The terminal's line discipline turns \n into \r\n.
	if !bytes.Contains(got, []byte("\r⠋ images: a step whose n… (0.0s)\x1b[K")) ||
		!bytes.Contains(got, []byte("✓ images: a step whose name is long (0.0s)\r\n")) {
		t.Errorf("on the pty: %q", got)
	}

	for _, term := range []string{"dumb", ""} {
		t.Setenv("TERM", term)
		if New(slave).Terminal() {
			t.Errorf("TERM=%q, yet a spinner", term)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	t.Setenv("TERM", "xterm")
	if IsTerminal(pw) || New(pw).Terminal() || IsTerminal(&bytes.Buffer{}) {
		t.Error("a pipe or a buffer taken for a terminal")
	}
}
