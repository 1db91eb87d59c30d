package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hvnet/hvnet/demo"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/nested"
)

// The demo's capture crosses the nested test host's console gzipped and
// base64-encoded between these lines.
const (
	pcapBegin   = "BEGIN-hvnet-demo-pcap"
	pcapEnd     = "END-hvnet-demo-pcap"
	envDemoNS   = "HVNET_DEMO_NETNS" // set in the private network namespace
	envDemoPcap = "HVNET_DEMO_PCAP"
)

// cmdDemo runs the demonstration (package demo) and prints its summary;
// the exit status is 1 when an expectation failed.
func cmdDemo(e *env, args []string) int {
	if len(args) > 0 && args[0] == "fabric" {
		return cmdDemoFabric(e, args[1:])
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	kernel := fs.String("kernel", "", "guest bzImage (default: the built test image)")
	initrd := fs.String("initrd", "", "guest initramfs (default: the built test image)")
	mode := fs.String("nested", envOr(nested.EnvMode, "auto"), "run inside a nested test host: never, always, or auto")
	r := bitRate(demo.DefaultRate)
	fs.Var(&r, "rate", "g2's rate limit, bits per second (2M, 2mbit)")
	rate := (*int64)(&r)
	pcap := fs.String("pcap", envOr(envDemoPcap, "demo-capture.pcap"), "where the uplink's capture goes")
	pcapConsole := fs.Bool("pcap-console", false, "write the capture to stdout, gzip+base64 between marker lines (used inside the nested host)")
	verbose := fs.Bool("v", false, "show the guests' consoles")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: hvnet demo [flags]\n       hvnet demo fabric [flags]   (two hosts joined by VXLAN + BGP EVPN; hvnet demo fabric -h)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("%w: demo: unexpected argument %q", errUsage, fs.Arg(0)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := defaultImages(ctx, e, kernel, initrd); err != nil {
		return fail(e, fmt.Errorf("demo: %w", err))
	}
	need, reason, err := nested.Decide(*mode)
	if err != nil {
		return fail(e, err)
	}
	if need {
		fmt.Fprintf(e.stdout, "demo: running inside the nested test host (%s)\n", reason)
		return demoNested(ctx, e, *kernel, *initrd, *rate, *pcap, *verbose)
	}
	if os.Getenv(envDemoNS) != "1" {
		return demoPrivateNS(e, args)
	}
	var out bytes.Buffer
	var pw io.Writer = &out
	var f *os.File
	if !*pcapConsole {
		if f, err = os.Create(*pcap); err != nil {
			return fail(e, fmt.Errorf("demo: %w", err))
		}
		defer f.Close()
		pw = f
	}
	var console io.Writer
	if *verbose {
		console = e.stdout
	}
	fmt.Fprintln(e.stdout, "demo: switch + uplink upl0 <-> phys0 (trunk: VLANs 10, 20 tagged, 1 native); booting g1, g2 (VLAN 10, g2 rate limited) and g3 (VLAN 20)")
	rep, err := demo.Run(ctx, demo.Config{Kernel: *kernel, Initrd: *initrd, Rate: *rate, Pcap: pw,
		Console: console, Log: e.log.Named("demo")})
	if err != nil {
		return fail(e, err)
	}
	fmt.Fprintln(e.stdout)
	rep.Print(e.stdout)
	if *pcapConsole {
		fmt.Fprintf(e.stdout, "\npcap: %d frames mirrored from the uplink port (both directions), copied out of the nested host\n", rep.PcapFrames)
		if err := writeBase64(e.stdout, out.Bytes()); err != nil {
			return fail(e, err)
		}
	} else {
		abs, _ := filepath.Abs(*pcap)
		fmt.Fprintf(e.stdout, "\npcap: %s (%d frames mirrored from the uplink port; tcpdump -enr %s)\n", abs, rep.PcapFrames, abs)
	}
	if len(rep.Failures) > 0 && !*verbose {
		for _, g := range rep.Guests {
			if g.Status != 0 || g.Err != nil {
				fmt.Fprintf(e.stdout, "\nconsole of %s:\n%s", g.Name, g.Console)
			}
		}
	}
	rep.PrintResult(e.stdout)
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// demoPrivateNS re-runs the demo in a network namespace of its own, so its
// veth and namespace never touch the host's interfaces.
func demoPrivateNS(e *env, args []string) int {
	return reexecPrivateNS(e, envDemoNS, append([]string{"demo"}, args...))
}

// reexecPrivateNS runs hvnet ARGS again in a new network namespace, with
// env=1 set so the child knows it is there, and returns its status.
func reexecPrivateNS(e *env, env string, args []string) int {
	self, err := os.Executable()
	if err != nil {
		return fail(e, fmt.Errorf("%s: %w", args[0], err))
	}
	cmd := exec.Command(self, append([]string{"--log-level", hclogLevel(e.log)}, args...)...)
	cmd.Stdout, cmd.Stderr = e.stdout, e.stderr
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			return xe.ExitCode()
		}
		return fail(e, fmt.Errorf("%s: private network namespace: %w", args[0], err))
	}
	return 0
}

func writeBase64(w io.Writer, data []byte) error {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		return err
	}
	s := base64.StdEncoding.EncodeToString(z.Bytes())
	var b strings.Builder
	b.WriteString(pcapBegin + "\n")
	for len(s) > 0 {
		n := min(len(s), 76)
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(pcapEnd + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// demoNested runs the demo inside the nested test host and writes the
// capture it sends back to pcap.
func demoNested(ctx context.Context, e *env, kernel, initrd string, rate int64, pcap string, verbose bool) int {
	set, files, err := nestedBase(ctx, e)
	if err != nil {
		return fail(e, err)
	}
	files = append(files, nested.File{Src: kernel, Dst: "/hvnet/guest/kernel"}, nested.File{Src: initrd, Dst: "/hvnet/guest/initrd"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level %s demo --nested never --kernel /hvnet/guest/kernel --initrd /hvnet/guest/initrd --rate %d --pcap-console",
		hclogLevel(e.log), rate)
	if verbose {
		script += " -v"
	}
	con := newPcapConsole(newL1Console(e.stdout))
	res, err := nested.Run(ctx, nested.Config{
		Kernel: set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
		MemMiB: 2560, CPUs: 2, Console: con, Log: e.log.Named("nested"), Steps: e.steps,
		Timeout: 15 * time.Minute, LockupLimit: nested.DefaultLockupLimit,
		// The demo talks at least every minute or so (boot, then its
		// report): a console silent for 4 minutes is a frozen host.
		SilenceLimit: 4 * time.Minute,
	})
	if err != nil {
		// The emulated test host can freeze or die after the demo is
		// over: its verdict printed and its capture sent, only the
		// process's exit and the host's result line left (seen once in
		// CI: the console silent from the verdict on). That is the test
		// bed's failure, after the demo's; the verdict stands.
		v, ok := con.verdict()
		if !ok || !con.done() {
			return fail(e, err)
		}
		fmt.Fprintf(e.stdout, "demo: the nested test host failed after the demo's verdict (%v); the verdict stands\n", err)
		res = &nested.Result{Status: v}
	}
	if data, err := con.pcap(); err != nil {
		fmt.Fprintf(e.stdout, "pcap: not copied out of the nested host: %v\n", err)
		if res.Status == 0 {
			return 1
		}
	} else if err := os.WriteFile(pcap, data, 0o644); err != nil {
		return fail(e, fmt.Errorf("demo: %w", err))
	} else {
		abs, _ := filepath.Abs(pcap)
		fmt.Fprintf(e.stdout, "pcap: %s (%d bytes; tcpdump -enr %s)\n", abs, len(data), abs)
	}
	return res.Status
}

// pcapConsole passes the nested host's console on, keeping the lines
// between the capture's markers.
type pcapConsole struct {
	w       io.Writer
	lines   lines.Splitter
	mu      sync.Mutex // guards in, end, b64 and the verdict
	in, end bool
	b64     strings.Builder
	// The demo's verdict line, if seen: its status (0: every
	// expectation held).
	seen   bool
	status int
}

// verdict returns the status the demo's verdict line stands for, and
// whether there was one.
func (c *pcapConsole) verdict() (status int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status, c.seen
}

// done reports whether the whole capture came through.
func (c *pcapConsole) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

func newPcapConsole(w io.Writer) *pcapConsole {
	c := &pcapConsole{w: w}
	c.lines.Line = c.line
	return c
}

func (c *pcapConsole) Write(p []byte) (int, error) { return c.lines.Write(p) }

func (c *pcapConsole) line(t string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case strings.HasSuffix(t, pcapBegin):
		c.in = true
	case strings.HasSuffix(t, pcapEnd):
		c.in, c.end = false, true
	case c.in:
		c.b64.WriteString(strings.TrimSpace(t))
	default:
		if r, ok := strings.CutPrefix(t, "result: "); ok {
			c.seen, c.status = true, 1
			if strings.HasPrefix(r, "every expectation held") {
				c.status = 0
			}
		}
		_, err := io.WriteString(c.w, t+"\n")
		return err
	}
	return nil
}

func (c *pcapConsole) pcap() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.end {
		return nil, errors.New("no capture in the nested host's console")
	}
	z, err := base64.StdEncoding.DecodeString(c.b64.String())
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return io.ReadAll(bufio.NewReader(zr))
}
