package main

import (
	"bytes"
	"strings"
	"testing"
)

// The nested demo's console: the capture between its markers is decoded,
// every other line passes on, and the verdict line is remembered (what
// demoNested trusts when the test host fails after it).
func TestPcapConsoleVerdict(t *testing.T) {
	for _, tc := range []struct {
		verdict string
		status  int
		seen    bool
	}{
		{"result: every expectation held (guests ran for 34.2 s)", 0, true},
		{"result: 2 expectation(s) failed:", 1, true},
		{"", 0, false},
	} {
		var out bytes.Buffer
		c := newPcapConsole(&out)
		var capture bytes.Buffer
		if err := writeBase64(&capture, []byte("pcap bytes")); err != nil {
			t.Fatal(err)
		}
		text := "demo: booting\n" + capture.String() + "\n" + tc.verdict + "\n"
		if _, err := c.Write([]byte(text)); err != nil {
			t.Fatal(err)
		}
		if !c.done() {
			t.Fatalf("%q: the capture was not seen whole", tc.verdict)
		}
		if b, err := c.pcap(); err != nil || string(b) != "pcap bytes" {
			t.Fatalf("%q: capture %q, %v", tc.verdict, b, err)
		}
		st, ok := c.verdict()
		if ok != tc.seen || st != tc.status {
			t.Errorf("%q: verdict %d %v, want %d %v", tc.verdict, st, ok, tc.status, tc.seen)
		}
		if strings.Contains(out.String(), pcapBegin) || !strings.Contains(out.String(), "demo: booting") {
			t.Errorf("%q: console passed on %q", tc.verdict, out.String())
		}
	}
}
