package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
)

func TestCtlACL(t *testing.T) {
	sw, sock := ctlDaemon(t)
	code, out, errs := runCtl(t, sock, "acl", "a")
	if code != 0 || !strings.Contains(out, "no ACL") {
		t.Fatalf("acl a = %d %q %q", code, out, errs)
	}
	file := filepath.Join(t.TempDir(), "acl.json")
	os.WriteFile(file, []byte(`{"default":"deny","rules":[
		{"action":"allow","ethertype":"ipv4","src_ip":"10.0.0.0/24","protocol":"tcp","dst_ports":"22"},
		{"action":"deny","dst_mac":"02:00:00:00:00:02"}]}`), 0o600)
	code, out, errs = runCtl(t, sock, "acl", "a", "set", file)
	if code != 0 || !strings.Contains(out, "2 rule(s), default deny") {
		t.Fatalf("acl a set = %d %q %q", code, out, errs)
	}
	sw.Port("a").Input(ctlFrames(3)) // to 02:..:02: rule 1
	code, out, errs = runCtl(t, sock, "acl", "a", "show")
	if code != 0 {
		t.Fatalf("acl a show = %d %q", code, errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "#") || !strings.Contains(lines[1], "10.0.0.0/24") ||
		!strings.HasSuffix(lines[2], " 3") || !strings.HasPrefix(lines[3], "default") ||
		strings.Index(lines[1], "allow") != strings.Index(lines[0], "ACTION") {
		t.Fatalf("acl show table:\n%s", out)
	}
	code, out, _ = runCtl(t, sock, "--json", "acl", "a")
	var a api.ACL
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || len(a.Rules) != 2 || a.Rules[1].Hits != 3 {
		t.Fatalf("acl --json = %d %q", code, out)
	}
	// What show --json prints, set takes back.
	os.WriteFile(file, []byte(out), 0o600)
	if code, _, errs = runCtl(t, sock, "acl", "a", "set", file); code != 0 {
		t.Fatalf("set of show --json output = %d %q", code, errs)
	}
	// Bad input: the server's message names the field; nothing changes.
	os.WriteFile(file, []byte(`{"rules":[{"action":"allow","protocol":"tcp","dst_ports":"99999"}]}`), 0o600)
	code, _, errs = runCtl(t, sock, "acl", "a", "set", file)
	if code == 0 || !strings.Contains(errs, "rules[0].dst_ports") {
		t.Fatalf("bad acl = %d %q", code, errs)
	}
	os.WriteFile(file, []byte(`{"rulez":[]}`), 0o600)
	if code, _, errs = runCtl(t, sock, "acl", "a", "set", file); code == 0 || !strings.Contains(errs, "rulez") {
		t.Fatalf("unknown field = %d %q", code, errs)
	}
	if acl, _, _ := sw.ACL("a"); len(acl.Rules) != 2 {
		t.Fatalf("ACL changed by a bad set: %+v", acl)
	}
	if code, _, errs = runCtl(t, sock, "acl", "zz"); code == 0 || !strings.Contains(errs, "zz") {
		t.Fatalf("acl of a missing port = %d %q", code, errs)
	}
	if code, _, _ = runCtl(t, sock, "acl", "a", "frobnicate"); code != 2 {
		t.Fatalf("bad subcommand exit %d; want 2", code)
	}
}

func TestCtlTrace(t *testing.T) {
	sw, sock := ctlDaemon(t)
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "t", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}}, ctlPort{}); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCtl(t, sock, "trace", "--in", "a", "--src", "02:00:00:00:00:01", "--dst", "ff:ff:ff:ff:ff:ff")
	if code != 0 || !strings.Contains(out, "1. ingress") || !strings.Contains(out, "result: flooded to b (untagged, VLAN 10), t (tagged 0x8100 VID 10 PCP 0)") {
		t.Fatalf("trace = %d %q %q", code, out, errs)
	}
	code, out, errs = runCtl(t, sock, "trace", "--in", "a", "--src", "02:00:00:00:00:01", "--dst", "02:00:00:00:00:02", "--vlan", "10")
	if code != 0 || !strings.Contains(out, "result: dropped (vlan)") {
		t.Fatalf("trace tagged on access = %d %q %q", code, out, errs)
	}
	code, out, _ = runCtl(t, sock, "--json", "trace", "--in", "t", "--src", "02:00:00:00:00:01", "--dst", "02:00:00:00:00:02",
		"--vlan", "30", "--ethertype", "0x800", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2", "--proto", "udp", "--dport", "53")
	var r api.TraceResult
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Drop != "vlan" || len(r.Steps) != 1 {
		t.Fatalf("trace --json = %d %q", code, out)
	}
	if code, _, errs = runCtl(t, sock, "trace", "--in", "a"); code != 2 || !strings.Contains(errs, "--src") {
		t.Fatalf("trace without MACs = %d %q", code, errs)
	}
	if code, _, errs = runCtl(t, sock, "trace", "--in", "a", "--src", "02:00:00:00:00:01", "--dst", "02:00:00:00:00:02", "--vlan", "9999"); code == 0 || !strings.Contains(errs, "vlan") {
		t.Fatalf("trace bad vlan = %d %q", code, errs)
	}
	if got := sw.Port("a").Counters(); got.RxPackets != 0 || sw.SwitchCounters().FDBEntries != 0 {
		t.Fatalf("trace changed counters or FDB: %+v", got)
	}
}

// TestCtlACLEgress: egress rules round-trip through acl set / show, with
// their direction, numbering and default; trace names the egress deny.
func TestCtlACLEgress(t *testing.T) {
	sw, sock := ctlDaemon(t)
	file := filepath.Join(t.TempDir(), "acl.json")
	os.WriteFile(file, []byte(`{"egress_default":"deny","rules":[
		{"action":"allow","protocol":"tcp"},
		{"action":"allow","direction":"egress","ethertype":"arp"}]}`), 0o600)
	code, out, errs := runCtl(t, sock, "acl", "b", "set", file)
	if code != 0 || !strings.Contains(out, "egress default deny") {
		t.Fatalf("acl b set = %d %q %q", code, out, errs)
	}
	sw.Port("a").Input(ctlFrames(2)) // IPv4 to b: no egress rule matches, default deny
	code, out, _ = runCtl(t, sock, "acl", "b")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 5 || !strings.Contains(lines[2], "egress") || !strings.HasPrefix(lines[2], "0 ") ||
		!strings.HasPrefix(lines[4], "default") || !strings.Contains(lines[4], "egress") || !strings.HasSuffix(lines[4], " 2") {
		t.Fatalf("acl show:\n%s", out)
	}
	if n := sw.Port("b").Counters().Drops[vswitch.DropACL]; n != 2 {
		t.Errorf("b's acl drops = %d; want 2", n)
	}
	code, out, _ = runCtl(t, sock, "trace", "--in", "a", "--src", "02:00:00:00:00:01", "--dst", "ff:ff:ff:ff:ff:ff")
	if code != 0 || !strings.Contains(out, "denied on egress: port b (egress rule default)") {
		t.Errorf("trace:\n%s", out)
	}
}
