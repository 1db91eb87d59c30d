package lab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/nested"
	"github.com/hvnet/hvnet/vmtest"
)

// EnvBench enables TestBenchIperfVsQEMU, which takes minutes.
const EnvBench = "HVNET_BENCH"

const benchRounds = 3

// TestBenchIperfVsQEMU measures guest-to-guest iperf3 TCP throughput in the
// nested test host: two guests on hvnet's lab (virtio-net in the VMM,
// built-in switch) against the same two guests under QEMU -accel kvm with
// userspace virtio-net (vhost=off) on tap devices joined by a Linux
// bridge. Same kernel, initramfs, guest RAM and vCPUs; rounds alternate.
func TestBenchIperfVsQEMU(t *testing.T) {
	if os.Getenv(EnvBench) == "" && !vmtest.InL1() {
		t.Skipf("benchmark: set %s=1 to run", EnvBench)
	}
	var files []nested.File
	if !vmtest.InL1() {
		var err error
		if files, err = nested.QEMUFiles(); err != nil {
			t.Fatal(err)
		}
	}
	if vmtest.Nest(t, vmtest.NestOptions{MemMiB: 3072, Files: files, Timeout: 12 * time.Minute}) {
		return
	}
	set := vmtest.Images(t)
	srv := GuestConfig{Name: "srv", Addr: netip.MustParsePrefix("10.0.0.1/24"), Script: "iperf3 -s -1\n"}
	cli := GuestConfig{Name: "cli", Addr: netip.MustParsePrefix("10.0.0.2/24"),
		Script: waitPing("10.0.0.1") + iperfClient("tcp", "10.0.0.1", "-t 5")}
	var hv, qm []float64
	for round := 1; round <= benchRounds; round++ {
		stop := watchdog(t, 3*time.Minute)
		res, err := Run(context.Background(), Config{Kernel: set.Kernel, Initrd: set.Initrd, Console: tlog{t},
			Guests: []GuestConfig{srv, cli}, Timeout: 2 * time.Minute})
		stop()
		if err != nil {
			t.Fatal(err)
		}
		h, okH := benchBPS(t, "hvnet", res[1].Console)
		q, okQ := benchBPS(t, "qemu", qemuPair(t, set.Kernel, set.Initrd, []GuestConfig{srv, cli}))
		if !okH || !okQ {
			t.Logf("BENCH round %d: no result (hvnet %v, qemu %v), not counted", round, okH, okQ)
			continue
		}
		hv, qm = append(hv, h), append(qm, q)
		t.Logf("BENCH round %d: hvnet %.1f Mbit/s, qemu %.1f Mbit/s", round, h/1e6, q/1e6)
	}
	if len(hv) < benchRounds/2+1 {
		t.Fatalf("only %d of %d rounds gave results", len(hv), benchRounds)
	}
	mh, mq := median(hv), median(qm)
	t.Logf("BENCH iperf3 guest-to-guest TCP rounds=%d/%d hvnet_median_mbps=%.1f qemu_median_mbps=%.1f ratio=%.2f goal>=2",
		len(hv), benchRounds, mh/1e6, mq/1e6, mh/mq)
}

// benchBPS returns the iperf3 client's result from a console, or false
// (logged) when the run did not produce one.
func benchBPS(t *testing.T, who, console string) (float64, bool) {
	t.Helper()
	out, err := between(console, "tcp")
	if err == nil {
		var bps float64
		if bps, err = iperfBPS(out); err == nil {
			return bps, true
		}
	}
	t.Logf("%s: %v", who, err)
	return 0, false
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// qemuPair boots the guests under QEMU on taps in a Linux bridge and
// returns the second guest's console.
func qemuPair(t *testing.T, kernel, initrd string, gs []GuestConfig) string {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hvbr0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	defer netlink.LinkDel(br)
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, len(gs))
	for i, g := range gs {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("hvtap%d", i)},
			Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR}
		if err := netlink.LinkAdd(tap); err != nil {
			t.Fatalf("tap: %v", err)
		}
		for _, f := range tap.Fds {
			f.Close()
		}
		defer netlink.LinkDel(tap)
		if err := netlink.LinkSetMaster(tap, br); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(tap); err != nil {
			t.Fatal(err)
		}
		if err := g.validate(i); err != nil {
			t.Fatal(err)
		}
		ac := agentcfg.Cmdline{Modules: []string{"@virtio-net"}, Ifaces: []agentcfg.Iface{{Name: "eth0", Addr: g.Addr}}, Script: g.Script}
		mac := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", g.MAC[0], g.MAC[1], g.MAC[2], g.MAC[3], g.MAC[4], g.MAC[5])
		args := []string{"-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", fmt.Sprint(g.MemMiB), "-smp", "1",
			"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", kernel, "-initrd", initrd,
			"-append", BaseCmdline + " " + ac.String(),
			"-netdev", fmt.Sprintf("tap,id=n0,ifname=hvtap%d,script=no,downscript=no,vhost=off", i),
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac=" + mac}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
		cmd.Stdout = &outs[i]
		cmd.Stderr = &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatalf("qemu: %v", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); cmd.Wait() }()
	}
	wg.Wait()
	for i, g := range gs {
		for _, l := range strings.Split(outs[i].String(), "\n") {
			tlog{t}.Write([]byte("qemu " + g.Name + "| " + l))
		}
	}
	return outs[len(gs)-1].String()
}
