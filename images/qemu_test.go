package images

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images/agentcfg"
)

// qemuRun boots the set under QEMU TCG with one virtio-net NIC on a hub of
// its own (no traffic leaves QEMU) and the isa-debug-exit device, and
// returns the console output and QEMU's exit status.
func qemuRun(t *testing.T, s *Set, c agentcfg.Cmdline) (string, int) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-nic", "none",
		"-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0,romfile=",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", s.Kernel, "-initrd", s.Initrd,
		"-append", "console=ttyS0 quiet panic=-1 "+c.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("QEMU ran %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("QEMU: %v", err)
	return "", 0
}

// consoleLines returns the agent's start and result lines.
func consoleLines(t *testing.T, out string) (agentcfg.Start, agentcfg.Result) {
	t.Helper()
	var st agentcfg.Start
	var r agentcfg.Result
	var haveStart, haveResult bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, agentcfg.StartPrefix) {
			s, err := agentcfg.ParseStart(l)
			if err != nil {
				t.Errorf("start line: %v", err)
			}
			st, haveStart = s, true
		}
		if strings.Contains(l, agentcfg.ResultPrefix) {
			if haveResult {
				t.Errorf("second result line %q", l)
			}
			res, err := agentcfg.ParseResult(l)
			if err != nil {
				t.Errorf("result line: %v", err)
			}
			r, haveResult = res, true
		}
	}
	if !haveStart || !haveResult {
		t.Fatalf("console lacks the start or the result line")
	}
	return st, r
}

// TestAgentUnderQEMU boots the real images with QEMU's emulator (no KVM
// needed) and checks the agent's contract end to end.
func TestAgentUnderQEMU(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("no qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	s := buildForTest(t)

	t.Run("script", func(t *testing.T) {
		out, code := qemuRun(t, s, agentcfg.Cmdline{
			Modules: []string{"@virtio-net"},
			Ifaces: []agentcfg.Iface{
				{Name: "eth0", Addr: netip.MustParsePrefix("10.99.0.1/24"), MTU: 1400},
				{Name: "eth0.10", Addr: netip.MustParsePrefix("fd00:99::1/64")},
			},
			Script: `uname -r
echo "mtu=$(cat /sys/class/net/eth0/mtu) vlan=$(cat /sys/class/net/eth0.10/mtu)"
ip addr show eth0 | grep -q 10.99.0.1/24 && echo addr-ok
ping -c 1 10.99.0.1 >/dev/null && echo ping-ok
iperf3 --version >/dev/null && echo iperf3-ok
exit 3
`,
			Timeout: time.Minute,
		})
		st, r := consoleLines(t, out)
		if st.Kernel != s.KernelVersion || st.CPUs != 1 || st.Uptime <= 0 {
			t.Errorf("start = %+v, want kernel %s, 1 CPU", st, s.KernelVersion)
		}
		if r.Status != 3 || r.Error != "" || r.Uptime < st.Uptime {
			t.Errorf("result = %+v, want status 3, no error", r)
		}
		for _, want := range []string{s.KernelVersion + "\n", "mtu=1400 vlan=1400", "addr-ok", "ping-ok", "iperf3-ok"} {
			if !strings.Contains(strings.ReplaceAll(out, "\r", ""), want) {
				t.Errorf("console lacks %q", want)
			}
		}
		if code != 3<<1|1 {
			t.Errorf("QEMU exit = %d, want %d", code, 3<<1|1)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		out, code := qemuRun(t, s, agentcfg.Cmdline{Script: "sleep 100", Timeout: time.Second})
		_, r := consoleLines(t, out)
		if r.Status != agentcfg.StatusTimeout || !strings.Contains(r.Error, "timed out") || code != agentcfg.StatusTimeout<<1|1 {
			t.Errorf("result = %+v, QEMU exit %d, want status 124", r, code)
		}
	})

	t.Run("cmdfile overlay", func(t *testing.T) {
		withScript := *s
		withScript.Initrd = filepath.Join(t.TempDir(), "initrd")
		err := AppendOverlay(withScript.Initrd, s.Initrd, []OverlayFile{
			{Path: "/etc/hvnet/test.sh", Data: []byte("cat /etc/hvnet/data.txt\nexit 9\n"), Mode: 0o755},
			{Path: "etc/hvnet/data.txt", Data: []byte("overlay-data-ok\n")},
		})
		if err != nil {
			t.Fatal(err)
		}
		out, code := qemuRun(t, &withScript, agentcfg.Cmdline{ScriptFile: "/etc/hvnet/test.sh"})
		_, r := consoleLines(t, out)
		if r.Status != 9 || code != 9<<1|1 || !strings.Contains(out, "overlay-data-ok") {
			t.Errorf("result = %+v, QEMU exit %d, want status 9 and the overlay's data", r, code)
		}
	})

	t.Run("agent error", func(t *testing.T) {
		out, code := qemuRun(t, s, agentcfg.Cmdline{Modules: []string{"no_such_module"}, Script: "exit 0"})
		_, r := consoleLines(t, out)
		if r.Status != agentcfg.StatusAgentError || !strings.Contains(r.Error, "no_such_module") || code != agentcfg.StatusAgentError<<1|1 {
			t.Errorf("result = %+v, QEMU exit %d, want status 125 naming the module", r, code)
		}
		if !strings.Contains(out, fmt.Sprint("hvnet-agent: error:")) {
			t.Errorf("console lacks the agent's error message")
		}
	})
}
