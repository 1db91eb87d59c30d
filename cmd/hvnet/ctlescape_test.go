package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestCtlEscapesPortNames: every ctl path built from a port name escapes
// it, so "a#2" (a port made before the name rule, or straight on the
// switch) is never taken for port "a" (the '#' cut the path) and "a?x"
// never reaches port "a" with a query.
func TestCtlEscapesPortNames(t *testing.T) {
	sw, sock := ctlDaemon(t) // ports a, b in VLAN 10
	for _, n := range []string{"a#2", "a?x", "a%2F"} {
		if _, err := sw.AddPort(vswitch.PortConfig{Name: n, PVID: 10}, ctlPort{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range []string{"a#2", "a?x", "a%2F"} {
		vid := 90 + i
		if code, out, errs := runCtl(t, sock, "set", n, "vlan="+strconv.Itoa(vid)); code != 0 {
			t.Fatalf("ctl set %s vlan=%d = %d %q %q", n, vid, code, out, errs)
		}
		if got := sw.Port(n).Config().PVID; got != uint16(vid) {
			t.Errorf("ctl set %s vlan=%d: port %s has VLAN %d", n, vid, n, got)
		}
		if got := sw.Port("a").Config().PVID; got != 10 {
			t.Fatalf("ctl set %s vlan=%d changed port a to VLAN %d", n, vid, got)
		}
		code, out, errs := runCtl(t, sock, "port", n)
		if code != 0 || !strings.Contains(out, n) || !strings.Contains(out, strconv.Itoa(vid)) {
			t.Errorf("ctl port %s = %d %q %q, want port %s's (VLAN %d)", n, code, out, errs, n, vid)
		}
	}
	// mirror stop: DELETE /v1/mirrors/NAME.
	if err := os.Mkdir(filepath.Join(filepath.Dir(sock), "captures"), 0o700); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCtl(t, sock, "mirror", "start", "a", "a.pcap"); code != 0 {
		t.Fatalf("mirror start a = %d %q %q", code, out, errs)
	}
	if code, out, errs := runCtl(t, sock, "mirror", "start", "a#2", "a2.pcap"); code != 0 {
		t.Fatalf("mirror start a#2 = %d %q %q", code, out, errs)
	}
	if code, out, errs := runCtl(t, sock, "mirror", "stop", "a#2"); code != 0 || !strings.Contains(out, "a2.pcap") {
		t.Fatalf("mirror stop a#2 = %d %q %q, want a#2's mirror stopped", code, out, errs)
	}
	if code, out, errs := runCtl(t, sock, "mirror", "list"); code != 0 || !strings.Contains(out, "a.pcap") {
		t.Fatalf("mirror list after stopping a#2's = %d %q %q, want a's mirror still there", code, out, errs)
	}
	// fdb del VLAN MAC: a MAC with a '/' is refused as a MAC, not a path.
	if code, _, errs := runCtl(t, sock, "fdb", "del", "10", "02:00:00:00:00:01/x"); code == 0 || strings.Contains(errs, "404") {
		t.Errorf("fdb del with a '/' in the MAC = %d %q, want the MAC refused", code, errs)
	}
}

// TestPortNameRuleEverySurface: the one rule (api.CheckPortName) holds on
// the command line (hvnet switch --port, hvnet ctl add) as in the API and
// the topology file (their tests are in api/ and topology/).
func TestPortNameRuleEverySurface(t *testing.T) {
	for _, n := range []string{"a#2", "a?x", "a%41", "a/b", "a b", "a\tb", "a\x00", "a\x7f", strings.Repeat("x", 65)} {
		_, err := daemon.ParseSwitchPort([]string{"name=" + n})
		if err == nil || !strings.Contains(err.Error(), "port name") || !strings.Contains(err.Error(), api.PortNameRule) {
			t.Errorf("ParseSwitchPort(name=%q) = %v, want the name rule", n, err)
		}
		_, err = addSpec("vhost-user", n, []string{"socket=/run/x.sock"})
		if err == nil || !strings.Contains(err.Error(), api.PortNameRule) {
			t.Errorf("ctl add vhost-user %q = %v, want the name rule", n, err)
		}
	}
	for _, n := range []string{"a", "vm-1_eth0.10", "a:b", "port\u00e9", strings.Repeat("x", 64)} {
		if _, err := daemon.ParseSwitchPort([]string{"name=" + n}); err != nil {
			t.Errorf("ParseSwitchPort(name=%q) = %v, want it taken", n, err)
		}
	}
}
