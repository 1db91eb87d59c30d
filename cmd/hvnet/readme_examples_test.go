package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/internal/netnstest"
	"github.com/hvnet/hvnet/topology"
	"github.com/hvnet/hvnet/vmm"
	"github.com/hvnet/hvnet/vmtest"
)

// readmeBlock is a fenced code block of the README.
type readmeBlock struct {
	lang, text string
	line       int
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	var cur *readmeBlock
	for i, l := range strings.Split(string(raw), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(l, "```"), line: i + 1}
		case cur != nil && l == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	return out
}

// readmeExample says how the test runs one sh block of the README, by
// how the block starts.
type readmeExample struct {
	start string
	heavy bool // boots guests: minutes, in the nested test host here
	// until, when set, is the block's success: the block runs until it
	// holds (its last command runs until it is stopped), then is killed.
	until func(c *api.Client) bool
	want  func(t *testing.T, out string) // checks on what the block printed
	skip  string                         // why the test does not run it
}

func connected(name string) func(c *api.Client) bool {
	return func(c *api.Client) bool {
		p, err := c.Port(context.Background(), name)
		return err == nil && p.Device != nil && p.Device.VhostCounters != nil && p.Device.Sessions > 0
	}
}

var readmeExamples = []readmeExample{
	{start: "./run.sh", skip: "the main job and the test suite: what CI runs, this test included"},
	{start: `eval "$(bin/hvnet images --env)"`, heavy: true, want: func(t *testing.T, out string) {
		lines := strings.Fields(out)
		if len(lines) == 0 || lines[len(lines)-1] != "3" || !strings.Contains(out, "Linux") {
			t.Errorf("hvnet run --exec 'uname -a; exit 3'; echo $?: want uname's line and 3 last, got:\n%s", out)
		}
	}},
	{start: "bin/hvnet lab --guest", heavy: true, want: func(t *testing.T, out string) {
		if !regexp.MustCompile(`(?m)^a\| .*icmp_seq=3`).MatchString(out) {
			t.Errorf("hvnet lab: want a's three pings answered, got:\n%s", out)
		}
	}},
	{start: "bin/hvnet demo fabric", heavy: true, want: func(t *testing.T, out string) {
		// The matrix's rows: a1 reaches a2 only, b2 reaches b1 only.
		for _, re := range []string{`(?m)^\s+a1\s+\\\s+-- \[--\]\s+ok \[ok\]\s+-- \[--\]\s*$`, `(?m)^\s+b2\s+-- \[--\]\s+ok \[ok\]\s+-- \[--\]\s+\\\s*$`,
			`bgp neighbor 10\.8\.0\.2:\s+AS 65000, established`, `remote mac 52:54:00:0f:02:01 vni 100:\s+behind 10\.8\.0\.2 \(evpn\)`,
			`result: every expectation held`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("hvnet demo fabric: want %s in its output, got:\n%s", re, out)
				return
			}
		}
	}},
	{start: "hvnet switch --port kind=bond,name=bond0,if=eth1,if=eth2", until: func(c *api.Client) bool {
		// The README test's eth1 and eth2 have no LACP partner: the bond
		// falls back to active-backup on one of them.
		p, err := c.Port(context.Background(), "bond0")
		return err == nil && p.Bond != nil && len(p.Bond.Members) == 2 && p.Bond.Mode == "lacp (no partner: active-backup)" &&
			p.Bond.Members[0].LACP != nil && p.Bond.Members[0].Carrying != p.Bond.Members[1].Carrying
	}},
	{start: "hvnet switch --api /run/hvnet.sock", want: func(t *testing.T, out string) {
		for _, w := range []string{"vm1", "uplink", `"name": "vm1"`, "port vm2 added: vhost-user", "port vm2 updated",
			"100 Mbit/s", "50 Mbit/s", "vm2"} {
			if !strings.Contains(out, w) {
				t.Errorf("the daemon example's output lacks %q:\n%s", w, out)
			}
		}
	}},
	{start: "hvnet switch --uplink name=uplink,if=eth1,rate=1G,dscp-class=46:2", want: func(t *testing.T, out string) {
		for _, w := range []string{"SENDER", "(class)", "port vm2 updated", "reservation 200 Mbit/s, shares 50, limit 500 Mbit/s",
			"reservations add up to 1.1 Gbit/s"} {
			if !strings.Contains(out, w) {
				t.Errorf("the bandwidth allocation example's output lacks %q:\n%s", w, out)
			}
		}
	}},
	{start: "hvnet switch --port name=vm1,socket=/run/hvnet/vm1.sock,vlan=10 &\nqemu", until: connected("vm1")},
	{start: "hvnet switch --port name=vm1,socket=/run/hvnet/vm1.sock,vlan=10,queues=2,socket-group=kvm", until: func(c *api.Client) bool {
		p, err := c.Port(context.Background(), "vm1")
		return err == nil && p.Options["socket-group"][0] == "kvm"
	}},
	{start: "mkdir mynet && cd mynet && go mod init example.com/mynet", want: func(t *testing.T, out string) {
		if !regexp.MustCompile(`(?m)^github\.com/hvnet/hvnet v0\.0\.0 => /`).MatchString(out) {
			t.Errorf("the new module does not require hvnet from the checkout:\n%s", out)
		}
	}},
	{start: "hvnet switch --port name=vm1,socket=/run/hvnet/vm1.sock,vlan=10 &\ndpdk-testpmd", want: func(t *testing.T, out string) {
		if !strings.Contains(out, "Port 0") || !strings.Contains(out, "Bye") {
			t.Errorf("testpmd did not start its port and quit:\n%s", out)
		}
	}},
}

// Every sh block of the README runs as written (TestReadmeExamples'
// substitutions aside: see the README's note), the yaml block is a
// topology hvnet up takes, and the libvirt domain names the socket the
// example's port serves.
func TestReadmeExamples(t *testing.T) {
	blocks := readmeBlocks(t)
	var sh []readmeBlock
	for _, b := range blocks {
		switch b.lang {
		case "sh":
			sh = append(sh, b)
		case "yaml":
			tp, err := topology.Parse("README.md", []byte(b.text))
			if err == nil {
				_, err = topologyConfig(tp)
			}
			if err != nil {
				t.Errorf("README.md:%d: the yaml example: %v", b.line, err)
			}
		case "xml":
			checkLibvirtExample(t, b, blocks)
		case "go":
			checkGoExample(t, b, "../../examples/udpecho/vm_test.go")
		case "":
		default:
			t.Errorf("README.md:%d: a %q block: this test does not know how to run it", b.line, b.lang)
		}
	}
	for _, b := range sh {
		ex, ok := exampleFor(b)
		if !ok {
			t.Errorf("README.md:%d: an sh block this test does not run (add it to readmeExamples):\n%s", b.line, b.text)
			continue
		}
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			if ex.skip != "" {
				t.Skip(ex.skip)
			}
			if ex.heavy && testing.Short() {
				t.Skip("boots guests (-short)")
			}
			runReadmeBlock(t, b, ex)
		})
	}
}

// checkGoExample checks that the README's Go block is an excerpt of the
// file: every line but "..." is one of the file's, in the same order.
func checkGoExample(t *testing.T, b readmeBlock, file string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	at := 0
	for i, l := range strings.Split(strings.TrimRight(b.text, "\n"), "\n") {
		if strings.TrimSpace(l) == "..." || strings.TrimSpace(l) == "" {
			continue
		}
		found := false
		for at < len(lines) {
			at++
			if lines[at-1] == l {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md:%d: the Go example's line %q is not in %s (or not in its order)", b.line+1+i, l, file)
			return
		}
	}
}

func exampleFor(b readmeBlock) (readmeExample, bool) {
	for _, ex := range readmeExamples {
		if strings.HasPrefix(b.text, ex.start) {
			return ex, true
		}
	}
	return readmeExample{}, false
}

// readmeBin builds hvnet as ./run.sh does, once per test binary.
var readmeBin = func() func(t *testing.T) string {
	var dir string
	return func(t *testing.T) string {
		t.Helper()
		if dir != "" {
			return dir
		}
		d, err := os.MkdirTemp("", "hvnet-readme-bin-")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(d, "hvnet"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		dir = d
		return dir
	}
}()

// runReadmeBlock runs one sh block with bash in a private network
// namespace that has interfaces eth1 and eth2 (veth pairs within it), in a directory of
// its own that stands for /run/hvnet, with the hvnet just built as both
// hvnet (on PATH) and bin/hvnet.
func runReadmeBlock(t *testing.T, b readmeBlock, ex readmeExample) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed to run the README's examples")
	}
	bin := readmeBin(t)
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	ns := netnstest.New(t, "hvr")
	for _, ifc := range []string{"eth1", "eth2"} {
		netnstest.Run(t, "ip", "-n", ns, "link", "add", ifc, "type", "veth", "peer", "name", ifc+"-peer")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", ifc, "up")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", ifc+"-peer", "up")
	}
	script := strings.ReplaceAll(b.text, "/run/hvnet", filepath.Join(dir, "hvnet"))
	if root, err := filepath.Abs("../.."); err == nil { // this checkout, for "/path/to/hvnet"
		script = strings.ReplaceAll(script, "/path/to/hvnet", root)
	}
	if strings.Contains(script, "qemu-system-x86_64") {
		if err := vmm.Probe(""); err != nil { // PVM or no KVM: QEMU's TCG (README: vectors=0 there)
			script = strings.ReplaceAll(script, "-accel kvm", "-accel tcg")
			script = regexp.MustCompile(`(-device virtio-net-pci,[^ \n]*)`).ReplaceAllString(script, "$1,vectors=0")
		}
		script = strings.ReplaceAll(script, " ...\n", " -nographic -S\n")
	}
	if ex.heavy {
		vmtest.Images(t) // built before the clock starts
		// The nested test host now and then freezes (RELIABILITY.md, the
		// test bed); as vmtest does, a frozen attempt is run again in a
		// fresh host: three in all, five minutes each (one takes ~30 s).
		for attempt := 1; ; attempt++ {
			if !runReadmeAttempt(t, b, ex, ns, dir, bin, script, 5*time.Minute, attempt < 3) {
				return
			}
			t.Logf("README.md:%d: attempt %d timed out (a frozen nested test host?): again", b.line, attempt)
		}
	}
	runReadmeAttempt(t, b, ex, ns, dir, bin, script, 2*time.Minute, false)
}

// runReadmeAttempt runs the block once; with retry, a timeout is reported
// (true) instead of failing the test.
func runReadmeAttempt(t *testing.T, b readmeBlock, ex readmeExample, ns, dir, bin, script string, timeout time.Duration, retry bool) (timedOut bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// All the machine's CPUs, whatever this thread was pinned to (a
	// benchmark pins threads; testpmd needs a forwarding core).
	args := []string{"netns", "exec", ns, "taskset", "-c", fmt.Sprintf("0-%d", runtime.NumCPU()-1), "bash"}
	if !strings.Contains(script, "echo $?") { // a block that shows a status goes on after it
		args = append(args, "-e", "-o", "pipefail")
	}
	if ex.until == nil { // the block's background daemons end with it
		script = "trap 'j=$(jobs -p); [ -z \"$j\" ] || kill $j; wait' EXIT\n" + script
	}
	cmd := exec.CommandContext(ctx, "ip", append(args, "-c", script)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HVNET_SOCKET="+filepath.Join(dir, "hvnet.sock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if strings.Contains(script, "dpdk-testpmd") {
		cmd.Stdin = strings.NewReader("show port info all\nquit\n")
	}
	out := &lines.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its background jobs too
	if ex.until != nil {
		c := api.NewClient(filepath.Join(dir, "hvnet.sock"))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for !ex.until(c) {
			select {
			case err := <-done:
				t.Fatalf("README.md:%d: the block ended (%v) before it did what it shows:\n%s", b.line, err, out.String())
			case <-ctx.Done():
				t.Fatalf("README.md:%d: not done after %v:\n%s", b.line, timeout, out.String())
			case <-tick.C:
			}
		}
		t.Logf("README.md:%d: done; it printed:\n%s", b.line, out.String())
		return false
	}
	err := <-done
	if retry && ctx.Err() != nil {
		return true
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(b.text, "echo $?") {
			t.Fatalf("README.md:%d: %v\n%s", b.line, err, out.String())
		}
	}
	if ex.want != nil {
		ex.want(t, out.String())
	}
	return false
}

// checkLibvirtExample: the domain's vhost-user interface connects (mode
// client) to the socket the example's port serves, with its queues, and
// shares its memory.
func checkLibvirtExample(t *testing.T, b readmeBlock, blocks []readmeBlock) {
	var dom struct {
		Memory struct {
			Source struct {
				Type string `xml:"type,attr"`
			} `xml:"source"`
			Access struct {
				Mode string `xml:"mode,attr"`
			} `xml:"access"`
		} `xml:"memoryBacking"`
		Iface struct {
			Type   string `xml:"type,attr"`
			Source struct {
				Path string `xml:"path,attr"`
				Mode string `xml:"mode,attr"`
			} `xml:"source"`
			Driver struct {
				Queues string `xml:"queues,attr"`
			} `xml:"driver"`
		} `xml:"devices>interface"`
	}
	if err := xml.Unmarshal([]byte(b.text), &dom); err != nil {
		t.Fatalf("README.md:%d: the libvirt domain: %v", b.line, err)
	}
	var port string
	for _, o := range blocks {
		if o.lang == "sh" && o.line < b.line && strings.Contains(o.text, "socket-group=kvm") {
			port = o.text
		}
	}
	want := fmt.Sprintf("socket=%s,", dom.Iface.Source.Path)
	if dom.Iface.Type != "vhostuser" || dom.Iface.Source.Mode != "client" || !strings.Contains(port, want) ||
		!strings.Contains(port, "queues="+dom.Iface.Driver.Queues+",") || dom.Memory.Access.Mode != "shared" || dom.Memory.Source.Type != "memfd" {
		t.Errorf("README.md:%d: the libvirt domain %+v does not match the port before it: %q", b.line, dom, port)
	}
}
