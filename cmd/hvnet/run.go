package main

import (
	"context"
	"errors"

	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/nested"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
	"github.com/hvnet/hvnet/vmm"
)

// processStart is when this process began, for boot-time reports.
var processStart = time.Now()

const defaultCmdline = "console=ttyS0 quiet panic=-1 reboot=k"

type runFlags struct {
	kernel, initrd, mem, cmdline, appendArgs, exec, nestedMode string
	cpus                                                       int
	timeout                                                    time.Duration
	nets                                                       netFlags
}

// netFlags is the repeatable --net flag: one vhost-user NIC each.
type netFlags []netFlag

// netFlag is one --net: the backend's socket and the NIC's settings.
type netFlag struct {
	socket string
	cfg    vmm.NetConfig
}

func (n *netFlags) String() string { return fmt.Sprint(len(*n), " NICs") }

// Set parses vhost-user=SOCKET[,mac=MAC][,queues=N].
func (n *netFlags) Set(s string) error {
	parts := strings.Split(s, ",")
	sock, ok := strings.CutPrefix(parts[0], "vhost-user=")
	if !ok || sock == "" {
		return fmt.Errorf("%q: want vhost-user=SOCKET[,mac=MAC][,queues=N]", s)
	}
	var c vmm.NetConfig
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "mac":
			m, err := vswitch.ParseStationMAC(v)
			if err != nil {
				return fmt.Errorf("%q: mac: %w", s, err)
			}
			c.MAC = m
		case "queues":
			q, err := strconv.Atoi(v)
			if err != nil || q < 1 || q > 64 {
				return fmt.Errorf("%q: queues %q, want 1..64", s, v)
			}
			c.QueuePairs = q
		default:
			return fmt.Errorf("%q: unknown option %q (mac, queues)", s, k)
		}
	}
	*n = append(*n, netFlag{socket: sock, cfg: c})
	return nil
}

func cmdRun(e *env, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var f runFlags
	fs.StringVar(&f.kernel, "kernel", "", "bzImage to boot (required)")
	fs.StringVar(&f.initrd, "initrd", "", "initramfs")
	fs.StringVar(&f.mem, "mem", "512M", "guest RAM (e.g. 512M, 2G)")
	fs.IntVar(&f.cpus, "cpus", 1, "vCPUs")
	fs.StringVar(&f.cmdline, "cmdline", defaultCmdline, "kernel command line")
	fs.StringVar(&f.appendArgs, "append", "", "parameters appended to --cmdline")
	fs.StringVar(&f.exec, "exec", "", "shell script for hvnet's guest agent to run (its exit status becomes hvnet's)")
	fs.StringVar(&f.nestedMode, "nested", envOr(nested.EnvMode, "never"),
		"boot inside a nested test host: never, always, or auto (when this host's KVM cannot boot Linux)")
	fs.DurationVar(&f.timeout, "timeout", 0, "stop the guest after this long (0: never)")
	fs.Var(&f.nets, "net", "a virtio-net NIC backed by a vhost-user backend (hvnet switch, DPDK net_vhost): vhost-user=SOCKET[,mac=MAC][,queues=N]; repeatable")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("%w: run: unexpected argument %q", errUsage, fs.Arg(0)))
	}
	memMiB, err := units.ParseMiB(f.mem)
	if err != nil {
		return fail(e, fmt.Errorf("%w: --mem: %v", errUsage, err))
	}
	cmdline := strings.TrimSpace(f.cmdline + " " + f.appendArgs)
	if f.exec != "" {
		ac := agentcfg.Cmdline{Script: f.exec}
		if err := ac.Validate(); err != nil {
			return fail(e, fmt.Errorf("%w: --exec: %v", errUsage, err))
		}
		cmdline += " " + ac.String()
	}
	cfg := vmm.Config{Kernel: f.kernel, Initrd: f.initrd, Cmdline: cmdline, MemMiB: memMiB, CPUs: f.cpus, Log: e.log.Named("vmm")}
	if _, _, err := cfg.Validate(); err != nil {
		return fail(e, err)
	}
	need, reason, err := nested.Decide(f.nestedMode)
	if err != nil {
		return fail(e, fmt.Errorf("cannot boot here: %w\nhint: hvnet run --nested=auto (or ./run.sh) boots inside a nested test host", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	if need && len(f.nets) > 0 {
		return fail(e, fmt.Errorf("%w: --net: this guest would boot inside the nested test host (%s), which cannot reach the host's vhost-user sockets; use --nested never on a host whose KVM boots Linux", errUsage, reason))
	}
	if need {
		e.log.Info("booting inside the nested test host", "reason", reason)
		return runNested(ctx, e, f, cfg)
	}
	return runDirect(ctx, e, cfg, f.nets)
}

// runDirect boots the guest in this process, with its NICs.
func runDirect(ctx context.Context, e *env, cfg vmm.Config, nets netFlags) int {
	con := newAgentWatcher(e.stdout, e.log, false)
	cfg.Console = con
	if isTerminal(e.stdin) {
		cfg.Input = e.stdin
	}
	m, err := vmm.New(cfg)
	if err != nil {
		return fail(e, err)
	}
	defer m.Close()
	for i, nf := range nets {
		nf.cfg.Log = e.log.Named("net").With("nic", i)
		if _, err := m.AddVhostNet(nf.socket, nf.cfg); err != nil {
			return fail(e, fmt.Errorf("--net %s: %w", nf.socket, err))
		}
	}
	status, err := m.Run(ctx)
	if err != nil {
		return fail(e, err)
	}
	e.log.Debug("guest exited", "status", status)
	return status
}

// runNested boots a nested test host that runs this binary's "run".
func runNested(ctx context.Context, e *env, f runFlags, cfg vmm.Config) int {
	set, files, err := nestedBase(ctx, e)
	if err != nil {
		return fail(e, err)
	}
	files = append(files, nested.File{Src: cfg.Kernel, Dst: "/hvnet/guest/kernel"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level %s run --nested never --kernel /hvnet/guest/kernel --mem %dM --cpus %d --cmdline %s",
		hclogLevel(e.log), cfg.MemMiB, cfg.CPUs, shellQuote(cfg.Cmdline))
	if cfg.Initrd != "" {
		files = append(files, nested.File{Src: cfg.Initrd, Dst: "/hvnet/guest/initrd"})
		script += " --initrd /hvnet/guest/initrd"
	}
	memL1 := max(2048, int(cfg.MemMiB)+1024)
	res, err := nested.Run(ctx, nested.Config{
		Kernel: set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
		MemMiB: memL1, CPUs: max(2, cfg.CPUs), Console: newAgentWatcher(e.stdout, e.log, true),
		Log: e.log.Named("nested"), Steps: e.steps,
	})
	if err != nil {
		return fail(e, err)
	}
	return res.Status
}

func hclogLevel(l hclog.Logger) string {
	if lvl := l.GetLevel(); lvl != hclog.NoLevel {
		return lvl.String()
	}
	return "info"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// agentWatcher passes the guest console through and logs when hvnet's
// guest agent prints its first line: the boot time.
type agentWatcher struct {
	w      io.Writer
	log    hclog.Logger
	nested bool // the first agent line is the nested test host's own
	lines  lines.Splitter
	starts int // under lines' lock: only line counts them
}

func newAgentWatcher(w io.Writer, log hclog.Logger, nested bool) *agentWatcher {
	a := &agentWatcher{w: w, log: log, nested: nested}
	a.lines.Line = a.line
	return a
}

func (a *agentWatcher) Write(p []byte) (int, error) { return a.lines.Write(p) }

func (a *agentWatcher) line(l string) error {
	if strings.HasPrefix(l, "qemu-system-x86_64: warning: TCG doesn't support") {
		return nil
	}
	if strings.Contains(l, agentcfg.StartPrefix) {
		if st, err := agentcfg.ParseStart(l); err == nil {
			a.starts++
			since := time.Since(processStart).Round(time.Millisecond)
			switch {
			case a.nested && a.starts == 1:
				a.log.Info("nested test host up", "since_process_start", since, "l1_uptime_s", st.Uptime)
			case a.starts == 1 || a.nested && a.starts == 2:
				a.log.Info("guest agent started", "since_process_start", since,
					"guest_uptime_s", st.Uptime, "kernel", st.Kernel, "cpus", st.CPUs)
			}
		}
	}
	_, err := fmt.Fprintln(a.w, l)
	return err
}
