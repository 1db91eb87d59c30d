package vmm_test

import (
	"strings"
	"testing"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/vmtest"
)

// TestBootLinuxGuest boots the Debian kernel and the guest initramfs to the
// agent and checks the agent's marker lines and that the VMM's exit status
// is the agent command's.
func TestBootLinuxGuest(t *testing.T) {
	if vmtest.Nest(t) {
		return
	}
	for _, tc := range []struct {
		name   string
		script string
		want   int
	}{
		{"exit0", "uname -r; cat /proc/cmdline", 0},
		{"exit3", "echo failing on purpose; exit 3", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := vmtest.RunGuest(t, vmtest.Guest{Agent: agentcfg.Cmdline{Script: tc.script}})
			if g.Err != nil {
				t.Fatalf("Run: %v", g.Err)
			}
			if g.Start == nil {
				t.Fatalf("no %q line on the console", agentcfg.StartPrefix)
			}
			if g.Result == nil {
				t.Fatalf("no %q line on the console", agentcfg.ResultPrefix)
			}
			if g.Result.Status != tc.want || g.Status != tc.want {
				t.Errorf("agent status %d, VMM status %d; want %d", g.Result.Status, g.Status, tc.want)
			}
			if !strings.Contains(g.Console, g.Start.Kernel) {
				t.Errorf("console lacks the kernel release %q", g.Start.Kernel)
			}
			t.Logf("agent's first line after %v (guest uptime %.2fs)", g.FirstLine, g.Start.Uptime)
		})
	}
}

// TestBootSMP boots with two vCPUs and checks the guest sees both.
func TestBootSMP(t *testing.T) {
	if vmtest.Nest(t) {
		return
	}
	g := vmtest.RunGuest(t, vmtest.Guest{CPUs: 2, Agent: agentcfg.Cmdline{
		Script: "cat /sys/devices/system/cpu/online; test \"$(cat /sys/devices/system/cpu/online)\" = 0-1"}})
	if g.Err != nil {
		t.Fatalf("Run: %v", g.Err)
	}
	if g.Start == nil || g.Start.CPUs != 2 {
		t.Fatalf("agent start line %+v: want cpus=2", g.Start)
	}
	if g.Status != 0 {
		t.Fatalf("status %d: /sys/devices/system/cpu/online is not 0-1", g.Status)
	}
}
