package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vmtest"
)

// v6 gives the guest's eth0 an IPv6 address without duplicate address
// detection (the lab's addresses are unique), so it works at once.
func v6(addr string) string {
	return "echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad\nip addr add " + addr + "/64 dev eth0\n"
}

// mustFail runs a probe that the security group must stop: the guest's
// script fails (LEAK) if it succeeds.
func mustFail(probe string) string {
	return "for i in 1 2 3; do\n  if " + probe + "; then echo LEAK: " + probe + "; exit 1; fi\ndone\n"
}

// TestLabSecurityGroups boots three guests in one VLAN with stateful
// security groups and real traffic (ping, iperf3 TCP and UDP, IPv4 and
// IPv6):
//   - cli has the clouds' default group (outbound allowed, inbound
//     denied): its pings and iperf3 runs (TCP and UDP over IPv4, TCP over
//     IPv6) get their replies; srv's ping and its iperf3 connections to
//     the server cli runs, over IPv4 and IPv6, get nothing;
//   - web allows only inbound TCP 5201 from 10.0.0.0/24: cli's iperf3
//     reaches it, cli's pings do not;
//   - srv has no group.
//
// IPv6 goes by iperf3: u-root's ping -6 listens on ::1 and never sees a
// reply from another host.
func TestLabSecurityGroups(t *testing.T) {
	if vmtest.Nest(t, vmtest.NestOptions{MemMiB: 2048}) {
		return
	}
	set := vmtest.Images(t)
	def := vswitch.DefaultSecurityGroup()
	webSG := vswitch.DefaultSecurityGroup()
	webSG.Inbound = []vswitch.SGRule{{Proto: 6, Ports: vswitch.PortRange{From: 5201, To: 5201}, Remote: netip.MustParsePrefix("10.0.0.0/24")}}
	srv := GuestConfig{Name: "srv", Addr: netip.MustParsePrefix("10.0.0.1/24"), PVID: 10,
		Script: v6("fd00::1") + "iperf3 -s -1\niperf3 -s -1\niperf3 -s -1\n" +
			// cli sleeps at its end while srv tries to reach it.
			mustFail("ping -c 1 -w 1000 10.0.0.2") +
			mustFail("iperf3 -c 10.0.0.2 -t 1 --connect-timeout 1500") +
			mustFail("iperf3 -6 -c fd00::2 -t 1 --connect-timeout 1500")}
	// web's guest lives on after its one iperf3 run, so that cli's pings
	// meet its group, not a port whose guest is gone.
	web := GuestConfig{Name: "web", Addr: netip.MustParsePrefix("10.0.0.3/24"), PVID: 10, SecurityGroup: &webSG,
		Script: "iperf3 -s -1\nsleep 20\n"}
	cli := GuestConfig{Name: "cli", Addr: netip.MustParsePrefix("10.0.0.2/24"), PVID: 10, SecurityGroup: &def,
		Script: v6("fd00::2") + "iperf3 -s -D\n" + waitPing("10.0.0.1") + "ping -c 3 10.0.0.1\n" +
			iperfClient("tcp", "10.0.0.1", "-t 2") +
			iperfClient("udp", "10.0.0.1", "-t 2 -u -b 1M") +
			iperfClient("tcp6", "fd00::1", "-6 -t 2") +
			iperfClient("web", "10.0.0.3", "-t 2") +
			mustFail("ping -c 1 -w 1000 10.0.0.3") +
			"sleep 30\n"}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	defer watchdog(t, 5*time.Minute)()
	res, err := Run(ctx, Config{Kernel: set.Kernel, Initrd: set.Initrd, Console: tlog{t},
		Guests: []GuestConfig{srv, web, cli}, Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Result{}
	for _, r := range res {
		by[r.Name] = r
		t.Logf("%s: status %d err %v port %+v", r.Name, r.Status, r.Err, r.Port)
		if r.Status != 0 || r.Err != nil {
			t.Errorf("guest %s: status %d, error %v", r.Name, r.Status, r.Err)
		}
	}
	for _, tag := range []string{"tcp", "udp", "tcp6", "web"} {
		out, err := between(by["cli"].Console, tag)
		if err != nil {
			t.Errorf("cli: %v", err)
			continue
		}
		bps, err := iperfBPS(out)
		if err != nil || bps <= 0 {
			t.Errorf("iperf3 %s through the security groups: %.0f bit/s, %v", tag, bps, err)
			continue
		}
		t.Logf("iperf3 %s: %.1f Mbit/s", tag, bps/1e6)
	}
	// The drops the guests' probes met are counted where the groups sit.
	if d := by["cli"].Port.Drops[vswitch.DropSecurityGroup]; d < 9 {
		t.Errorf("cli: %d security_group drops, want srv's 3 pings and 6 connection attempts at least", d)
	}
	if d := by["web"].Port.Drops[vswitch.DropSecurityGroup]; d < 3 {
		t.Errorf("web: %d security_group drops, want cli's 3 pings at least", d)
	}
	if d := by["srv"].Port.Drops; d[vswitch.DropSecurityGroup]+d[vswitch.DropCTInvalid]+d[vswitch.DropCTFull] != 0 {
		t.Errorf("srv, without a group, has connection-tracking drops: %v", d)
	}
}
