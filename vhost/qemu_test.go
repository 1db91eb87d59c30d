package vhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/images/agentcfg"
	vswitch "github.com/hvnet/hvnet/switch"
)

// qemuGuest boots the test guest under QEMU TCG with a vhost-user NIC on
// sock (PLATFORM.md: shared memfd guest memory; vectors=0 because QEMU 7.2
// crashes with MSI-X and vhost-user under TCG) and returns its console and
// the agent's exit status.
func qemuGuest(ctx context.Context, set *images.Set, sock string, mac byte, c agentcfg.Cmdline) (string, int, error) {
	if err := c.Validate(); err != nil {
		return "", 0, err
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-machine", "q35,memory-backend=mem", "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
		"-chardev", "socket,id=c0,path="+sock, "-netdev", "vhost-user,id=n0,chardev=c0",
		"-device", fmt.Sprintf("virtio-net-pci,netdev=n0,mac=02:00:00:00:00:%02x,vectors=0,romfile=", mac),
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", set.Kernel, "-initrd", set.Initrd,
		"-append", "console=ttyS0 quiet panic=-1 "+c.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return out.String(), 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), agentcfg.ResultPrefix) {
			r, err := agentcfg.ParseResult(sc.Text())
			return out.String(), r.Status, err
		}
	}
	return out.String(), 0, fmt.Errorf("no result line (QEMU: %v)", err)
}

// Two QEMU guests with vhost-user NICs on two hvnet ports ping each other
// and run a short iperf3.
func TestQEMUGuestsPing(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 not installed (apt-get install qemu-system-x86): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	set, err := images.Build(ctx, images.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sw := vswitch.New(vswitch.Config{})
	pa, sa := testPort(t, sw, "a", 1)
	pb, sb := testPort(t, sw, "b", 1)
	waitPeer := func(ip string) string {
		return fmt.Sprintf("i=0\nuntil ping -c 1 %s >/dev/null; do i=$((i+1)); if [ $i -gt 60 ]; then echo no peer; exit 7; fi; done\n", ip)
	}
	guests := []struct {
		sock   string
		mac    byte
		addr   string
		script string
	}{
		{sa, 1, "10.0.0.1/24", waitPeer("10.0.0.2") + "ping -c 3 10.0.0.2 || exit 8\n" +
			"i=0\nuntil iperf3 -c 10.0.0.2 -t 2; do i=$((i+1)); if [ $i -gt 10 ]; then exit 9; fi; sleep 1; done\n"},
		{sb, 2, "10.0.0.2/24", "iperf3 -s -1 || exit 10\n"},
	}
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	errs := make([]error, 2)
	start := time.Now()
	for i, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i], errs[i] = qemuGuest(ctx, set, g.sock, g.mac, agentcfg.Cmdline{
				Modules: []string{"@virtio-net"},
				Ifaces:  []agentcfg.Iface{{Name: "eth0", Addr: netip.MustParsePrefix(g.addr)}},
				Script:  g.script, Timeout: 150 * time.Second,
			})
		}()
	}
	wg.Wait()
	t.Logf("both guests done in %v", time.Since(start).Round(time.Millisecond))
	for i := range guests {
		if errs[i] != nil || codes[i] != 0 {
			t.Errorf("guest %d: status %d, error %v; console:\n%s", i, codes[i], errs[i], outs[i])
		}
	}
	if t.Failed() {
		return
	}
	if !strings.Contains(outs[0], "receiver") {
		t.Errorf("no iperf3 summary in guest 0's console:\n%s", outs[0])
	}
	for _, l := range strings.Split(outs[0], "\n") {
		if strings.Contains(l, "receiver") || strings.Contains(l, "packets transmitted") {
			t.Log(strings.TrimSpace(l))
		}
	}
	ca, cb := pa.Handle().Counters(), pb.Handle().Counters()
	t.Logf("switch: a in %d out %d, b in %d out %d", ca.RxPackets, ca.TxPackets, cb.RxPackets, cb.TxPackets)
}
