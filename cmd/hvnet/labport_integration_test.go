package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/vmtest"
)

// labPortSpec is a lab guest port on access VLAN 10.
func labPortSpec(name, ip, script string) api.PortSpec {
	return api.PortSpec{Kind: api.KindLab, Config: api.PortConfig{Name: name, Mode: "access", PVID: 10, MACLimit: 4}, Options: api.Opts("ip", ip, "mem", "192M", "cmd", script)}
}

// waitLog waits until the daemon's log holds s (deadlock guard: limit).
func waitLog(t *testing.T, d *daemonProc, s string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for !strings.Contains(d.logs.String(), s) {
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited (%v) before logging %q:\n%s", err, s, d.logs)
		case <-deadline:
			t.Fatalf("no %q in the daemon's log after %v:\n%s", s, limit, d.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestLabPortsAPI adds three lab guests to a running daemon through its
// control API: a and x sleep, b pings a, then x, then (once x's port is
// deleted while x runs) a again, and ends with 0. The test watches the
// guests' states through port info, checks the switch counters, deletes
// x (its VMM stops, its port and FDB entries go, b still reaches a), and
// checks that a duplicate name is refused without touching the guest.
func TestLabPortsAPI(t *testing.T) {
	if vmtest.Nest(t, vmtest.NestOptions{Timeout: 5 * time.Minute}) {
		return
	}
	set := vmtest.Images(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	d := startHvnet(t, nil, "--log-level", "debug", "switch", "--api", sock, "--kernel", set.Kernel, "--initrd", set.Initrd)
	c := d.waitAPI(t, sock)
	ctx := context.Background()

	ping := func(addr string) string {
		return "for i in $(seq 1 90); do if ping -c 1 -w 1000 " + addr + "; then break; fi; done\n"
	}
	bScript := ping("10.0.0.1") + "ping -c 3 10.0.0.1 || exit 3\n" +
		ping("10.0.0.3") + "ping -c 1 -w 1000 10.0.0.3 || exit 4\necho X-REACHED\n" +
		"for i in $(seq 1 300); do if ping -c 1 -w 1000 10.0.0.3; then sleep 1; else break; fi; done\n" +
		"echo X-GONE\nping -c 3 10.0.0.1 || exit 5\n"
	for _, s := range []api.PortSpec{
		labPortSpec("a", "10.0.0.1/24", "sleep 600"),
		labPortSpec("x", "10.0.0.3/24", "sleep 600"),
		labPortSpec("b", "10.0.0.2/24", bScript),
	} {
		p, err := c.AddPort(ctx, s)
		if err != nil {
			t.Fatalf("add %s: %v\n%s", s.Config.Name, err, d.logs)
		}
		if p.Guest == nil || p.Guest.State != api.GuestBooting && p.Guest.State != api.GuestRunning || p.Config.MACLimit != 4 {
			t.Errorf("add %s answered %+v, guest %+v", s.Config.Name, p.Config, p.Guest)
		}
	}
	// A second "a" is refused; the running a is untouched.
	_, err := c.AddPort(ctx, labPortSpec("a", "10.0.0.9/24", "exit 0"))
	wantAPIError(t, "duplicate a", err, http.StatusConflict, "config.name", "")

	waitLog(t, d, "X-REACHED", 3*time.Minute)
	px, err := c.Port(ctx, "x")
	if err != nil || px.Guest == nil || px.Guest.State != api.GuestRunning || px.Counters.RxPackets == 0 || px.Counters.TxPackets == 0 {
		t.Fatalf("x before its removal: %+v %+v, %v", px.Guest, px.Counters, err)
	}
	if err := c.DeletePort(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, "guest ended: guest=x", 30*time.Second) // its VMM stopped
	if _, err := c.Port(ctx, "x"); err == nil {
		t.Error("port x still there after DELETE")
	}
	if fdb, err := c.FDB(ctx, "x", 0, ""); err == nil && len(fdb) != 0 {
		t.Errorf("FDB entries of x after DELETE: %+v", fdb)
	}

	// b ends with 0 once it reached a again without x.
	var pb api.Port
	for deadline := time.After(3 * time.Minute); ; {
		if pb, err = c.Port(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if pb.Guest != nil && pb.Guest.State == api.GuestExited {
			break
		}
		select {
		case <-deadline: // deadlock guard
			t.Fatalf("b never exited: %+v\n%s", pb.Guest, d.logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if pb.Guest.Status == nil || *pb.Guest.Status != 0 || pb.Guest.Error != "" {
		t.Errorf("b ended %+v (status %v), want status 0\n%s", pb.Guest, pb.Guest.Status, d.logs)
	}
	if !strings.Contains(d.logs.String(), "X-GONE") {
		t.Error("b never saw x go")
	}
	pa, err := c.Port(ctx, "a")
	if err != nil || pa.Guest == nil || pa.Guest.State != api.GuestRunning {
		t.Errorf("a after the run: %+v, %v", pa.Guest, err)
	}
	if pa.Counters.RxPackets < 6 || pa.Counters.TxPackets < 6 || pb.Counters.RxPackets < 6 {
		t.Errorf("counters did not move: a %+v, b %+v", pa.Counters, pb.Counters)
	}
	for _, n := range []string{"a", "b"} {
		if err := c.DeletePort(ctx, n); err != nil {
			t.Error(err)
		}
	}
	if ps, err := c.Ports(ctx); err != nil || len(ps) != 0 {
		t.Errorf("ports after deleting all: %+v, %v", ps, err)
	}
	d.term(t)
}
