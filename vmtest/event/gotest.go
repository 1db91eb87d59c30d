package event

import (
	"strconv"
	"strings"
)

// maxTestOutput bounds the output kept per test (its last bytes are
// kept): an event stays far below MaxLine whatever a test prints.
const maxTestOutput = 256 << 10

// marker starts the framing lines of a test binary run with
// -test.v=test2json (Go's testing package; cmd/test2json reads the same):
// output a test prints can never be taken for one.
const marker = '\x16'

// GoTests turns the output of a Go test binary run with
// -test.v=test2json into one Test per test and subtest, passed to Emit as
// each ends. Feed it lines with Line, then call Finish.
type GoTests struct {
	Binary string           // the binary's base name, copied into each Test
	Emit   func(Test) error // called as each test ends

	cur     string
	out     map[string]*strings.Builder
	started []string // tests running or paused, in start order
	done    int      // tests that reported
	failed  bool
}

// Line takes one line of output (without its newline).
func (g *GoTests) Line(line string) error {
	if g.out == nil {
		g.out = map[string]*strings.Builder{}
	}
	if len(line) == 0 || line[0] != marker {
		g.output(g.cur, line)
		return nil
	}
	f := line[1:]
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if rest, ok := strings.CutPrefix(f, p); ok {
			g.cur = strings.TrimSpace(rest)
			if p == "=== RUN" && g.cur != "" {
				g.started = append(g.started, g.cur)
			}
			return nil
		}
	}
	for _, a := range []string{"PASS", "FAIL", "SKIP"} {
		rest, ok := strings.CutPrefix(f, "--- "+a+": ")
		if !ok {
			continue
		}
		name, el := rest, 0.0
		if i := strings.LastIndex(rest, " ("); i >= 0 && strings.HasSuffix(rest, "s)") {
			name = rest[:i]
			el, _ = strconv.ParseFloat(rest[i+2:len(rest)-2], 64)
		}
		return g.end(name, strings.ToLower(a), el, "")
	}
	// "PASS", "FAIL": the binary's verdict; the tests carry it.
	return nil
}

func (g *GoTests) output(name, line string) {
	b := g.out[name]
	if b == nil {
		b = &strings.Builder{}
		g.out[name] = b
	}
	if b.Len()+len(line)+1 > maxTestOutput {
		s := b.String()
		keep := max(0, maxTestOutput/2-len(line))
		b.Reset()
		b.WriteString("[... output cut ...]\n")
		b.WriteString(s[len(s)-min(len(s), keep):])
	}
	b.WriteString(line)
	b.WriteByte('\n')
}

func (g *GoTests) end(name, action string, elapsed float64, extra string) error {
	t := Test{Binary: g.Binary, Test: name, Action: action, Elapsed: elapsed}
	if b := g.out[name]; b != nil {
		t.Output = b.String()
		delete(g.out, name)
	}
	t.Output += extra
	for i, s := range g.started {
		if s == name {
			g.started = append(g.started[:i], g.started[i+1:]...)
			break
		}
	}
	g.done++
	if action == "fail" {
		g.failed = true
	}
	if g.Emit == nil {
		return nil
	}
	return g.Emit(t)
}

// Finish ends the run: exit is how the binary ended ("" when it exited
// 0). A test that started and never reported (the binary panicked,
// timed out or was killed) fails with what it printed and exit, and so
// does a binary that failed without any test failing (a TestMain, a
// build for the wrong system): as a test named after the binary. It
// reports whether everything passed.
func (g *GoTests) Finish(exit string) (bool, error) {
	for len(g.started) > 0 {
		name := g.started[len(g.started)-1]
		if err := g.end(name, "fail", 0, "test binary ended without a result for this test: "+exit+"\n"); err != nil {
			return false, err
		}
	}
	// What the binary printed outside any running test (a panic's trace
	// after its test's FAIL line, the coverage summary, TestMain's
	// output): with a failure named after the binary when no test
	// failed, else as output of the binary's (Action "output").
	var rest strings.Builder
	for _, b := range g.out {
		rest.WriteString(b.String())
	}
	g.out = map[string]*strings.Builder{}
	switch {
	case exit != "" && !g.failed:
		if err := g.end("", "fail", 0, rest.String()+g.Binary+": "+exit+"\n"); err != nil {
			return false, err
		}
	case exit != "" && rest.Len() > 0:
		if err := g.end("", "output", 0, rest.String()+g.Binary+": "+exit+"\n"); err != nil {
			return false, err
		}
	}
	return !g.failed, nil
}
