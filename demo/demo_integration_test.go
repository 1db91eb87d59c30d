package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/vmtest"
)

// TestDemo runs the whole demo, inside the nested test host where needed:
// every expectation must hold, and tcpdump must read the capture back.
func TestDemo(t *testing.T) {
	// Always inside the nested test host, even where this host's KVM could
	// boot the guests: the demo makes a veth and a "physical" namespace in
	// the test process's own network namespace, which must never be the
	// host's.
	if vmtest.NestUnless(t, false, vmtest.NestOptions{MemMiB: 2560, Timeout: 6 * time.Minute}) {
		return
	}
	set := vmtest.Images(t)
	path := filepath.Join(t.TempDir(), "demo.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Kernel: set.Kernel, Initrd: set.Initrd, Pcap: f})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	rep.PrintResult(&out)
	t.Log("\n" + out.String())
	for _, fl := range rep.Failures {
		t.Errorf("expectation failed: %s", fl)
	}
	if rep.PcapFrames == 0 {
		t.Error("nothing captured on the uplink")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil { // not in the nested host
		got, err := exec.Command(tcpdump, "-enr", path).CombinedOutput()
		if err != nil || !strings.Contains(string(got), "vlan 10") {
			t.Errorf("tcpdump -enr: %v\n%s", err, got)
		}
	}
}
