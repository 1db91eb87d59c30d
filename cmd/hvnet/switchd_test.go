package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/internal/lines"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
	"github.com/hvnet/hvnet/vhostuser/frontend"
)

// mainEnv makes the test binary run hvnet itself (see TestMain), so the
// daemon tests start real processes without a go build.
const mainEnv = "HVNET_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// daemonProc is an hvnet process started by a test.
type daemonProc struct {
	cmd  *exec.Cmd
	logs *lines.Buffer
	done chan error
}

// startHvnet runs "hvnet ARGS..." (the test binary), prefixed by wrap
// (e.g. ip netns exec NS); it is killed at cleanup if still running.
func startHvnet(t *testing.T, wrap []string, args ...string) *daemonProc {
	t.Helper()
	argv := append(append(append([]string{}, wrap...), os.Args[0]), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	d := &daemonProc{cmd: cmd, logs: &lines.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// waitAPI waits until the daemon answers on sock.
func (d *daemonProc) waitAPI(t *testing.T, sock string) *api.Client {
	t.Helper()
	c := api.NewClient(sock)
	// A deadlock guard of 30 s: the test binary (built with -race) starts
	// slowly on a loaded machine; the loop ends as soon as it answers.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if _, err := c.Ports(context.Background()); err == nil {
			return c
		}
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited (%v):\n%s", err, d.logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("daemon never served %s:\n%s", sock, d.logs)
	return nil
}

// term sends SIGTERM and checks a clean exit.
func (d *daemonProc) term(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-d.done; err != nil {
		t.Fatalf("daemon exited with %v\n%s", err, d.logs)
	}
	d.done <- nil
	if !strings.Contains(d.logs.String(), "shutting down") {
		t.Errorf("no shutdown log line:\n%s", d.logs)
	}
}

func noFile(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", p, err)
		}
	}
}

// negotiate checks that a vhost-user frontend can talk to the socket.
func negotiate(t *testing.T, sock string) *frontend.Frontend {
	t.Helper()
	f, err := frontend.Dial(sock)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	feats, err := f.GetFeatures()
	if err != nil || feats == 0 {
		t.Fatalf("GET_FEATURES = %#x, %v", feats, err)
	}
	if err := f.SetOwner(); err != nil {
		t.Fatalf("SET_OWNER: %v", err)
	}
	if err := f.SetFeatures(feats); err != nil {
		t.Fatalf("SET_FEATURES: %v", err)
	}
	if n, err := f.GetQueueNum(); err != nil || n == 0 {
		t.Fatalf("GET_QUEUE_NUM = %d, %v", n, err)
	}
	return f
}

func TestSwitchConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	os.WriteFile(good, []byte("# two ports\nport name=a socket=/run/hvnet/a.sock vlan=10\n\n"+
		"port name=b,socket=/tmp/b.sock,mode=client,trunk=10:20,native=1,mtu=9000,rate=10M,police=100Mbit # comment\n"+
		"uplink name=up0 if=eth1 trunk=10:20 native=1 tx=sendmmsg\nvhost-user name=c socket=/tmp/c.sock\n"), 0o644)
	ps, err := daemon.LoadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 {
		t.Fatalf("LoadFile = %+v, want 4 ports", ps)
	}
	a, b, up, v := ps[0], ps[1], ps[2], ps[3]
	if a.Kind != api.KindVhostUser || a.Port.PVID != 10 || b.Values.Get("mode") != "client" || b.Port.Mode != vswitch.ModeTrunk ||
		len(b.Port.AllowedVLANs) != 2 || b.Port.MTU != 9000 || b.Port.Egress.Bytes.Rate != 10e6/8 || b.Port.Ingress.Bytes.Rate != 125e5 {
		t.Fatalf("LoadFile ports = %+v", ps[:2])
	}
	if up.Kind != api.KindUplink || up.Values.Get("if") != "eth1" || up.Values.Get("tx") != "sendmmsg" || up.Port.Name != "up0" ||
		up.Port.Mode != vswitch.ModeTrunk || up.Port.NativeVLAN != 1 || len(up.Port.AllowedVLANs) != 2 {
		t.Fatalf("LoadFile uplink = %+v", up)
	}
	if v.Kind != api.KindVhostUser || v.Name() != "c" {
		t.Fatalf("LoadFile vhost-user line = %+v", v)
	}
	for _, tc := range []struct{ line, want string }{
		{"port name=a socket=/x vlan=5000", `:2: field "vlan"`},
		{"port name=a socket=/x mode=both", `:2: field "mode"`},
		{"port socket=/x", `:2: field "name": missing`},
		{"port name=a", `:2: field "socket": missing`},
		{"port name=a socket=/x colour=red", `:2: field "colour": unknown for kind vhost-user (its keys: socket, mode, queues, mac, socket-mode, socket-owner, socket-group; and those every port takes: hvnet switch --kinds)`},
		{"port name=a socket=/x pvid=3", `:2: field "pvid": is now called vlan`},
		{"port name=a socket=/x mtu", `:2: field "mtu": want KEY=VALUE`},
		{"bridge name=a", `:2: unknown directive "bridge" (want a port kind: bond, lab, uplink, vhost-user, vxlan; or port for vhost-user)`},
		{"port name=a socket=/x native=3", `:2: field "native": only for trunk`},
		{"port name=a socket=/x trunk=10 vlan=3", `:2: field "vlan": only for access`},
		{"uplink name=u", `:2: field "if": missing`},
		{"uplink if=eth1", `:2: field "name": missing`},
		{"uplink name=u if=eth1 tx=fast", `:2: field "tx": "fast" is not ring or sendmmsg`},
		{"uplink name=u if=eth1 socket=/x", `:2: field "socket": unknown`},
		{"uplink name=u if=eth1 trunk=10:9999", `:2: field "trunk"`},
	} {
		p := filepath.Join(dir, "bad.conf")
		os.WriteFile(p, []byte("# first line\n"+tc.line+"\n"), 0o644)
		_, err := daemon.LoadFile(p)
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.line, err, p+tc.want)
		}
	}
	// A lab guest's cmd takes the rest of its line, separators and #.
	okFile := filepath.Join(dir, "good.conf")
	os.WriteFile(okFile, []byte("lab name=g vlan=10 cmd=echo a, b # all of it\nport name=v socket=/v # a comment\n"), 0o644)
	if ps, err := daemon.LoadFile(okFile); err != nil || len(ps) != 2 || ps[0].Values.Get("cmd") != "echo a, b # all of it" ||
		ps[0].Port.PVID != 10 || ps[1].Values.Get("socket") != "/v" {
		t.Errorf("LoadFile(good.conf) = %+v, %v", ps, err)
	}
	// Every bad line at once, in line order.
	p := filepath.Join(dir, "bad.conf")
	os.WriteFile(p, []byte("port name=a socket=/x vlan=0\nport name=ok socket=/y\nuplink name=u\nbridge x\n"), 0o644)
	_, err = daemon.LoadFile(p)
	want := p + ":1: field \"vlan\"[^\n]*\n" + p + ":3: field \"if\": missing[^\n]*\n" + p + ":4: unknown directive \"bridge\""
	if err == nil || !regexp.MustCompile(want).MatchString(err.Error()) {
		t.Errorf("three bad lines: %v; want all three in order", err)
	}
}

func TestSwitchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"switch", "--api", ""}, 2, "no ports and no API"},
		{[]string{"switch", "--port", "name=a"}, 2, `--port #1: field "socket": missing`},
		{[]string{"switch", "--api", "", "--port", "name=a,socket=/x", "--port", "name=b,socket=/y,queues=99"}, 2, `--port #2: field "queues"`},
		{[]string{"switch", "--uplink", "name=u"}, 2, `--uplink #1: field "if": missing`},
		{[]string{"switch", "--uplink", "name=u,if=x,tx=turbo"}, 2, `--uplink #1: field "tx"`},
		{[]string{"switch", "--uplink", "name=u,if=x,vlan=0"}, 2, `--uplink #1: field "vlan": "0" is not a VLAN ID`},
		{[]string{"switch", "--config", "/nonexistent/hvnet.conf"}, 2, "/nonexistent/hvnet.conf"},
		{[]string{"switch", "--api", "", "--port", "name=a,socket=/x", "--dashboard-addr", "localhost:http"}, 2, `--dashboard-addr "localhost:http": port "http" is not a number`},
		{[]string{"switch", "--api", "", "--port", "name=a,socket=/x", "--uplink", "name=a,if=x"}, 2, `port "a" defined twice`},
		// A missing interface is a clear error before anything is served.
		{[]string{"switch", "--api", "", "--uplink", "name=u,if=hvnet-nosuch0"}, 1, `uplink "u"`},
	} {
		var out bytes.Buffer
		code := run(tc.args, nil, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: status %d, output %q; want %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
		if strings.Contains(tc.want, "uplink \"u\"") && !strings.Contains(out.String(), uplink.ErrNoInterface.Error()) {
			t.Errorf("%q: %q does not say the interface is missing", tc.args, out.String())
		}
	}
}

// The daemon serves its ports and the API; ports come and go through the
// API; SIGTERM removes every socket.
func TestSwitchDaemonAPI(t *testing.T) {
	dir := t.TempDir()
	sa, sb, sock := filepath.Join(dir, "run", "a.sock"), filepath.Join(dir, "run", "b.sock"), filepath.Join(dir, "api", "hvnet.sock")
	d := startHvnet(t, nil, "switch", "--api", sock, "--run-dir", filepath.Join(dir, "run"), "--port", "name=a,socket="+sa+",vlan=10",
		"--port", "name=c,socket="+filepath.Join(dir, "c.sock")+",mode=client")
	c := d.waitAPI(t, sock)
	ctx := context.Background()

	code, out, errs := runCtl(t, sock, "ports")
	if code != 0 || !strings.Contains(out, "a ") || !strings.Contains(out, "c ") {
		t.Fatalf("ctl ports = %d %q %q", code, out, errs)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("API socket %s: %v, %v", sock, fi, err)
	}
	negotiate(t, sa).Close()

	// POST adds a vhost-user port whose socket takes a frontend.
	p, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindVhostUser,
		Config: api.PortConfig{Name: "b", Mode: "access", PVID: 20}, Options: api.Opts("socket", sb, "queues", "2", "mac", "52:54:00:00:00:0b")})
	if err != nil || p.Config.PVID != 20 {
		t.Fatalf("AddPort b = %+v, %v\n%s", p, err, d.logs)
	}
	f := negotiate(t, sb)
	defer f.Close()
	if n, err := f.GetQueueNum(); n != 2 { // queues=2: two pairs, as QEMU and DPDK read GET_QUEUE_NUM
		t.Errorf("port b: GET_QUEUE_NUM = %d, %v; want 2 (pairs)", n, err)
	}
	// Sockets already taken are refused, and nothing changes.
	for _, s := range []string{sa, sock, sb} {
		_, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindVhostUser, Config: api.PortConfig{Name: "x", PVID: 1}, Options: api.Opts("socket", s)})
		if err == nil || !strings.Contains(err.Error(), "socket") {
			t.Errorf("AddPort on %s: %v, want a refusal", s, err)
		}
	}
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindLab, Config: api.PortConfig{Name: "g", PVID: 1}}); err == nil {
		t.Errorf("AddPort lab: no error")
	}
	if ps, _ := c.Ports(ctx); len(ps) != 3 {
		t.Fatalf("after refusals: %d ports, want 3: %+v", len(ps), ps)
	}

	// DELETE ends the session and removes the socket.
	if code, out, errs := runCtl(t, sock, "--json", "ports"); code != 0 || !strings.Contains(out, `"b"`) {
		t.Fatalf("ctl ports = %d %q %q", code, out, errs)
	}
	if err := c.DeletePort(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	noFile(t, sb)
	if _, err := f.GetFeatures(); err == nil {
		t.Errorf("port b's session still answers after DELETE")
	}
	if _, err := c.Port(ctx, "b"); err == nil {
		t.Errorf("port b still listed after DELETE")
	}
	// The name and the socket can be used again.
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindVhostUser, Config: api.PortConfig{Name: "b", PVID: 1}, Options: api.Opts("socket", sb)}); err != nil {
		t.Fatalf("AddPort b again: %v", err)
	}
	negotiate(t, sb).Close()

	d.term(t)
	noFile(t, sa, sb, sock)
}

// A second daemon on a live API socket is refused and leaves it alone.
func TestSwitchAPISocketInUse(t *testing.T) {
	_, sock := ctlDaemon(t)
	var out bytes.Buffer
	if code := run([]string{"switch", "--api", sock}, nil, &out, &out); code != 1 || !strings.Contains(out.String(), "another daemon") {
		t.Fatalf("second daemon: status %d, %q", code, out.String())
	}
	if code, _, errs := runCtl(t, sock, "ports"); code != 0 {
		t.Fatalf("first daemon's API gone: %s", errs)
	}
}

// SIGHUP re-reads --config and applies the difference: a port that went
// away stops (its socket removed), a new one starts, a port whose VLAN
// changed keeps its frontend's session; a bad file is refused and
// changes nothing; the daemon lives on either way (SIGHUP used to kill
// it, leaving its sockets behind).
func TestSwitchReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	sock, conf := filepath.Join(dir, "api.sock"), filepath.Join(dir, "ports.conf")
	sa, sb, sc := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"), filepath.Join(dir, "c.sock")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("port name=a socket=%s vlan=10\nport name=b socket=%s\n", sa, sb))
	d := startHvnet(t, nil, "switch", "--api", sock, "--config", conf)
	c := d.waitAPI(t, sock)
	fa := negotiate(t, sa) // a session on a, kept across the reload
	defer fa.Close()
	hup := func(want string) {
		t.Helper()
		before := strings.Count(d.logs.String(), want)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for i := 0; strings.Count(d.logs.String(), want) == before; i++ {
			if i == 3000 { // 30 s
				t.Fatalf("no %q after SIGHUP:\n%s", want, d.logs)
			}
			select {
			case err := <-d.done:
				t.Fatalf("the daemon exited on SIGHUP (%v):\n%s", err, d.logs)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	write(fmt.Sprintf("port name=a socket=%s vlan=20\nport name=c socket=%s\n", sa, sc))
	hup("configuration reloaded")
	ctx := context.Background()
	if p, err := c.Port(ctx, "a"); err != nil || p.Config.PVID != 20 || p.Device == nil || !p.Device.Connected || p.Device.Sessions != 1 {
		t.Errorf("port a after reload: %+v, %v; want VLAN 20 and its session kept", p, err)
	}
	if _, err := c.Port(ctx, "b"); err == nil {
		t.Error("port b still there")
	}
	noFile(t, sb)
	negotiate(t, sc).Close()
	write("port name=a socket=/x vlan=5000\n")
	hup("the new configuration is refused")
	if !strings.Contains(d.logs.String(), `field \"vlan\"`) && !strings.Contains(d.logs.String(), `field "vlan"`) {
		t.Errorf("the refusal does not name the field:\n%s", d.logs)
	}
	if ps, err := c.Ports(ctx); err != nil || len(ps) != 2 {
		t.Errorf("ports after a refused reload: %d, %v; want a and c", len(ps), err)
	}
	d.term(t)
}
