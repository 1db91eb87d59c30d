package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tcpdumpCount reads a pcap file (path, or "-" with stdin) with tcpdump
// and returns its one-line-per-frame output.
func tcpdumpCount(t *testing.T, path string, stdin []byte) []string {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is missing: apt-get install tcpdump (./run.sh installs it)")
	}
	cmd := exec.Command("tcpdump", "-n", "-e", "-r", path)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("tcpdump -r %s: %v: %s", path, err, errb.String())
	}
	s := strings.TrimSpace(out.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitFor polls cond (the server acts on a closed connection in its own
// goroutine); it never measures time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCaptureConcurrent(t *testing.T) {
	e := newEnv(t)
	c1, err := e.c.Capture(ctx(t), "a", DirIngress, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	cctx, cancel := context.WithCancel(ctx(t))
	c2, err := e.c.Capture(cctx, "b", DirEgress, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr2 := make([]byte, 24)
	if _, err := io.ReadFull(c2, hdr2); err != nil {
		t.Fatal(err)
	}
	hdr1 := make([]byte, 24)
	if _, err := io.ReadFull(c1, hdr1); err != nil {
		t.Fatal(err)
	}
	// Both taps are registered once their headers arrived.
	if a, b := e.sw.Port("a").Config(), e.sw.Port("b").Config(); !a.MirrorIngress || a.MirrorEgress || !b.MirrorEgress || b.MirrorIngress {
		t.Fatalf("mirror flags a=%v/%v b=%v/%v, want a ingress, b egress", a.MirrorIngress, a.MirrorEgress, b.MirrorIngress, b.MirrorEgress)
	}
	e.send("a", mac(1), mac(2), 3)
	e.send("a", mac(1), mac(2), 4) // the capture of a stops after 5 of these 7
	rest, err := io.ReadAll(c1)
	if err != nil {
		t.Fatal(err)
	}
	if lines := tcpdumpCount(t, "-", append(hdr1, rest...)); len(lines) != 5 || !strings.Contains(lines[0], "02:00:00:00:00:01 > 02:00:00:00:00:02") {
		t.Fatalf("tcpdump -r - of capture a: %q, want 5 frames", lines)
	}
	// b saw the 7 frames egress: 16-byte record headers and 64-byte frames.
	body := make([]byte, 7*(16+64))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	cancel()
	c2.Close()
	if lines := tcpdumpCount(t, "-", append(hdr2, body...)); len(lines) != 7 {
		t.Fatalf("tcpdump -r - of capture b: %d lines, want 7", len(lines))
	}
	waitFor(t, "mirror flags cleared", func() bool {
		a, b := e.sw.Port("a").Config(), e.sw.Port("b").Config()
		return !a.MirrorIngress && !b.MirrorEgress
	})
	if _, err := e.c.Capture(ctx(t), "zz", "", 0); err == nil {
		t.Fatal("capture of an unknown port succeeded")
	} else {
		wantError(t, err, http.StatusNotFound, "port")
	}
	_, err = e.c.Capture(ctx(t), "a", "sideways", 0)
	wantError(t, err, http.StatusBadRequest, "direction")
}

func TestMirrorFile(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(e.captureDir, "t.pcap")
	if err := e.c.StartMirror(ctx(t), MirrorSpec{Port: "t", Direction: DirEgress, File: "t.pcap"}); err != nil {
		t.Fatal(err)
	}
	if !e.sw.Port("t").Config().MirrorEgress {
		t.Fatal("mirror did not set MirrorEgress")
	}
	wantError(t, e.c.StartMirror(ctx(t), MirrorSpec{Port: "t", File: file}), http.StatusConflict, "port")
	wantError(t, e.c.StartMirror(ctx(t), MirrorSpec{Port: "zz", File: file}), http.StatusNotFound, "port")
	wantError(t, e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: ""}), http.StatusBadRequest, "file")
	wantError(t, e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", Direction: "up", File: file}), http.StatusBadRequest, "direction")
	wantError(t, e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: "nonexistent/dir/x.pcap"}), http.StatusUnprocessableEntity, "file")
	if e.sw.Port("a").Config().MirrorIngress {
		t.Fatal("failed mirror requests set flags on a")
	}
	e.send("a", mac(1), mac(2), 3) // flooded to b and, tagged, to t
	info, err := e.c.StopMirror(ctx(t), "t")
	if err != nil {
		t.Fatal(err)
	}
	if info.Frames != 3 || info.Dropped != 0 {
		t.Fatalf("mirror info = %+v, want 3 frames", info)
	}
	if e.sw.Port("t").Config().MirrorEgress {
		t.Fatal("stopped mirror left MirrorEgress set")
	}
	lines := tcpdumpCount(t, file, nil)
	if len(lines) != 3 || !strings.Contains(lines[0], "vlan 10") {
		t.Fatalf("tcpdump -r %s = %q, want 3 frames tagged vlan 10", file, lines)
	}
	_, err = e.c.StopMirror(ctx(t), "t")
	wantError(t, err, http.StatusNotFound, "port")
}
