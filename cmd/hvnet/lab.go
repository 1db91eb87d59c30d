package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/daemon/labkind"
	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/lab"
	"github.com/hvnet/hvnet/nested"
)

// guestFlags collects repeated --guest specs.
type guestFlags []string

func (g *guestFlags) String() string     { return strings.Join(*g, " ") }
func (g *guestFlags) Set(s string) error { *g = append(*g, s); return nil }

// cmdLab boots several guests on the built-in switch (package lab). Its
// exit status is the first non-zero guest status, 1 if a guest failed
// otherwise, 0 when every guest's agent reported 0.
func cmdLab(e *env, args []string) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var guests guestFlags
	fs.Var(&guests, "guest", "a guest (repeatable): name=NAME,KEY=VALUE,...,cmd=SCRIPT in the keys of\n"+
		"hvnet switch --port kind=lab (hvnet switch --kinds), cmd last")
	config := fs.String("config", "", "file of guest specs, one per line (# comments)")
	kernel := fs.String("kernel", "", "guest bzImage (default: the built test image)")
	initrd := fs.String("initrd", "", "guest initramfs (default: the built test image)")
	mode := fs.String("nested", envOr(nested.EnvMode, "auto"), "boot inside a nested test host: never, always, or auto")
	timeout := fs.Duration("timeout", 0, "stop the lab after this long (0: never)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: hvnet lab [--config FILE] [--guest SPEC]... [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("%w: lab: unexpected argument %q", errUsage, fs.Arg(0)))
	}
	var gs []lab.GuestConfig
	if *config != "" {
		f, err := os.Open(*config)
		if err != nil {
			return fail(e, fmt.Errorf("%w: --config: %v", errUsage, err))
		}
		gs, err = parseGuestFile(f, *config)
		f.Close()
		if err != nil {
			return fail(e, fmt.Errorf("%w: lab: %v", errUsage, err))
		}
	}
	for i, s := range guests {
		g, err := parseGuest(s)
		if err != nil {
			return fail(e, fmt.Errorf("%w: lab: --guest #%d: %v", errUsage, i+1, err))
		}
		gs = append(gs, g)
	}
	if len(gs) == 0 {
		return fail(e, fmt.Errorf("%w: lab: no guests (--guest or --config)", errUsage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	if err := defaultImages(ctx, e, kernel, initrd); err != nil {
		return fail(e, fmt.Errorf("lab: %w", err))
	}
	need, reason, err := nested.Decide(*mode)
	if err != nil {
		return fail(e, err)
	}
	if need {
		e.log.Info("running the lab inside the nested test host", "reason", reason)
		return labNested(ctx, e, gs, guests, *config, *kernel, *initrd)
	}
	res, err := lab.Run(ctx, lab.Config{Kernel: *kernel, Initrd: *initrd, Guests: gs, Console: e.stdout, Log: e.log.Named("lab")})
	if err != nil {
		return fail(e, err)
	}
	status := 0
	for _, r := range res {
		e.log.Info("guest ended", "guest", r.Name, "status", r.Status, "error", r.Err,
			"features", fmt.Sprintf("%#x", r.Features), "queue_pairs", r.ActivePairs,
			"tx_packets", r.Net.TxPackets, "rx_packets", r.Net.RxPackets, "rx_drop_no_buffer", r.Net.RxDropNoBuffer,
			"needs_reset", r.PCI.NeedsReset, "bad_bar_access", r.PCI.BadAccess, "features_refused", r.PCI.FeaturesRefused)
		switch {
		case status == 0 && r.Status != 0:
			status = r.Status
		case status == 0 && r.Err != nil:
			status = 1
		}
	}
	return status
}

// parseGuest parses a --guest spec: the keys of a lab port (hvnet switch
// --port kind=lab), comma-separated, cmd last.
func parseGuest(spec string) (lab.GuestConfig, error) {
	p, err := daemon.ParsePort(api.KindLab, daemon.SplitSpec(spec, ","))
	if err != nil {
		return lab.GuestConfig{}, err
	}
	return labkind.GuestConfig(p)
}

// parseGuestFile reads a file of guest specs, one per line, blank lines
// and lines starting with # skipped; it reports every bad line at once,
// in line order, each with the file and line.
func parseGuestFile(r io.Reader, name string) ([]lab.GuestConfig, error) {
	var gs []lab.GuestConfig
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<10)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		g, err := parseGuest(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", name, n, err))
			continue
		}
		gs = append(gs, g)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return gs, errors.Join(errs...)
}

// labNested re-runs this lab inside the nested test host.
func labNested(ctx context.Context, e *env, gs []lab.GuestConfig, guests []string, config, kernel, initrd string) int {
	set, files, err := nestedBase(ctx, e)
	if err != nil {
		return fail(e, err)
	}
	files = append(files, nested.File{Src: kernel, Dst: "/hvnet/guest/kernel"}, nested.File{Src: initrd, Dst: "/hvnet/guest/initrd"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level %s lab --nested never --kernel /hvnet/guest/kernel --initrd /hvnet/guest/initrd",
		hclogLevel(e.log))
	if config != "" {
		files = append(files, nested.File{Src: config, Dst: "/hvnet/lab.conf"})
		script += " --config /hvnet/lab.conf"
	}
	for _, g := range guests {
		script += " --guest " + shellQuote(g)
	}
	return runLabNested(ctx, e, set, files, script, gs)
}

// runLabNested runs script (an hvnet command that boots guests) in a nested
// test host sized for the guests, and returns its exit status.
func runLabNested(ctx context.Context, e *env, set *images.Set, files []nested.File, script string, guests []lab.GuestConfig) int {
	var mem uint64 = 1024
	cpus := 2
	for _, g := range guests {
		mem += max(g.MemMiB, 256) + 64
		cpus = max(cpus, g.CPUs)
	}
	res, err := nested.Run(ctx, nested.Config{
		Kernel: set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
		MemMiB: int(mem), CPUs: cpus, Console: newL1Console(e.stdout), Log: e.log.Named("nested"), Steps: e.steps,
		Timeout: 60 * time.Minute,
	})
	if err != nil {
		return fail(e, err)
	}
	return res.Status
}

// l1Console passes the nested test host's console through without QEMU's
// TCG feature warnings.
type l1Console struct{ lines.Splitter }

func newL1Console(w io.Writer) *l1Console {
	return &l1Console{lines.Splitter{Line: func(l string) error {
		if strings.HasPrefix(l, "qemu-system-x86_64: warning: TCG doesn't support") {
			return nil
		}
		_, err := io.WriteString(w, l+"\n")
		return err
	}}}
}
