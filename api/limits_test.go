package api

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// limitEnv is newEnv with the server's limits set to l.
func limitEnv(t *testing.T, l Limits) *env {
	t.Helper()
	return newEnvWith(t, func(o *Options) { o.Limits = l })
}

func dialRaw(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// slowLoris connects and sends half a request header, never the rest.
func slowLoris(t *testing.T, sock string) net.Conn {
	t.Helper()
	c := dialRaw(t, sock)
	if _, err := io.WriteString(c, "GET /v1/ports HTTP/1.1\r\nHost: hvnet\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	return c
}

// readUntilClosed reads c until the server closes it and returns what it
// sent; the 10 s deadline only guards against a hang.
func readUntilClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server never closed the connection (got %q)", b)
	}
	return string(b)
}

// A flood of half-written requests, more than the connection limit: each
// is closed by ReadHeaderTimeout without an answer, the limit is counted,
// and a well-behaved client is answered.
func TestSlowLorisFlood(t *testing.T) {
	const maxConns = 4
	e := limitEnv(t, Limits{ReadHeaderTimeout: 100 * time.Millisecond, MaxConns: maxConns})
	var slow []net.Conn
	for range 3 * maxConns {
		slow = append(slow, slowLoris(t, e.sock))
	}
	waitFor(t, "the connection limit to be reached", func() bool { return e.srv.stats.connWaits.Load() > 0 })
	ps, err := e.c.Ports(ctx(t))
	if err != nil || len(ps) != 3 {
		t.Fatalf("well-behaved client during the flood: %d ports, %v", len(ps), err)
	}
	for i, c := range slow {
		if got := readUntilClosed(t, c); got != "" {
			t.Errorf("slow connection %d was answered %q, want closed without an answer", i, got)
		}
	}
	m, err := e.c.Metrics(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m, `hvnet_api_limit_reached_total{limit="connections"} `) ||
		strings.Contains(m, `hvnet_api_limit_reached_total{limit="connections"} 0`+"\n") {
		t.Fatalf("metrics do not count the connection limit:\n%s", m)
	}
}

// The limit holds: while MaxConns connections are open, a further request
// is not served (it waits in the backlog); once one closes, it is.
func TestConnLimitHolds(t *testing.T) {
	e := limitEnv(t, Limits{ReadHeaderTimeout: time.Minute, MaxConns: 2})
	a, _ := slowLoris(t, e.sock), slowLoris(t, e.sock)
	waitFor(t, "both slots taken", func() bool { return e.srv.stats.connWaits.Load() > 0 })
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := e.c.Ports(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request beyond the limit: %v, want it to wait (context deadline exceeded)", err)
	}
	a.Close()
	if _, err := e.c.Ports(ctx(t)); err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
}

// A request whose body stalls is answered 408 after ReadTimeout, its
// connection closed, and nothing changes.
func TestSlowBody(t *testing.T) {
	e := limitEnv(t, Limits{ReadHeaderTimeout: 100 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	c := dialRaw(t, e.sock)
	io.WriteString(c, "POST /v1/fdb HTTP/1.1\r\nHost: hvnet\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"port\":")
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // hang guard
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body answered %s, want 408", resp.Status)
	}
	readUntilClosed(t, c)
	if fdb, _ := e.c.FDB(ctx(t), "", 0, ""); len(fdb) != 0 {
		t.Fatalf("FDB after a stalled request: %+v", fdb)
	}
}

// A kept-alive connection is closed after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	e := limitEnv(t, Limits{IdleTimeout: 100 * time.Millisecond})
	c := dialRaw(t, e.sock)
	io.WriteString(c, "GET /v1/ports HTTP/1.1\r\nHost: hvnet\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/ports: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server did not keep the connection alive")
	}
	if b, err := io.ReadAll(br); errors.Is(err, os.ErrDeadlineExceeded) || len(b) != 0 {
		t.Fatalf("idle connection: read %q, %v; want closed", b, err)
	}
}

// The long-lived routes outlive the read and write timeouts: a capture
// that waits for frames longer than both, and a port whose backend takes
// longer (with its request's context intact).
func TestLongRoutesOutliveTimeouts(t *testing.T) {
	const d = 100 * time.Millisecond
	e := limitEnv(t, Limits{ReadHeaderTimeout: d, ReadTimeout: d, WriteTimeout: d})
	body, err := e.c.Capture(ctx(t), "a", DirIngress, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	waitFor(t, "the capture to start", func() bool { return e.sw.Port("a").Config().MirrorIngress })
	time.Sleep(4 * d) // past every timeout
	e.send("a", mac(1), mac(2), 3)
	if n := pcapRecords(t, body); n != 3 {
		t.Fatalf("capture read %d records, want 3", n)
	}

	e.factory.before = func(ctx context.Context) error {
		time.Sleep(4 * d)
		return ctx.Err()
	}
	if _, err := e.c.AddPort(ctx(t), PortSpec{Kind: KindVhostUser,
		Config: PortConfig{Name: "v", Mode: "access", PVID: 1}, Options: Opts("socket", "v.sock")}); err != nil {
		t.Fatalf("slow POST /v1/ports: %v", err)
	}
	if e.sw.Port("v") == nil {
		t.Fatal("the slow port was not added")
	}
}

// pcapRecords reads a pcap stream to its end and counts its records.
func pcapRecords(t *testing.T, r io.Reader) int {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read pcap: %v", err)
	}
	if len(b) < 24 {
		t.Fatalf("pcap stream of %d bytes", len(b))
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return n
}

// A capture reader that stops reading is cut off after WriteTimeout (its
// tap goes, and the port's mirror flag with it), without slowing the switch.
func TestStalledCaptureCutOff(t *testing.T) {
	e := limitEnv(t, Limits{WriteTimeout: 100 * time.Millisecond})
	c := dialRaw(t, e.sock)
	io.WriteString(c, "GET /v1/capture/a?direction=ingress HTTP/1.1\r\nHost: hvnet\r\n\r\n")
	waitFor(t, "the capture to start", func() bool { return e.sw.Port("a").Config().MirrorIngress })
	waitFor(t, "the stalled capture to be cut off", func() bool {
		e.send("a", mac(1), mac(2), 64) // 64 frames a call, never read
		return !e.sw.Port("a").Config().MirrorIngress
	})
	if e.srv.stats.captures.Load() != 0 {
		t.Fatalf("%d captures still counted", e.srv.stats.captures.Load())
	}
}

// Live captures beyond MaxCaptures are answered 429 and counted; a freed
// one can be used again.
func TestCaptureLimit(t *testing.T) {
	e := limitEnv(t, Limits{MaxCaptures: 1})
	cctx, cancel := context.WithCancel(ctx(t))
	first, err := e.c.Capture(cctx, "a", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Capture(ctx(t), "b", "", 0)
	wantError(t, err, http.StatusTooManyRequests, "")
	if e.srv.stats.capturesRefused.Load() != 1 {
		t.Fatalf("refused captures counted %d, want 1", e.srv.stats.capturesRefused.Load())
	}
	cancel()
	first.Close()
	waitFor(t, "the first capture to end", func() bool { return e.srv.stats.captures.Load() == 0 })
	second, err := e.c.Capture(ctx(t), "b", "", 0)
	if err != nil {
		t.Fatalf("capture after the first ended: %v", err)
	}
	second.Close()
}

func TestLimitsDefaults(t *testing.T) {
	for _, tc := range []struct{ in, want Limits }{
		{Limits{}, Limits{DefaultReadHeaderTimeout, DefaultReadTimeout, DefaultWriteTimeout, DefaultIdleTimeout, DefaultMaxConns, DefaultMaxCaptures, DefaultMaxPorts, DefaultMaxStaticEntries}},
		{Limits{MaxConns: 4, MaxCaptures: 10, ReadTimeout: -1}, Limits{DefaultReadHeaderTimeout, DefaultReadTimeout, DefaultWriteTimeout, DefaultIdleTimeout, 4, 3, DefaultMaxPorts, DefaultMaxStaticEntries}},
		{Limits{MaxConns: 1}, Limits{DefaultReadHeaderTimeout, DefaultReadTimeout, DefaultWriteTimeout, DefaultIdleTimeout, 1, 1, DefaultMaxPorts, DefaultMaxStaticEntries}},
	} {
		if got := tc.in.withDefaults(); got != tc.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
