package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
)

type ctlPort struct{}

func (ctlPort) Send(f []vswitch.Frame) int { return len(f) }
func (ctlPort) Caps() vswitch.Caps         { return 0 }

// ctlDaemon serves a switch with ports a and b (access VLAN 10); its
// file mirrors go to a temporary directory.
func ctlDaemon(t *testing.T) (*vswitch.Switch, string) {
	t.Helper()
	clock := vswitch.NewManualClock(1_700_000_000_000_000_000)
	sw := vswitch.New(vswitch.Config{Clock: clock})
	for _, n := range []string{"a", "b"} {
		if _, err := sw.AddPort(vswitch.PortConfig{Name: n, PVID: 10}, ctlPort{}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	srv := api.NewServer(sw, api.Options{CaptureDir: filepath.Join(filepath.Dir(sock), "captures")})
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.ServeListener(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sw, sock
}

func ctlFrames(n int) []vswitch.Frame {
	fs := make([]vswitch.Frame, n)
	for i := range fs {
		b := make([]byte, 64)
		copy(b, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		fs[i].Data = b
	}
	return fs
}

func runCtl(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"ctl", "--socket", sock}, args...), nil, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCtl(t *testing.T) {
	sw, sock := ctlDaemon(t)
	sw.Port("a").Input(ctlFrames(3))

	code, out, errs := runCtl(t, sock, "ports")
	if code != 0 || !strings.Contains(out, "NAME") || !strings.Contains(out, "RX PKTS") {
		t.Fatalf("ctl ports = %d %q %q", code, out, errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || strings.Index(lines[1], "access") != strings.Index(lines[0], "VLAN MODE") || !strings.Contains(lines[1], "a") {
		t.Fatalf("ctl ports table not aligned:\n%s", out)
	}
	code, out, _ = runCtl(t, sock, "--json", "ports")
	var ps []api.Port
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 2 || ps[0].Counters.RxPackets != 3 {
		t.Fatalf("ctl --json ports = %d %q", code, out)
	}
	if code, out, _ = runCtl(t, sock, "port", "a"); code != 0 || !strings.Contains(out, "drops policer:") {
		t.Fatalf("ctl port a = %d %q", code, out)
	}
	if code, _, errs = runCtl(t, sock, "port", "zz"); code != 1 || !strings.Contains(errs, `no port "zz"`) {
		t.Fatalf("ctl port zz = %d %q", code, errs)
	}

	if code, out, errs = runCtl(t, sock, "set", "a", "vlan=20", "police=8Mbit", "police-pps=500", "mac-limit=3", "rate=100M"); code != 0 {
		t.Fatalf("ctl set = %d %q %q", code, out, errs)
	}
	cfg := sw.Port("a").Config()
	if cfg.PVID != 20 || cfg.Ingress.Bytes.Rate != 1e6 || cfg.Ingress.Packets.Rate != 500 || cfg.MACLimit != 3 || cfg.Egress.Bytes.Rate != 12.5e6 {
		t.Fatalf("after ctl set: %+v", cfg)
	}
	if code, out, _ = runCtl(t, sock, "port", "a"); code != 0 || !strings.Contains(out, "8 Mbit/s, 500 pps") || !strings.Contains(out, "100 Mbit/s") {
		t.Errorf("ctl port a after set: %d %q; want the rates in bit/s and pps", code, out)
	}
	// One vocabulary: the older names are refused with the one to use.
	for bad, want := range map[string]string{"pvid=20": "pvid is now called vlan", "ingress=8Mbit": "ingress is now called police",
		"mode=trunk": "mode is now called vlan-mode", "macs=02:00:00:00:00:01": "macs is now called allowed-macs",
		"vlan=5000": "vlan", "rate=-1": "rate", "colour=red": `unknown key "colour"`, "vlan": "not KEY=VALUE",
		"rate=10MB": "rate", "pps=1.5k": "pps", "vlan-mode=hybrid": "vlan-mode"} {
		code, _, errs := runCtl(t, sock, "set", "a", bad)
		if code != 2 || !strings.Contains(errs, want) {
			t.Errorf("ctl set a %s = %d %q, want status 2 and %q", bad, code, errs, want)
		}
	}
	// Every key --port takes, and only those.
	for _, o := range daemon.CommonOptions() {
		if o.Key == "name" {
			continue
		}
		if _, _, errs := runCtl(t, sock, "set", "a", o.Key+"=?"); strings.Contains(errs, "unknown key") {
			t.Errorf("ctl set %s: %q; want the key taken", o.Key, errs)
		}
	}
	if code, out, errs = runCtl(t, sock, "set", "a", "allowed-macs=02:00:00:00:00:01", "allowed-macs=02:00:00:00:00:02", "vlan-mode=access"); code != 0 ||
		len(sw.Port("a").Config().AllowedMACs) != 2 {
		t.Errorf("ctl set allowed-macs twice = %d %q %q: %+v", code, out, errs, sw.Port("a").Config().AllowedMACs)
	}
	if sw.Port("a").Config().PVID != 20 {
		t.Fatal("a failed set changed the port")
	}

	if code, _, errs = runCtl(t, sock, "fdb", "add", "b", "20", "02:00:00:00:00:07"); code != 0 {
		t.Fatalf("fdb add: %d %q", code, errs)
	}
	if code, out, _ = runCtl(t, sock, "fdb", "--vlan", "20"); code != 0 || !strings.Contains(out, "02:00:00:00:00:07") || !strings.Contains(out, "static") {
		t.Fatalf("fdb --vlan 20 = %d %q", code, out)
	}
	if code, _, errs = runCtl(t, sock, "fdb", "del", "20", "02:00:00:00:00:07"); code != 0 {
		t.Fatalf("fdb del: %d %q", code, errs)
	}
	if code, out, _ = runCtl(t, sock, "fdb", "flush", "--port", "a"); code != 0 || !strings.Contains(out, "flushed") {
		t.Fatalf("fdb flush = %d %q", code, out)
	}

	captures := filepath.Join(filepath.Dir(sock), "captures")
	if err := os.Mkdir(captures, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(captures, "m.pcap")
	if code, out, errs = runCtl(t, sock, "mirror", "start", "a", "m.pcap", "--direction", "ingress"); code != 0 || !strings.Contains(out, file) {
		t.Fatalf("mirror start: %d %q %q, want it to name %s", code, out, errs, file)
	}
	sw.Port("a").Input(ctlFrames(2))
	if code, out, errs = runCtl(t, sock, "mirror", "stop", "a"); code != 0 || !strings.Contains(out, "2 frames") {
		t.Fatalf("mirror stop = %d %q %q", code, out, errs)
	}
	if code, _, errs = runCtl(t, sock, "mirror", "start", "a", "m.pcap"); code != 1 || !strings.Contains(errs, "overwrite") {
		t.Fatalf("mirror start on an existing file = %d %q, want a refusal naming overwrite", code, errs)
	}
	if code, _, errs = runCtl(t, sock, "mirror", "start", "a", "m.pcap", "--overwrite"); code != 0 {
		t.Fatalf("mirror start --overwrite = %d %q", code, errs)
	}
	if code, _, errs = runCtl(t, sock, "mirror", "stop", "a"); code != 0 {
		t.Fatalf("mirror stop = %d %q", code, errs)
	}

	if code, out, _ = runCtl(t, sock, "metrics"); code != 0 || !strings.Contains(out, `hvnet_port_packets_total{direction="ingress",port="a"} 5`) {
		t.Fatalf("metrics = %d %q", code, out)
	}
}

func TestCtlCapture(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is missing: apt-get install tcpdump")
	}
	sw, sock := ctlDaemon(t)
	var wg sync.WaitGroup
	var code int
	var out, errb bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		code = run([]string{"ctl", "--socket", sock, "capture", "a", "--count", "4"}, nil, &out, &errb)
	}()
	for deadline := time.Now().Add(10 * time.Second); !sw.Port("a").Config().MirrorIngress; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("capture did not start")
		}
	}
	sw.Port("a").Input(ctlFrames(4))
	wg.Wait()
	if code != 0 {
		t.Fatalf("ctl capture = %d %q", code, errb.String())
	}
	cmd := exec.Command("tcpdump", "-n", "-r", "-")
	cmd.Stdin = &out
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r -: %v", err)
	}
	if n := strings.Count(string(res), "\n"); n != 4 {
		t.Fatalf("tcpdump read %d frames, want 4:\n%s", n, res)
	}
}

func TestCtlNotRunning(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, sock := range []string{missing, stale} {
		code, _, errs := runCtl(t, sock, "ports")
		want := "daemon not running at " + sock + " (start it with hvnet switch"
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("ctl ports on %s = %d %q, want %q", sock, code, errs, want)
		}
	}
	if code, _, _ := runCtl(t, missing, "frobnicate"); code != 2 {
		t.Errorf("unknown ctl command = %d, want 2", code)
	}
}

// hvnet ctl top shows each port's rates between samples: a port that
// receives frames in the meantime shows them, busiest first.
func TestCtlTop(t *testing.T) {
	sw, sock := ctlDaemon(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a's traffic while top samples
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				sw.Port("a").Input(ctlFrames(10))
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	code, out, errs := runCtl(t, sock, "top", "--count", "2", "--interval", "1s") // 1 s: a rate even if a loaded machine holds the sender for a while
	close(stop)
	<-done
	if code != 0 {
		t.Fatalf("ctl top: %d %s", code, errs)
	}
	tables := strings.Split(out, "hvnet ctl top: ")
	if len(tables) != 3 || !strings.Contains(tables[1], "2 ports") {
		t.Fatalf("ctl top --count 2 printed:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(tables[2]), "\n")
	if len(lines) != 5 || !strings.HasPrefix(strings.TrimSpace(lines[2]), "a ") || !strings.Contains(lines[2], "pps") ||
		strings.Fields(lines[2])[1] == "0" || !strings.Contains(lines[2], "bit/s") || !strings.HasPrefix(strings.TrimSpace(lines[4]), "total ") {
		t.Errorf("ctl top table: want a first with its rates, then b, then the total:\n%s", tables[2])
	}
	if code, _, _ := runCtl(t, sock, "top", "--interval", "1ms"); code != 2 {
		t.Errorf("ctl top --interval 1ms: %d, want a usage error", code)
	}
}
