package uplink

import (
	"bytes"
	"os/exec"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// The integration tests run as root in a private network namespace
// (netnstest.Main); the "guests" and "physical network" are further
// namespaces in it. Nothing touches the host's own interfaces.
func TestMain(m *testing.M) { netnstest.Main(m) }

// ping reports whether from reaches addr (a few tries, one reply is enough).
func ping(ns, addr string) bool {
	for range 3 {
		if netnstest.TryRun("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", addr) {
			return true
		}
	}
	return false
}

// pingFails reports whether one ping from ns to addr gets no answer.
func pingFails(ns, addr string) bool {
	return !netnstest.TryRun("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
}

// eventually retries cond until it holds or a generous deadline passes
// (this waits for the system to converge; it asserts nothing about time).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// attach opens an uplink Port on ifname, adds it to sw with cfg and starts it.
func attach(t testing.TB, sw *vswitch.Switch, ifname string, cfg vswitch.PortConfig, ucfg Config) *Port {
	t.Helper()
	p, err := Open(ifname, ucfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name = ifname
	}
	h, err := sw.AddPort(cfg, p)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	if err := p.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// guest is a namespace playing a VM: a veth whose switch end is an
// AF_PACKET port in the given VLAN configuration.
type guest struct {
	ns   string
	port *Port
	name string
}

func newGuest(t testing.TB, sw *vswitch.Switch, name string, cfg vswitch.PortConfig, mac, addr string) *guest {
	t.Helper()
	ns := netnstest.New(t, "hvu-"+name)
	netnstest.Veth(t, name, ns, "eth0")
	if mac != "" {
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
	}
	if addr != "" {
		netnstest.Run(t, "ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
	}
	cfg.Name = name
	return &guest{ns: ns, port: attach(t, sw, name, cfg, Config{}), name: name}
}

// iperf runs a TCP transfer of n bytes from the client namespace to the
// server (or back with reverse) and returns the client's output.
func iperf(t testing.TB, serverNS, serverAddr, clientNS string, bytesN string, reverse bool) string {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", serverNS, "iperf3", "-s", "-1", "-B", serverAddr)
	var sout bytes.Buffer
	srv.Stdout, srv.Stderr = &sout, &sout
	if err := srv.Start(); err != nil {
		t.Fatalf("iperf3 server: %v", err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	args := []string{"ip", "netns", "exec", clientNS, "iperf3", "-c", serverAddr, "-n", bytesN}
	if reverse {
		args = append(args, "-R")
	}
	var out []byte
	var err error
	// Until the server listens: up to 30 s (it starts slowly on a loaded
	// machine; the loop ends with the first run that works).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = exec.Command(args[0], args[1:]...).CombinedOutput(); err == nil {
			return string(out)
		}
	}
	t.Fatalf("iperf3 client: %v\n%s\nserver: %s", err, out, sout.String())
	return ""
}
