package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hvnet/hvnet/demo"
	"github.com/hvnet/hvnet/nested"
)

const envFabricNS = "HVNET_FABRIC_NETNS" // set in the fabric demo's private network namespace

// cmdDemoFabric is "hvnet demo fabric": two hvnet hosts joined by VXLAN
// with BGP EVPN, two lab guests on each (package demo, RunFabric); the
// exit status is 1 when an expectation failed.
func cmdDemoFabric(e *env, args []string) int {
	fs := flag.NewFlagSet("demo fabric", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	kernel := fs.String("kernel", "", "guest bzImage (default: the built test image)")
	initrd := fs.String("initrd", "", "guest initramfs (default: the built test image)")
	mode := fs.String("nested", envOr(nested.EnvMode, "auto"), "run inside a nested test host: never, always, or auto")
	verbose := fs.Bool("v", false, "show the hosts' output (their daemons' logs and the guests' consoles)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: hvnet demo fabric [flags]\nTwo hvnet hosts in network namespaces, joined over an underlay bridge by VXLAN with BGP EVPN;\nVLAN 10 = VNI 100 and VLAN 20 = VNI 200; two lab guests on each host ping each other.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("%w: demo fabric: unexpected argument %q", errUsage, fs.Arg(0)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := defaultImages(ctx, e, kernel, initrd); err != nil {
		return fail(e, fmt.Errorf("demo fabric: %w", err))
	}
	need, reason, err := nested.Decide(*mode)
	if err != nil {
		return fail(e, err)
	}
	if need {
		fmt.Fprintf(e.stdout, "demo fabric: running inside the nested test host (%s)\n", reason)
		return fabricNested(ctx, e, *kernel, *initrd, *verbose)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(e, fmt.Errorf("demo fabric: %w", err))
	}
	if os.Getenv(envFabricNS) != "1" {
		// A network namespace of its own: the underlay bridge and veths
		// never touch the host's interfaces.
		return reexecPrivateNS(e, envFabricNS, append([]string{"demo", "fabric"}, args...))
	}
	var console io.Writer
	if *verbose {
		console = e.stdout
	}
	fmt.Fprintln(e.stdout, "demo fabric: hosts h1 (10.8.0.1) and h2 (10.8.0.2) on an underlay bridge, hvnet up in each: a vxlan port (VNI 100 = VLAN 10, VNI 200 = VLAN 20) with BGP EVPN (AS 65000); booting a1, b1 on h1 and a2, b2 on h2")
	rep, err := demo.RunFabric(ctx, demo.FabricConfig{HVNet: self, Kernel: *kernel, Initrd: *initrd, Console: console, Log: e.log.Named("demo")})
	if err != nil {
		return fail(e, err)
	}
	fmt.Fprintln(e.stdout)
	rep.Print(e.stdout)
	if len(rep.Failures) > 0 && !*verbose {
		for _, h := range rep.Hosts {
			fmt.Fprintf(e.stdout, "\noutput of host %s:\n%s", h.Name, h.Output)
		}
	}
	rep.PrintResult(e.stdout)
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// fabricNested runs the fabric demo inside the nested test host.
func fabricNested(ctx context.Context, e *env, kernel, initrd string, verbose bool) int {
	set, files, err := nestedBase(ctx, e)
	if err != nil {
		return fail(e, err)
	}
	files = append(files, nested.File{Src: kernel, Dst: "/hvnet/guest/kernel"}, nested.File{Src: initrd, Dst: "/hvnet/guest/initrd"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level %s demo fabric --nested never --kernel /hvnet/guest/kernel --initrd /hvnet/guest/initrd",
		hclogLevel(e.log))
	if verbose {
		script += " -v"
	}
	// The emulated test host sometimes dies (an L1 kernel panic: no
	// result line) or freezes; as vmtest does for tests, the demo runs
	// again in a fresh one then (three hosts in all). A demo that fails
	// in a host that lived fails at once.
	for attempt := 1; ; attempt++ {
		res, err := nested.Run(ctx, nested.Config{
			Kernel: set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
			MemMiB: 3072, CPUs: 2, Console: newL1Console(e.stdout), Log: e.log.Named("nested"), Steps: e.steps,
			Timeout: 12 * time.Minute, LockupLimit: nested.DefaultLockupLimit, SilenceLimit: 4 * time.Minute,
		})
		if (errors.Is(err, nested.ErrNoResult) || errors.Is(err, nested.ErrFrozen)) && attempt < 3 && ctx.Err() == nil {
			fmt.Fprintf(e.stdout, "demo fabric: the nested test host died or froze (%v); again in a fresh one\n", err)
			continue
		}
		if err != nil {
			return fail(e, err)
		}
		return res.Status
	}
}
