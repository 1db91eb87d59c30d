package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/netnstest"
)

// A bond port in the daemon: hvnet switch --config with a bond of three
// members (veths into a namespace's Linux bridge), shown by ctl port;
// SIGHUP after the file drops a member and changes the mode applies both
// live: the port is updated, not restarted (the members that stay keep
// their counters), and ctl port shows the new mode and members.
func TestBondPortReload(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := netnstest.New(t, "bnd")
	netnstest.Run(t, "ip", "-n", ns, "link", "add", "br0", "type", "bridge")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "br0", "up")
	netnstest.Run(t, "ip", "-n", ns, "link", "add", "hv", "type", "veth", "peer", "name", "ht")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "ht", "master", "br0", "up")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "hv", "up")
	for _, x := range []string{"a", "b", "c"} {
		netnstest.Run(t, "ip", "-n", ns, "link", "add", "bm"+x, "type", "veth", "peer", "name", "bs"+x)
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "bs"+x, "master", "br0", "up")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "bm"+x, "up")
	}
	dir := t.TempDir()
	sock, conf := filepath.Join(dir, "api.sock"), filepath.Join(dir, "ports.conf")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bond name=bond0 if=bma if=bmb if=bmc mode=balance-slb\n")
	d := startHvnet(t, []string{"ip", "netns", "exec", ns}, "switch", "--api", sock, "--config", conf)
	c := d.waitAPI(t, sock)
	ctx := context.Background()
	bondOf := func() *api.BondInfo {
		p, err := c.Port(ctx, "bond0")
		if err != nil || p.Bond == nil || p.Device == nil || p.Device.BondCounters == nil {
			t.Fatalf("port bond0: %+v, %v\n%s", p, err, d.logs)
		}
		return p.Bond
	}
	carrying := func(b *api.BondInfo) string {
		var s []string
		for _, m := range b.Members {
			if m.Carrying {
				s = append(s, m.Name)
			}
		}
		return strings.Join(s, ",")
	}
	for i := 0; carrying(bondOf()) != "bma,bmb,bmc"; i++ {
		if i == 600 { // 30 s: the loop ends as soon as they carry
			t.Fatalf("the three members never carry: %+v\n%s", bondOf(), d.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Traffic through the bond: the bridge's host sends broadcasts the
	// bond takes on one member (the others' copies dropped, counted).
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "10.7.0.1/24", "dev", "br0")
	netnstest.TryRun("ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-w", "1", "-b", "10.7.0.255") // no answers needed
	code, text, errs := runCtl(t, sock, "port", "bond0")
	t.Logf("ctl port bond0:\n%s", text)
	if code != 0 || !strings.Contains(text, "balance-slb") || !strings.Contains(text, "member bma:") || !strings.Contains(text, "carrying") {
		t.Errorf("ctl port bond0: %d\n%s%s", code, text, errs)
	}
	// The daemon reads the members' sockets on its own: the broadcasts
	// can be counted a while after ping ends (seconds, loaded).
	rxTotal := func(b *api.BondInfo) (n uint64) { // of bma and bmb, the members that stay
		for _, m := range b.Members {
			if m.Name == "bma" || m.Name == "bmb" {
				n += m.RxFrames + m.RxDrops
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); rxTotal(bondOf()) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	before := map[string]uint64{}
	for _, m := range bondOf().Members {
		before[m.Name] = m.RxFrames + m.RxDrops
	}
	write("bond name=bond0 if=bma if=bmb mode=active-backup primary=bmb\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(d.logs.String(), "configuration reloaded"); i++ {
		if i == 3000 { // 30 s
			t.Fatalf("no reload:\n%s", d.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(d.logs.String(), `updated=["bond0"]`) {
		t.Errorf("the bond was not updated live:\n%s", d.logs)
	}
	b := bondOf()
	if b.Mode != "active-backup" || len(b.Members) != 2 || carrying(b) != "bmb" {
		t.Errorf("after the reload: %+v", b)
	}
	for _, m := range b.Members {
		if m.RxFrames+m.RxDrops < before[m.Name] {
			t.Errorf("member %s's counters went back: restarted", m.Name)
		}
	}
	if before["bma"]+before["bmb"] == 0 {
		t.Errorf("no traffic reached the bond before the reload: %v", before)
	}
	code, text, _ = runCtl(t, sock, "port", "bond0")
	if code != 0 || !strings.Contains(text, "bond:") || !strings.Contains(text, "active-backup") || strings.Contains(text, "member bmc") {
		t.Errorf("ctl port bond0 after the reload:\n%s", text)
	}
	code, text, _ = runCtl(t, sock, "metrics")
	for _, w := range []string{`hvnet_bond_member_carrying{member="bmb",port="bond0"} 1`, `hvnet_bond_member_carrying{member="bma",port="bond0"} 0`,
		`hvnet_bond_member_frames_total{direction="rx",member="bma",port="bond0"}`, `hvnet_port_device_drops_total{port="bond0",reason="bond_rx_inactive"}`} {
		if code != 0 || !strings.Contains(text, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
	if problems, err := promlint.New(strings.NewReader(text)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	d.term(t)
}

// A bond added through the API changes live through it too: hvnet ctl
// set with the kind's own keys (PATCH options) drops a member and
// changes the mode without restarting the port; a change the bond cannot
// take live (tx=) is refused, saying what to do, and changes nothing.
func TestBondCtlSet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := netnstest.New(t, "bcs")
	for _, x := range []string{"a", "b"} {
		netnstest.Run(t, "ip", "-n", ns, "link", "add", "cm"+x, "type", "veth", "peer", "name", "cp"+x)
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "cm"+x, "up")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "cp"+x, "up")
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	d := startHvnet(t, []string{"ip", "netns", "exec", ns}, "switch", "--api", sock)
	c := d.waitAPI(t, sock)
	if code, out, errs := runCtl(t, sock, "add", "bond", "b0", "if=cma", "if=cmb", "mode=balance-slb"); code != 0 {
		t.Fatalf("ctl add bond: %d %s%s", code, out, errs)
	}
	bond := func() *api.BondInfo {
		p, err := c.Port(context.Background(), "b0")
		if err != nil || p.Bond == nil {
			t.Fatalf("port b0: %+v, %v", p, err)
		}
		return p.Bond
	}
	for i := 0; len(bond().Members) != 2 || !bond().Members[1].Carrying; i++ {
		if i == 600 { // 30 s: the loop ends as soon as both carry
			t.Fatalf("b0 never carried on both: %+v\n%s", bond(), d.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errs := runCtl(t, sock, "set", "b0", "if=cmb", "mode=active-backup", "vlan=10"); code != 0 {
		t.Fatalf("ctl set b0 if=cmb mode=active-backup: %d %s%s\n%s", code, out, errs, d.logs)
	}
	b := bond()
	p, _ := c.Port(context.Background(), "b0")
	if b.Mode != "active-backup" || len(b.Members) != 1 || b.Members[0].Name != "cmb" || !b.Members[0].Carrying || p.Config.PVID != 10 ||
		strings.Join(p.Options["if"], ",") != "cmb" {
		t.Errorf("after ctl set: %+v, options %v, vlan %d", b, p.Options, p.Config.PVID)
	}
	if !strings.Contains(d.logs.String(), "port reconfigured live") || strings.Count(d.logs.String(), `port ready: port=b0`) != 1 {
		t.Errorf("b0 was not reconfigured live (or was restarted):\n%s", d.logs)
	}
	code, out, errs := runCtl(t, sock, "set", "b0", "tx=sendmmsg")
	if code == 0 || !strings.Contains(out+errs, "remove the port and add it again") {
		t.Errorf("ctl set b0 tx=sendmmsg: %d %s%s", code, out, errs)
	}
	code, out, errs = runCtl(t, sock, "set", "b0", "mode=round-robin")
	if code == 0 || !strings.Contains(out+errs, "mode") {
		t.Errorf("ctl set b0 mode=round-robin: %d %s%s", code, out, errs)
	}
	// An interface another port has is not the bond's to take.
	if code, out, errs := runCtl(t, sock, "add", "uplink", "u1", "if=cpa"); code != 0 {
		t.Fatalf("ctl add uplink: %d %s%s", code, out, errs)
	}
	code, out, errs = runCtl(t, sock, "set", "b0", "if=cmb", "if=cpa")
	if code == 0 || !strings.Contains(out+errs, `port "u1"`) {
		t.Errorf("ctl set b0 if=cpa (u1's): %d %s%s", code, out, errs)
	}
	if b := bond(); b.Mode != "active-backup" || len(b.Members) != 1 {
		t.Errorf("a refused change changed the bond: %+v", b)
	}
}
