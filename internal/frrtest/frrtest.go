// Package frrtest runs FRR (zebra and bgpd, Debian's frr 8.4) in a
// network namespace for the interop tests of hvnet's EVPN speaker, and
// reads its state through vtysh.
package frrtest

import (
	"encoding/json"
	"fmt"
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
)

// FRR 8.4 as Debian packages it (apt-get install frr).
const (
	Zebra = "/usr/lib/frr/zebra"
	BGPd  = "/usr/lib/frr/bgpd"
	Vtysh = "vtysh"
)

// FRR is a zebra + bgpd pair running in a network namespace of the test,
// with its configuration, sockets, pid files and logs in its directory.
type FRR struct {
	t   testing.TB
	ns  string
	dir string
}

// Need skips the test unless it can run FRR: root (for the namespaces),
// FRR's daemons and vtysh installed.
func Need(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, bin := range []string{Zebra, BGPd} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("FRR not installed (%s: %v); apt-get install frr", bin, err)
		}
	}
	if _, err := exec.LookPath(Vtysh); err != nil {
		t.Skipf("FRR's vtysh not installed: %v; apt-get install frr", err)
	}
	if _, err := user.Lookup("frr"); err != nil {
		t.Skipf("no frr user (FRR's daemons run as it): %v", err)
	}
}

// EVPNConfig is bgpd's configuration for one iBGP EVPN session in AS
// 65000 with neighbor (fast timers: keepalive 1 s, hold 3 s, connect
// retry 1 s), advertising every VNI zebra knows (advertise-all-vni).
func EVPNConfig(routerID, neighbor any) string {
	return fmt.Sprintf(`hostname frr-evpn-test
router bgp 65000
 bgp router-id %[1]v
 no bgp default ipv4-unicast
 neighbor %[2]v remote-as 65000
 neighbor %[2]v timers 1 3
 neighbor %[2]v timers connect 1
 address-family l2vpn evpn
  neighbor %[2]v activate
  advertise-all-vni
 exit-address-family
`, routerID, neighbor)
}

// Start runs zebra and bgpd in ns (not daemonized: the test owns them
// and stops them at cleanup) with bgpdConf. When the test fails, their
// logs are logged at cleanup.
func Start(t testing.TB, ns, bgpdConf string) *FRR {
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
	f := &FRR{t: t, ns: ns, dir: dir}
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
	for _, d := range []struct{ name, bin string }{{"zebra", Zebra}, {"bgpd", BGPd}} {
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
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := f.Vtysh("-d", name, "-c", "show version"); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("%s's vty did not come up in 10 s: %v", name, err)
			}
		}
	}
	return f
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Vtysh runs vtysh against this FRR.
func (f *FRR) Vtysh(args ...string) ([]byte, error) {
	cmd := exec.Command(Vtysh, append([]string{"--vty_socket", f.dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vtysh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Show runs one vtysh command and returns its output, or the error.
func (f *FRR) Show(cmd string) string {
	out, err := f.Vtysh("-c", cmd)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// Path is the part of a path in FRR's "show bgp l2vpn evpn route json"
// the tests check.
type Path struct {
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

// Routes returns FRR's EVPN paths under route distinguisher rd ("" for
// all).
func (f *FRR) Routes(rd string) []Path {
	out, err := f.Vtysh("-c", "show bgp l2vpn evpn route json")
	if err != nil {
		f.t.Logf("%v", err)
		return nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(out, &top); err != nil {
		f.t.Logf("FRR's route JSON: %v: %s", err, out)
		return nil
	}
	var paths []Path
	for r, v := range top {
		if rd != "" && r != rd {
			continue
		}
		var prefixes map[string]json.RawMessage
		if json.Unmarshal(v, &prefixes) != nil {
			continue // counters
		}
		for k, v := range prefixes {
			if !strings.HasPrefix(k, "[") {
				continue // "rd" and counters
			}
			var p struct {
				Paths [][]Path `json:"paths"`
			}
			if json.Unmarshal(v, &p) != nil {
				continue
			}
			for _, alt := range p.Paths {
				paths = append(paths, alt...)
			}
		}
	}
	return paths
}

// HasRoute reports whether FRR holds a valid path under rd ("" for any)
// of the type, MAC (type 2) and IP, with next hop vtep and the RT
// 65000:100 and VXLAN encapsulation.
func (f *FRR) HasRoute(rd string, typ int, mac, ip string, vtep netip.Addr) func() bool {
	return func() bool {
		for _, p := range f.Routes(rd) {
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

// PeerState is the session state FRR shows for a neighbor, and how many
// times the session was established.
func (f *FRR) PeerState(addr netip.Addr) (state string, established int) {
	out, err := f.Vtysh("-c", "show bgp l2vpn evpn summary json")
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
