package lab

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images/agentcfg"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vmtest"
)

// Feature bits a Linux guest should negotiate (virtio 1.2 §5.1.3).
const (
	bitGuestTSO4 = 7
	bitHostTSO4  = 11
	bitMrgRxbuf  = 15
	bitMQ        = 22
)

const limitBPS = 5_000_000 // lim's rate limit: well below the unlimited ~12 Mbit/s seen in the nested host

// TestLab boots four guests on one switch, in one nested host run:
//   - cli and srv (VLAN 10) ping each other and run iperf3 TCP, single
//     stream, then four streams into srv, which has two queue pairs and two
//     vCPUs: both receive queues must carry traffic;
//   - lim (VLAN 10) is rate limited: iperf3 into it lands near the limit;
//   - other (VLAN 20, same subnet) must not reach srv;
//   - trk, on a trunk port, reaches srv through its eth0.10.
func TestLab(t *testing.T) {
	if vmtest.Nest(t, vmtest.NestOptions{MemMiB: 3584}) {
		return
	}
	set := vmtest.Images(t)
	features := "echo BEGIN-features\ncat /sys/bus/virtio/devices/virtio*/features\necho END-features\n"
	srv := GuestConfig{Name: "srv", Addr: netip.MustParsePrefix("10.0.0.1/24"), PVID: 10, Queues: 2, CPUs: 2,
		Script: "iperf3 -s -1\niperf3 -s -1\n" + features + "echo BEGIN-queues\nls /sys/class/net/eth0/queues\necho END-queues\n"}
	lim := GuestConfig{Name: "lim", Addr: netip.MustParsePrefix("10.0.0.4/24"), PVID: 10, Rate: limitBPS,
		Script: "iperf3 -s -1\n"}
	cli := GuestConfig{Name: "cli", Addr: netip.MustParsePrefix("10.0.0.2/24"), PVID: 10,
		Script: waitPing("10.0.0.1") + "ping -c 3 10.0.0.1\n" + features +
			iperfClient("single", "10.0.0.1", "-t 3") +
			iperfClient("multi", "10.0.0.1", "-t 3 -P 4") +
			iperfClient("limited", "10.0.0.4", "-t 3")}
	other := GuestConfig{Name: "other", Addr: netip.MustParsePrefix("10.0.0.3/24"), PVID: 20,
		Script: "for i in $(seq 1 8); do\n  if ping -c 1 -w 1000 10.0.0.1; then echo LEAK; exit 1; fi\ndone\nexit 0\n"}
	// trk is on a trunk port carrying VLAN 10 tagged, with eth0.10 in the
	// guest: its tagged frames reach srv's access port.
	trk := GuestConfig{Name: "trk", Mode: vswitch.ModeTrunk, Allowed: []uint16{10},
		Ifaces: []agentcfg.Iface{{Name: "eth0.10", Addr: netip.MustParsePrefix("10.0.0.5/24")}},
		Script: waitPing("10.0.0.1") + "ping -c 2 10.0.0.1\n"}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	defer watchdog(t, 5*time.Minute)()
	res, err := Run(ctx, Config{Kernel: set.Kernel, Initrd: set.Initrd, Console: tlog{t},
		Guests: []GuestConfig{srv, lim, cli, other, trk}, Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Result{}
	for _, r := range res {
		by[r.Name] = r
		t.Logf("%s: status %d err %v features %#x pairs %d\n  net %+v\n  pci %+v\n  port %+v",
			r.Name, r.Status, r.Err, r.Features, r.ActivePairs, r.Net, r.PCI, r.Port)
		if r.Status != 0 || r.Err != nil {
			t.Errorf("guest %s: status %d, error %v", r.Name, r.Status, r.Err)
		}
	}
	for _, name := range []string{"srv", "cli"} {
		f, err := between(by[name].Console, "features")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		f = strings.TrimSpace(f)
		for _, b := range []int{bitGuestTSO4, bitHostTSO4, bitMrgRxbuf} {
			if !hasBit(f, b) {
				t.Errorf("%s: feature bit %d not negotiated: %s", name, b, f)
			}
		}
		if name == "srv" && !hasBit(f, bitMQ) {
			t.Errorf("srv: VIRTIO_NET_F_MQ not negotiated: %s", f)
		}
	}
	for _, tag := range []string{"single", "multi", "limited"} {
		out, err := between(by["cli"].Console, tag)
		if err != nil {
			t.Errorf("cli: %v", err)
			continue
		}
		bps, err := iperfBPS(out)
		if err != nil {
			t.Errorf("iperf3 %s: %v", tag, err)
			continue
		}
		t.Logf("iperf3 %s: %.1f Mbit/s", tag, bps/1e6)
		if tag == "limited" && (bps < 0.4*limitBPS || bps > 1.25*limitBPS) {
			t.Errorf("iperf3 into lim (limit %.0f Mbit/s): %.1f Mbit/s, want within 40%%..125%% of the limit",
				limitBPS/1e6, bps/1e6)
		}
	}
	s := by["srv"]
	if s.ActivePairs != 2 {
		t.Errorf("srv: %d active queue pairs, want 2 (VQ_PAIRS_SET)", s.ActivePairs)
	}
	if len(s.PCI.Interrupts) != 5 || s.PCI.Interrupts[0] == 0 || s.PCI.Interrupts[2] == 0 {
		t.Errorf("srv: per-queue interrupts %v: want both receive queues (0, 2) used", s.PCI.Interrupts)
	}
	if q, err := between(s.Console, "queues"); err != nil || !strings.Contains(q, "rx-1") {
		t.Errorf("srv: /sys/class/net/eth0/queues = %q (%v), want rx-1", q, err)
	}
	// other's ARP requests flood VLAN 20 only: nothing may come back.
	if o := by["other"].Port; o.TxPackets != 0 {
		t.Errorf("other (VLAN 20) was sent %d frames; VLAN 10 must not reach it", o.TxPackets)
	}
}
