package event

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// sample is what a Go 1.26 test binary printed with -test.v=test2json:
// output that imitates a framing line, a passing and a failing subtest, a
// skip, two parallel tests.
const sample = "\x16=== RUN   TestA\n" +
	"    a_test.go:3: hello\n" +
	"        --- PASS: fake\n" +
	"stdout line\n" +
	"\x16=== RUN   TestA/sub\n" +
	"    a_test.go:3: in sub\n" +
	"\x16--- PASS: TestA/sub (0.00s)\n" +
	"\x16=== NAME  TestA\n" +
	"\x16=== RUN   TestA/bad\n" +
	"    a_test.go:3: boom\n" +
	"\x16--- FAIL: TestA/bad (0.01s)\n" +
	"\x16=== NAME  TestA\n" +
	"\x16--- FAIL: TestA (0.02s)\n" +
	"\x16=== NAME  \n" +
	"\x16=== RUN   TestB\n" +
	"    a_test.go:4: nope\n" +
	"\x16--- SKIP: TestB (0.00s)\n" +
	"\x16=== NAME  \n" +
	"\x16=== RUN   TestC\n" +
	"\x16=== PAUSE TestC\n" +
	"\x16=== NAME  \n" +
	"\x16=== RUN   TestD\n" +
	"\x16=== PAUSE TestD\n" +
	"\x16=== NAME  \n" +
	"\x16=== CONT  TestC\n" +
	"    a_test.go:5: c\n" +
	"\x16--- PASS: TestC (0.00s)\n" +
	"\x16=== CONT  TestD\n" +
	"    a_test.go:6: d\n" +
	"\x16--- PASS: TestD (0.00s)\n" +
	"\x16FAIL\n"

func run(t *testing.T, text, exit string) ([]Test, bool) {
	t.Helper()
	var got []Test
	g := GoTests{Binary: "x.test", Emit: func(tt Test) error { got = append(got, tt); return nil }}
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if err := g.Line(l); err != nil {
			t.Fatal(err)
		}
	}
	ok, err := g.Finish(exit)
	if err != nil {
		t.Fatal(err)
	}
	return got, ok
}

func TestGoTests(t *testing.T) {
	got, ok := run(t, sample, "exit status 1")
	if ok {
		t.Error("Finish says all passed; TestA failed")
	}
	want := []struct{ name, action, out string }{
		{"TestA/sub", "pass", "in sub"},
		{"TestA/bad", "fail", "boom"},
		{"TestA", "fail", "--- PASS: fake\nstdout line"},
		{"TestB", "skip", "nope"},
		{"TestC", "pass", "c"},
		{"TestD", "pass", "d"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tests, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Test != w.name || g.Action != w.action || !strings.Contains(g.Output, w.out) || g.Binary != "x.test" {
			t.Errorf("test %d = %+v; want %s %s with output containing %q", i, g, w.name, w.action, w.out)
		}
	}
	if got[1].Elapsed != 0.01 {
		t.Errorf("TestA/bad elapsed %v, want 0.01", got[1].Elapsed)
	}
}

// A binary that panics mid-test: the test fails with its output, the
// trace printed after its FAIL line comes as the binary's failure.
func TestGoTestsPanic(t *testing.T) {
	text := "\x16=== RUN   TestP\n    b_test.go:3: before\n\x16--- FAIL: TestP (0.00s)\npanic: kaboom [recovered, repanicked]\n\ngoroutine 19 [running]:\n"
	got, ok := run(t, text, "exit status 2")
	if ok || len(got) != 2 {
		t.Fatalf("ok %v, tests %+v; want TestP and the binary failing", ok, got)
	}
	if got[0].Test != "TestP" || got[0].Action != "fail" || !strings.Contains(got[0].Output, "before") {
		t.Errorf("first %+v", got[0])
	}
	if got[1].Test != "" || got[1].Action != "output" || !strings.Contains(got[1].Output, "panic: kaboom") || !strings.Contains(got[1].Output, "exit status 2") {
		t.Errorf("second %+v", got[1])
	}
}

// Killed while running (a timeout): every started test fails.
func TestGoTestsUnfinished(t *testing.T) {
	text := "\x16=== RUN   TestX\n\x16=== RUN   TestX/y\n    waiting\n"
	got, ok := run(t, text, "signal: killed")
	if ok || len(got) != 2 || got[0].Test != "TestX/y" || got[1].Test != "TestX" ||
		!strings.Contains(got[0].Output, "waiting") || !strings.Contains(got[0].Output, "signal: killed") {
		t.Fatalf("ok %v, %+v", ok, got)
	}
}

// A binary that fails before any test (TestMain, or it cannot run).
func TestGoTestsNoTests(t *testing.T) {
	got, ok := run(t, "fork/exec: exec format error", "exit status 1")
	if ok || len(got) != 1 || got[0].Action != "fail" || !strings.Contains(got[0].Output, "exec format error") {
		t.Fatalf("ok %v, %+v", ok, got)
	}
	if got, ok := run(t, "\x16=== RUN   TestA\n\x16--- PASS: TestA (0.00s)\n\x16PASS", ""); !ok || len(got) != 1 {
		t.Fatalf("a passing binary: ok %v, %+v", ok, got)
	}
}

// The output kept per test is bounded, the newest kept.
func TestGoTestsOutputBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("\x16=== RUN   TestBig\n")
	for i := 0; i < 100000; i++ {
		b.WriteString("line of some length to fill the buffer quickly\n")
	}
	b.WriteString("the last line\n\x16--- PASS: TestBig (1.00s)\n")
	got, _ := run(t, b.String(), "")
	if len(got) != 1 || len(got[0].Output) > maxTestOutput || !strings.HasSuffix(got[0].Output, "the last line\n") {
		t.Fatalf("output %d bytes (bound %d)", len(got[0].Output), maxTestOutput)
	}
}

func TestMarshalParse(t *testing.T) {
	line, err := Marshal(TypeTest, Test{Test: "TestA", Action: "pass"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(append(line[:len(line)-1], '\r', '\n'))
	if err != nil {
		t.Fatal(err)
	}
	var tt Test
	if e.Type != TypeTest || e.Decode(&tt) != nil || tt.Test != "TestA" {
		t.Fatalf("%+v %+v", e, tt)
	}
	for _, bad := range []string{"", "{}", "not json", `{"type":""}`, `{"data":1}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
	if _, err := Marshal("", nil); err == nil {
		t.Error("Marshal took an empty type")
	}
	if _, err := Marshal("big", strings.Repeat("x", MaxLine)); err == nil {
		t.Error("Marshal took a line over MaxLine")
	}
	if err := (Event{Type: "x"}).Decode(&tt); err == nil {
		t.Error("Decode of no data succeeded")
	}
	var raw json.RawMessage
	if err := (Event{Type: "x", Data: json.RawMessage(`{"a":1}`)}).Decode(&raw); err != nil {
		t.Error(err)
	}
}

func TestCollector(t *testing.T) {
	var seen []string
	c := &Collector{On: func(e Event) { seen = append(seen, e.Type) }}
	a, _ := Marshal("a", nil)
	b, _ := Marshal("b", map[string]int{"x": 1})
	// Split anywhere, with junk and an overlong line between.
	in := string(a) + "junk\n\r\n" + string(b[:5])
	c.Write([]byte(in))
	c.Write(b[5:])
	c.Write([]byte(strings.Repeat("y", MaxLine+10)))
	c.Write([]byte("z\n"))
	c.Write(a)
	if got := c.Events(); len(got) != 3 || got[0].Type != "a" || got[1].Type != "b" || got[2].Type != "a" {
		t.Fatalf("events %+v", got)
	}
	if len(seen) != 3 {
		t.Errorf("On saw %v", seen)
	}
	if c.Malformed() != 2 {
		t.Errorf("malformed %d, want 2 (junk, the overlong line)", c.Malformed())
	}
}

func TestWaiter(t *testing.T) {
	var w Waiter
	got := make(chan Event, 1)
	go func() {
		e, err := w.Wait(context.Background(), "srv", TypeReady)
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	w.Add("cli", Event{Type: TypeReady})
	w.Add("srv", Event{Type: "other"})
	w.Add("srv", Event{Type: TypeReady, Data: json.RawMessage(`1`)})
	if e := <-got; e.Type != TypeReady || string(e.Data) != "1" {
		t.Errorf("got %+v", e)
	}
	// Already there: at once.
	if _, err := w.Wait(context.Background(), "cli", TypeReady); err != nil {
		t.Error(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := w.Wait(ctx, "cli", "never"); err == nil {
		t.Error("Wait for an event that never comes returned no error")
	}
}

// What a guest sends is kept up to the bounds; the rest is counted (and
// still seen by On).
func TestCollectorBound(t *testing.T) {
	seen := 0
	c := &Collector{On: func(Event) { seen++ }}
	line, _ := Marshal("x", 1)
	var b []byte
	for range MaxKept + 5 {
		b = append(b, line...)
	}
	c.Write(b)
	if n := len(c.Events()); n != MaxKept || c.Dropped() != 5 || seen != MaxKept+5 {
		t.Fatalf("kept %d, dropped %d, seen %d; want %d, 5, %d", n, c.Dropped(), seen, MaxKept, MaxKept+5)
	}
	big, _ := Marshal("big", strings.Repeat("y", MaxLine/2))
	c2 := &Collector{}
	for range MaxKeptBytes/(MaxLine/2) + 3 {
		c2.Write(big)
	}
	if c2.Dropped() == 0 || len(c2.Events())*(MaxLine/2) > MaxKeptBytes+MaxLine {
		t.Fatalf("kept %d big events, dropped %d", len(c2.Events()), c2.Dropped())
	}
}
