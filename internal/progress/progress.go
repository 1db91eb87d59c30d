// Package progress shows long work (a cold image build, the nested test
// host's boot) as steps a person can follow, each with the time it took.
//
// On a terminal a step is one line with a spinner and its elapsed time,
// redrawn in place ten times a second, which stays as a line with a
// check mark and the total when the step ends. Anywhere else (a pipe, a
// log file, CI) there are plain lines: the step as it starts, its notes,
// a "still running" line every Heartbeat, and its end with the time it
// took; no control characters.
//
// A nil *Reporter is valid and shows nothing, so library code takes one
// without checking. Steps follow one another: starting a step ends the
// one running.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// DefaultHeartbeat is how often plain output says a step still runs.
const DefaultHeartbeat = 15 * time.Second

// frame is how often a terminal's spinner line is redrawn.
const frame = 100 * time.Millisecond

// Reporter writes steps to one writer.
type Reporter struct {
	w   io.Writer
	tty bool
	// Heartbeat: plain output's "still running" interval (0: none).
	Heartbeat time.Duration
	width     func() int // the terminal's columns; 0: unknown
	now       func() time.Time

	spin           []string
	doneMk, failMk string

	mu      sync.Mutex
	cur     *Step
	drawn   bool // the spinner line is on the screen
	midLine bool // a wrapped writer left a line unfinished: do not draw
	frameN  int
}

// Step is one step of a Reporter's work.
type Step struct {
	r     *Reporter
	name  string
	note  string
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

// New reports to w: a spinner if w is a terminal and $TERM names one
// that is not dumb (a serial console, as the nested test host's, has no
// TERM), plain lines otherwise.
func New(w io.Writer) *Reporter {
	term := os.Getenv("TERM")
	return NewMode(w, IsTerminal(w) && term != "" && term != "dumb")
}

// NewMode reports to w as a terminal (tty) or in plain lines.
func NewMode(w io.Writer, tty bool) *Reporter {
	r := &Reporter{w: w, tty: tty, Heartbeat: DefaultHeartbeat, now: time.Now,
		width: func() int { return termWidth(w) }}
	if utf8Locale() {
		r.spin = strings.Split("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏", "")
		r.doneMk, r.failMk = "✓", "✗"
	} else {
		r.spin = []string{"|", "/", "-", `\`}
		r.doneMk, r.failMk = "ok", "FAILED"
	}
	return r
}

// IsTerminal says whether w is a terminal: a file whose descriptor
// answers TCGETS, as isatty(3) asks.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Terminal says whether r draws a spinner.
func (r *Reporter) Terminal() bool { return r != nil && r.tty }

func termWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// utf8Locale says whether the locale's characters are UTF-8 (the
// spinner's braille and the check mark need it).
func utf8Locale() bool {
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if v := os.Getenv(k); v != "" {
			v = strings.ToUpper(v)
			return strings.Contains(v, "UTF-8") || strings.Contains(v, "UTF8")
		}
	}
	return false
}

// Elapsed writes a duration for a person: 0.4s, 12.3s, 1m05s.
func Elapsed(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// Start begins a step named by format and args ("images: building
// initramfs"), ending the one running.
func (r *Reporter) Start(format string, args ...any) *Step {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.cur != nil {
		r.finishLocked(r.cur, nil)
	}
	s := &Step{r: r, name: fmt.Sprintf(format, args...), start: r.now(), stop: make(chan struct{}), done: make(chan struct{})}
	r.cur = s
	if r.tty {
		r.drawLocked()
	} else {
		fmt.Fprintf(r.w, "%s ...\n", s.name)
	}
	r.mu.Unlock()
	go s.tick()
	return s
}

// tick redraws a terminal's spinner, or writes plain output's heartbeat,
// until the step ends.
func (s *Step) tick() {
	defer close(s.done)
	r := s.r
	every := frame
	if !r.tty {
		if r.Heartbeat <= 0 {
			<-s.stop
			return
		}
		every = r.Heartbeat
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		if r.cur == s {
			if r.tty {
				r.frameN++
				r.drawLocked()
			} else {
				fmt.Fprintf(r.w, "%s: still running after %s\n", s.name, Elapsed(r.now().Sub(s.start)))
			}
		}
		r.mu.Unlock()
	}
}

// Note says what the step is doing now ("downloading"): on a terminal
// after its name on the spinner line, else as a line of its own.
func (s *Step) Note(format string, args ...any) {
	if s == nil {
		return
	}
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != s {
		return
	}
	s.note = fmt.Sprintf(format, args...)
	if r.tty {
		r.drawLocked()
	} else {
		fmt.Fprintf(r.w, "%s: %s\n", s.name, s.note)
	}
}

// Note notes on the running step, if any.
func (r *Reporter) Note(format string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	s := r.cur
	r.mu.Unlock()
	s.Note(format, args...)
}

// Done ends the step: its line with the time it took.
func (s *Step) Done() { s.end(nil) }

// Fail ends the step as failed, with why.
func (s *Step) Fail(err error) {
	if err == nil {
		err = fmt.Errorf("failed")
	}
	s.end(err)
}

func (s *Step) end(err error) {
	if s == nil {
		return
	}
	r := s.r
	r.mu.Lock()
	if r.cur == s {
		r.finishLocked(s, err)
	}
	r.mu.Unlock()
	<-s.done
}

// finishLocked writes the end of s, the running step, and stops its
// ticker (which waits for r.mu: its done is not waited for here).
func (r *Reporter) finishLocked(s *Step, err error) {
	r.cur = nil
	close(s.stop)
	took := Elapsed(r.now().Sub(s.start))
	if r.tty {
		r.clearLocked()
		mark, tail := r.doneMk, ""
		if err != nil {
			mark, tail = r.failMk, ": "+err.Error()
		}
		fmt.Fprintf(r.w, "%s %s (%s)%s\n", mark, s.name, took, tail)
		return
	}
	if err != nil {
		fmt.Fprintf(r.w, "%s: failed after %s: %v\n", s.name, took, err)
		return
	}
	fmt.Fprintf(r.w, "%s: done in %s\n", s.name, took)
}

// Printf writes a line of its own (a warning, a summary), above the
// spinner on a terminal.
func (r *Reporter) Printf(format string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearLocked()
	line := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	io.WriteString(r.w, line)
	r.midLine = false
	r.drawLocked()
}

// drawLocked draws the running step's spinner line, cut to the
// terminal's width (a line that wraps could not be redrawn in place).
func (r *Reporter) drawLocked() {
	s := r.cur
	if !r.tty || s == nil || r.midLine {
		return
	}
	head := r.spin[r.frameN%len(r.spin)] + " "
	tail := " (" + Elapsed(r.now().Sub(s.start)) + ")"
	if s.note != "" {
		tail = ": " + s.note + tail
	}
	fmt.Fprintf(r.w, "\r%s\x1b[K", fit(head, s.name, tail, r.width()-1))
	r.drawn = true
}

// fit joins head, name and tail in at most width characters (none: any
// width): the name is cut first, so the note and the time stay in view;
// if that is not enough, the line's end.
func fit(head, name, tail string, width int) string {
	line := head + name + tail
	n := utf8.RuneCountInString(line)
	if width <= 0 || n <= width {
		return line
	}
	over := n - width + 1 // and one for the ellipsis
	if rs := []rune(name); len(rs)-over >= 8 {
		return head + string(rs[:len(rs)-over]) + "…" + tail
	}
	rs := []rune(line)
	return string(rs[:width-1]) + "…"
}

// clearLocked erases the spinner line, if drawn.
func (r *Reporter) clearLocked() {
	if r.drawn {
		io.WriteString(r.w, "\r\x1b[K")
		r.drawn = false
	}
}

// Wrap returns a writer for other output to the same screen (logs, a
// guest's console): on a terminal each write clears the spinner line
// first and draws it again after a write that ends a line. Elsewhere it
// is w itself.
func (r *Reporter) Wrap(w io.Writer) io.Writer {
	if r == nil || !r.tty || w == nil {
		return w
	}
	return &wrapped{r: r, w: w}
}

type wrapped struct {
	r *Reporter
	w io.Writer
}

func (x *wrapped) Write(p []byte) (int, error) {
	r := x.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if !r.midLine {
		r.clearLocked()
	}
	n, err := x.w.Write(p)
	r.midLine = p[len(p)-1] != '\n'
	r.drawLocked()
	return n, err
}
