package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/pktbuild"
	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestCtlFlows: hvnet ctl flow-export (show, set, a refusal) and flows
// against a daemon's API with a flow exporter.
func TestCtlFlows(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	for _, n := range []string{"a", "b"} {
		if _, err := sw.AddPort(vswitch.PortConfig{Name: n, PVID: 10}, ctlPort{}); err != nil {
			t.Fatal(err)
		}
	}
	fx := ipfix.New(sw, ipfix.Options{})
	defer fx.Close()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	srv := api.NewServer(sw, api.Options{FlowExport: fx})
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.ServeListener(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	if code, out, errs := runCtl(t, sock, "flow-export"); code != 0 || !strings.Contains(out, "flow export: off") || !strings.Contains(out, "1=a 2=b") {
		t.Fatalf("flow-export = %d %q %q", code, out, errs)
	}
	if code, _, errs := runCtl(t, sock, "flows"); code != 1 || !strings.Contains(errs, "flow export is off") {
		t.Fatalf("flows while off = %d %q", code, errs)
	}
	col, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	code, out, errs := runCtl(t, sock, "flow-export", "set", "collectors="+col.LocalAddr().String(), "idle-timeout=30s", "sampling=1")
	if code != 0 || !strings.Contains(out, "flow export: on, IPFIX to "+col.LocalAddr().String()) || !strings.Contains(out, "idle_timeout 30s") {
		t.Fatalf("flow-export set = %d %q %q", code, out, errs)
	}
	if code, _, errs := runCtl(t, sock, "flow-export", "set", "collectors=nowhere"); code != 1 || !strings.Contains(errs, "collectors[0]") {
		t.Fatalf("flow-export set collectors=nowhere = %d %q", code, errs)
	}
	if code, _, errs := runCtl(t, sock, "flow-export", "set", "colour=red"); code != 2 || !strings.Contains(errs, `unknown key "colour"`) {
		t.Fatalf("flow-export set colour = %d %q", code, errs)
	}
	ma, mb := vswitch.MAC{2, 0, 0, 0, 0, 1}, vswitch.MAC{2, 0, 0, 0, 0, 2}
	sw.Port("b").Input([]vswitch.Frame{{Data: pktbuild.Frame{Dst: vswitch.Broadcast, Src: mb, EtherType: 0x0806, Size: 60}.Bytes()}})
	f := pktbuild.Frame{Dst: mb, Src: ma, SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"),
		Proto: pktbuild.TCP, SPort: 40000, DPort: 443, TCPFlags: 0x12, Size: 1000}
	fs := make([]vswitch.Frame, 4)
	for i := range fs {
		fs[i].Data = f.Bytes()
	}
	sw.Port("a").Input(fs)
	code, out, errs = runCtl(t, sock, "flows", "--limit", "1")
	if code != 0 || !strings.Contains(out, "2 flow(s) in the cache; the 1 with the most bytes") {
		t.Fatalf("flows = %d %q %q", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "IN") {
		t.Fatalf("flows table:\n%s", out)
	}
	row := strings.Fields(lines[2])
	if strings.Join(row[:9], " ") != "a b 10 tcp 10.0.0.1:40000 10.0.0.2:443 4 4000 AS" {
		t.Fatalf("flows row %q", lines[2])
	}
	if code, out, _ = runCtl(t, sock, "flow-export", "set", "enabled=off"); code != 0 || !strings.Contains(out, "flow export: off") || !strings.Contains(out, "records 2") {
		t.Fatalf("flow-export set enabled=off = %d %q", code, out)
	}
}

// TestSwitchFlowFlags: hvnet switch refuses bad --flow-* values naming
// the flag, before it starts anything.
func TestSwitchFlowFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--flow-collector", "127.0.0.1:4739", "--flow-collector", "nowhere"}, `--flow-collector #2 "nowhere": want HOST:PORT`},
		{[]string{"--flow-collector", "127.0.0.1:4739", "--flow-sampling", "-1"}, `--flow-sampling "-1": want 1..`},
		{[]string{"--flow-idle-timeout", "1ns", "--flow-export"}, `--flow-idle-timeout "1ns"`},
		{[]string{"--flow-max-flows", "-3"}, `--flow-max-flows "-3"`},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"switch", "--api", ""}, c.args...), nil, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("switch %v = %d %q, want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}
