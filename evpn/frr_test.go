package evpn

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvnet/internal/netnstest"
)

// FRR 8.4 as Debian packages it (apt-get install frr).
const (
	frrZebra = "/usr/lib/frr/zebra"
	frrBGPd  = "/usr/lib/frr/bgpd"
	frrVtysh = "vtysh"
)

// frr is a zebra + bgpd pair running in a network namespace of the test,
// with its configuration, sockets, pid files and logs in dir.
type frr struct {
	t   *testing.T
	ns  string
	dir string
}

// needFRR skips the test unless it can run FRR: root (the private
// namespace), FRR's daemons and vtysh installed.
func needFRR(t *testing.T) {
	t.Helper()
	netnstest.Need(t)
	for _, bin := range []string{frrZebra, frrBGPd} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("FRR not installed (%s: %v); apt-get install frr", bin, err)
		}
	}
	if _, err := exec.LookPath(frrVtysh); err != nil {
		t.Skipf("FRR's vtysh not installed: %v; apt-get install frr", err)
	}
	if _, err := user.Lookup("frr"); err != nil {
		t.Skipf("no frr user (FRR's daemons run as it): %v", err)
	}
}

// startFRR runs zebra and bgpd in ns (not daemonized: the test owns them
// and stops them at cleanup) with bgpdConf.
func startFRR(t *testing.T, ns, bgpdConf string) *frr {
	t.Helper()
	dir := t.TempDir()
	// The daemons drop to user frr: let it reach and own the directory.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	f := &frr{t: t, ns: ns, dir: dir}
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	write("zebra.conf", "hostname frr-evpn-test\n")
	write("bgpd.conf", bgpdConf)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ name, bin string }{{"zebra", frrZebra}, {"bgpd", frrBGPd}} {
		log, err := os.Create(filepath.Join(dir, d.name+".out"))
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"netns", "exec", ns, d.bin,
			"--vty_socket", dir, "-z", filepath.Join(dir, "zserv.api"),
			"-i", filepath.Join(dir, d.name+".pid"), "-f", filepath.Join(dir, d.name+".conf"),
			"--log", "file:" + filepath.Join(dir, d.name+".log"), "--log-level", "debug"}
		cmd := exec.Command("ip", args...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", d.name, err)
		}
		name := d.name
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			log.Close()
			if t.Failed() {
				for _, suffix := range []string{".out", ".log"} {
					b, _ := os.ReadFile(filepath.Join(dir, name+suffix))
					t.Logf("%s%s (last 3000 bytes):\n%s", name, suffix, tail(b, 3000))
				}
			}
		})
		// bgpd needs zebra's socket; wait for zebra's vty first.
		waitFor(t, 10*time.Second, name+"'s vty", func() bool {
			_, err := f.vtysh("-d", name, "-c", "show version")
			return err == nil
		})
	}
	return f
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// vtysh runs vtysh against this FRR.
func (f *frr) vtysh(args ...string) ([]byte, error) {
	cmd := exec.Command(frrVtysh, append([]string{"--vty_socket", f.dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vtysh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (f *frr) show(cmd string) string {
	out, err := f.vtysh("-c", cmd)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// frrPath is the part of a path in FRR's "show bgp l2vpn evpn route json"
// the test checks.
type frrPath struct {
	Valid     bool   `json:"valid"`
	RouteType int    `json:"routeType"`
	MAC       string `json:"mac"`
	IP        string `json:"ip"`
	VNI       string `json:"vni"`
	ExtComm   struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// routes returns FRR's EVPN paths under route distinguisher rd.
func (f *frr) routes(rd string) []frrPath {
	out, err := f.vtysh("-c", "show bgp l2vpn evpn route json")
	if err != nil {
		f.t.Logf("%v", err)
		return nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(out, &top); err != nil {
		f.t.Logf("FRR's route JSON: %v: %s", err, out)
		return nil
	}
	var prefixes map[string]json.RawMessage
	if json.Unmarshal(top[rd], &prefixes) != nil {
		return nil
	}
	var paths []frrPath
	for k, v := range prefixes {
		if !strings.HasPrefix(k, "[") {
			continue // "rd" and counters
		}
		var p struct {
			Paths [][]frrPath `json:"paths"`
		}
		if json.Unmarshal(v, &p) != nil {
			continue
		}
		for _, alt := range p.Paths {
			paths = append(paths, alt...)
		}
	}
	return paths
}

// hasRoute reports whether FRR holds a valid path under rd of the type,
// MAC (type 2) and IP, with next hop vtep and the VNI's RT and VXLAN
// encapsulation.
func (f *frr) hasRoute(rd string, typ int, mac, ip string, vtep netip.Addr) func() bool {
	return func() bool {
		for _, p := range f.routes(rd) {
			if !p.Valid || p.RouteType != typ || p.MAC != mac || p.IP != ip {
				continue
			}
			if !strings.Contains(p.ExtComm.String, "RT:65000:100") || !strings.Contains(p.ExtComm.String, "ET:8") {
				f.t.Logf("FRR path %+v lacks RT 65000:100 or ET:8", p)
				continue
			}
			if len(p.Nexthops) == 0 || p.Nexthops[0].IP != vtep.String() {
				f.t.Logf("FRR path %+v: next hop not %s", p, vtep)
				continue
			}
			return true
		}
		return false
	}
}

// frrPeerState is the session state FRR shows for a neighbor.
func (f *frr) peerState(addr netip.Addr) (state string, established int) {
	out, err := f.vtysh("-c", "show bgp l2vpn evpn summary json")
	if err != nil {
		return err.Error(), 0
	}
	var s struct {
		Peers map[string]struct {
			State                  string `json:"state"`
			ConnectionsEstablished int    `json:"connectionsEstablished"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return fmt.Sprintf("bad JSON %v: %s", err, out), 0
	}
	p := s.Peers[addr.String()]
	return p.State, p.ConnectionsEstablished
}

// TestFRRInterop runs FRR 8.4 (zebra + bgpd, advertise-all-vni) with a
// kernel VXLAN device in a namespace and peers with it over a veth pair.
func TestFRRInterop(t *testing.T) {
	needFRR(t)
	loopbackUp(t)
	var (
		ours     = netip.MustParseAddr("10.77.0.1") // router ID, VTEP, session
		theirs   = netip.MustParseAddr("10.77.0.2")
		hostMAC  = "02:00:00:77:00:01" // behind FRR's bridge
		ourMAC   = [6]byte{0x02, 0, 0, 0, 0xaa, 1}
		ourIP    = netip.MustParseAddr("10.100.0.5")
		fake     = netip.MustParseAddr("127.0.0.3")
		stranger = netip.MustParseAddr("127.0.0.4")
	)
	ns := netnstest.New(t, "evfrr")
	netnstest.Veth(t, "evpn0", ns, "evpn1")
	netnstest.Run(t, "ip", "addr", "add", ours.String()+"/24", "dev", "evpn0")
	in := func(args ...string) { netnstest.Run(t, append([]string{"ip", "-n", ns}, args...)...) }
	in("addr", "add", theirs.String()+"/24", "dev", "evpn1")
	in("link", "add", "br100", "type", "bridge")
	in("link", "set", "br100", "up")
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "vxlan100", "type", "vxlan", "id", "100",
		"local", theirs.String(), "dstport", "4789", "nolearning").CombinedOutput(); err != nil {
		t.Skipf("no kernel VXLAN here (ip link add type vxlan: %v: %s)", err, out)
	}
	in("link", "set", "vxlan100", "master", "br100")
	in("link", "set", "vxlan100", "up")
	in("link", "add", "host0", "type", "veth", "peer", "name", "host1")
	in("link", "set", "host1", "address", hostMAC)
	in("link", "set", "host0", "master", "br100")
	in("link", "set", "host0", "up")
	in("link", "set", "host1", "up")
	netnstest.Run(t, "bridge", "-n", ns, "fdb", "add", hostMAC, "dev", "host0", "master", "static")

	f := startFRR(t, ns, fmt.Sprintf(`hostname frr-evpn-test
router bgp 65000
 bgp router-id %[1]s
 no bgp default ipv4-unicast
 neighbor %[2]s remote-as 65000
 neighbor %[2]s timers 1 3
 neighbor %[2]s timers connect 1
 address-family l2vpn evpn
  neighbor %[2]s activate
  advertise-all-vni
 exit-address-family
`, theirs, ours))

	r := newRecorder("speaker")
	sp := startSpeaker(t, Config{
		ASN: 65000, RouterID: ours, VTEP: ours,
		Neighbors:    []Neighbor{{Addr: theirs}, {Addr: fake, Port: freePort(t, fake)}},
		HoldTime:     3 * time.Second,
		ConnectRetry: time.Second,
		Logger:       testLogger(t, "speaker"),
	}, r)
	t.Cleanup(func() { r.check(t) })
	dump := func() {
		t.Logf("FRR:\n%s\n%s\n%s", f.show("show bgp l2vpn evpn summary"), f.show("show bgp l2vpn evpn route"), f.show("show evpn mac vni all"))
	}

	waitFor(t, 30*time.Second, "the session with FRR", func() bool {
		st, _ := f.peerState(ours)
		return established(sp, theirs)() && st == "Established"
	})
	if err := sp.AddVNI(100); err != nil {
		t.Fatalf("AddVNI: %v", err)
	}
	if err := sp.AdvertiseMAC(100, ourMAC, ourIP, 0); err != nil {
		t.Fatalf("AdvertiseMAC: %v", err)
	}
	ourMACs := net.HardwareAddr(ourMAC[:]).String()
	rd := ours.String() + ":1"
	waitFor(t, 20*time.Second, "FRR to hold our type-3 route for VNI 100", f.hasRoute(rd, 3, "", ours.String(), ours))
	waitFor(t, 20*time.Second, "FRR to hold our type-2 route", f.hasRoute(rd, 2, ourMACs, ourIP.String(), ours))
	// zebra imported both into VNI 100 and programmed the kernel: flood
	// entry and MAC behind our VTEP in vxlan100's FDB.
	waitFor(t, 20*time.Second, "FRR's kernel FDB to point our MAC and BUM traffic at our VTEP", func() bool {
		out, err := exec.Command("bridge", "-n", ns, "fdb", "show", "dev", "vxlan100").CombinedOutput()
		s := string(out)
		return err == nil && strings.Contains(s, "00:00:00:00:00:00 dst "+ours.String()) &&
			strings.Contains(s, ourMACs+" dst "+ours.String())
	})

	// What FRR advertises: its VTEP in VNI 100, the host MAC behind it.
	hw, _ := net.ParseMAC(hostMAC)
	var host [6]byte
	copy(host[:], hw)
	waitFor(t, 20*time.Second, "FRR's type-3 route (RemoteVTEP 100)", func() bool { return r.hasVTEP(100, theirs) }, r)
	waitFor(t, 20*time.Second, "FRR's type-2 route for the host MAC", r.hasMAC(100, host, netip.Addr{}, theirs, 0), r)

	// Garbage from a fake neighbor and a stranger: their sessions only.
	_, before := f.peerState(ours)
	attack(t, sp, r, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 179), fake, stranger, theirs)
	if st, after := f.peerState(ours); st != "Established" || after != before {
		t.Errorf("FRR's session after the attacks: %s, established %d times (before: %d); want untouched", st, after, before)
	}
	if !f.hasRoute(rd, 2, ourMACs, ourIP.String(), ours)() || !r.hasMAC(100, host, netip.Addr{}, theirs, 0)() {
		dump()
		t.Errorf("routes lost in the attacks")
	}

	// Withdrawal, then Close: FRR drops our routes.
	if err := sp.WithdrawMAC(100, ourMAC, ourIP); err != nil {
		t.Fatalf("WithdrawMAC: %v", err)
	}
	waitFor(t, 20*time.Second, "FRR to drop our type-2 route", func() bool {
		return !f.hasRoute(rd, 2, ourMACs, ourIP.String(), ours)()
	})
	if err := sp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, 20*time.Second, "FRR to drop our type-3 route after Close", func() bool {
		return len(f.routes(rd)) == 0
	})
	if t.Failed() {
		dump()
	}
}
