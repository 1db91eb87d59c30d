package uplink

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	vswitch "hvnet/switch"
)

// The integration tests run as root in a private network namespace: the
// test binary re-executes itself in a fresh one (CLONE_NEWNET), so every
// thread, socket and interface of the test is in it, and the "guests" and
// "physical network" are further namespaces created with `ip netns add`.
// Nothing touches the host's own interfaces.
const netnsEnv = "HVNET_UPLINK_TEST_NETNS"

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(netnsEnv) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "re-exec in a new network namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// needNetns skips unless running as root inside the private namespace.
func needNetns(t testing.TB) {
	t.Helper()
	if os.Getenv(netnsEnv) == "" {
		t.Skip("needs root (runs in a private network namespace)")
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tryRun runs a command and reports whether it succeeded.
func tryRun(args ...string) bool {
	return exec.Command(args[0], args[1:]...).Run() == nil
}

var nsSeq int

// netns creates a named namespace, deleted at cleanup.
func netns(t testing.TB, tag string) string {
	t.Helper()
	nsSeq++
	name := fmt.Sprintf("hvu%d-%s%d", os.Getpid(), tag, nsSeq)
	run(t, "ip", "netns", "add", name)
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// veth creates a veth pair: local stays in the test's namespace, peer goes
// to ns. Both are up.
func veth(t testing.TB, local, ns, peer string) {
	t.Helper()
	run(t, "ip", "link", "add", local, "type", "veth", "peer", "name", peer, "netns", ns)
	run(t, "ip", "link", "set", local, "up")
	run(t, "ip", "-n", ns, "link", "set", peer, "up")
	t.Cleanup(func() { exec.Command("ip", "link", "del", local).Run() })
}

// nsExec runs a command in ns.
func nsExec(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// ping reports whether from reaches addr (a few tries, one reply is enough).
func ping(ns, addr string) bool {
	for range 3 {
		if tryRun("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", addr) {
			return true
		}
	}
	return false
}

// pingFails reports whether one ping from ns to addr gets no answer.
func pingFails(ns, addr string) bool {
	return !tryRun("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
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
	ns := netns(t, name)
	veth(t, name, ns, "eth0")
	if mac != "" {
		run(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
	}
	if addr != "" {
		run(t, "ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
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
	for range 50 { // until the server listens
		if out, err = exec.Command(args[0], args[1:]...).CombinedOutput(); err == nil {
			return string(out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("iperf3 client: %v\n%s\nserver: %s", err, out, sout.String())
	return ""
}
