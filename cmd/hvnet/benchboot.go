package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"hvnet/images"
	"hvnet/images/agentcfg"
	"hvnet/nested"
)

// cmdBenchBoot times boots to the guest agent's first line: hvnet's VMM
// against QEMU with KVM, same kernel, initramfs, memory and vCPUs, runs
// interleaved. Where this host's KVM cannot boot Linux, the whole benchmark
// runs inside one nested test host, so both are measured on the same KVM.
func cmdBenchBoot(e *env, args []string) int {
	fs := flag.NewFlagSet("bench boot", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	runs := fs.Int("runs", 5, "boots of each")
	mem := fs.String("mem", "256M", "guest RAM")
	cpus := fs.Int("cpus", 1, "guest vCPUs")
	kernel := fs.String("kernel", "", "bzImage (default: the test guest image)")
	initrd := fs.String("initrd", "", "initramfs (default: the test guest image)")
	mode := fs.String("nested", envOr(nested.EnvMode, "auto"), "nested test host: auto, always, never")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	memMiB, err := parseSize(*mem)
	if err != nil || *runs < 1 || *cpus < 1 {
		return fail(e, fmt.Errorf("%w: bench boot: want --runs >= 1, --cpus >= 1 and a valid --mem", errUsage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *kernel == "" || *initrd == "" {
		set, err := images.Build(ctx, images.Config{Log: e.log.Named("images"), Progress: e.stderr})
		if err != nil {
			return fail(e, err)
		}
		*kernel, *initrd = set.Kernel, set.Initrd
	}
	need, reason, err := nested.Decide(*mode)
	if err != nil {
		return fail(e, err)
	}
	if need {
		e.log.Info("benchmarking inside the nested test host", "reason", reason)
		return benchBootNested(ctx, e, *runs, memMiB, *cpus, *kernel, *initrd)
	}
	return benchBootDirect(ctx, e, *runs, memMiB, *cpus, *kernel, *initrd)
}

func benchBootNested(ctx context.Context, e *env, runs int, memMiB uint64, cpus int, kernel, initrd string) int {
	self, err := os.Executable()
	if err != nil {
		return fail(e, err)
	}
	set, err := images.Build(ctx, images.Config{Log: e.log.Named("images"), Progress: e.stderr})
	if err != nil {
		return fail(e, err)
	}
	files, err := nested.QEMUFiles()
	if err != nil {
		return fail(e, err)
	}
	files = append(files, nested.File{Src: self, Dst: "/hvnet/bin/hvnet"},
		nested.File{Src: kernel, Dst: "/hvnet/guest/kernel"}, nested.File{Src: initrd, Dst: "/hvnet/guest/initrd"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level warn bench boot --nested never --runs %d --mem %dM --cpus %d --kernel /hvnet/guest/kernel --initrd /hvnet/guest/initrd",
		runs, memMiB, cpus)
	res, err := nested.Run(ctx, nested.Config{
		Kernel: set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
		MemMiB: 2048 + int(memMiB), CPUs: max(2, cpus), Console: &agentWatcher{w: e.stdout, log: e.log, nested: true},
		Log: e.log.Named("nested"), Timeout: 30 * time.Minute,
	})
	if err != nil {
		return fail(e, err)
	}
	return res.Status
}

// benchBootDirect boots each VMM runs times, interleaved, and reports the
// median time from process start to the agent's first line.
func benchBootDirect(ctx context.Context, e *env, runs int, memMiB uint64, cpus int, kernel, initrd string) int {
	self, err := os.Executable()
	if err != nil {
		return fail(e, err)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return fail(e, fmt.Errorf("bench boot: qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err))
	}
	agent := agentcfg.Cmdline{Script: "true"}
	cmdline := defaultCmdline + " " + agent.String()
	hvnetArgs := []string{"--log-level", "error", "run", "--nested", "never", "--kernel", kernel, "--initrd", initrd,
		"--mem", fmt.Sprintf("%dM", memMiB), "--cpus", fmt.Sprint(cpus), "--cmdline", cmdline}
	qemuArgs := []string{"-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", fmt.Sprint(memMiB), "-smp", fmt.Sprint(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", kernel, "-initrd", initrd, "-append", cmdline}
	var hv, qm []time.Duration
	for i := 0; i < runs; i++ {
		d, err := timeBoot(ctx, self, hvnetArgs)
		if err != nil {
			return fail(e, fmt.Errorf("bench boot: hvnet run %d: %w", i+1, err))
		}
		hv = append(hv, d)
		d, err = timeBoot(ctx, qemu, qemuArgs)
		if err != nil {
			return fail(e, fmt.Errorf("bench boot: qemu run %d: %w", i+1, err))
		}
		qm = append(qm, d)
		fmt.Fprintf(e.stdout, "run %d: hvnet %v, qemu %v\n", i+1, hv[i].Round(time.Millisecond), qm[i].Round(time.Millisecond))
	}
	mh, mq := median(hv), median(qm)
	fmt.Fprintf(e.stdout, "%-6s %10s %10s %10s\n", "vmm", "median", "min", "max")
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"hvnet", hv}, {"qemu", qm}} {
		fmt.Fprintf(e.stdout, "%-6s %10v %10v %10v\n", r.name, median(r.d).Round(time.Millisecond),
			slices.Min(r.d).Round(time.Millisecond), slices.Max(r.d).Round(time.Millisecond))
	}
	ratio := float64(mh) / float64(mq)
	fmt.Fprintf(e.stdout, "BENCH boot runs=%d mem=%dM cpus=%d hvnet_median_ms=%d qemu_median_ms=%d ratio=%.3f goal<=0.5\n",
		runs, memMiB, cpus, mh.Milliseconds(), mq.Milliseconds(), ratio)
	return 0
}

// timeBoot starts a VMM and returns the time until the agent's first line
// appears on its console, then waits for it to finish.
func timeBoot(ctx context.Context, bin string, args []string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var first time.Duration
	var tail []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if first == 0 && strings.Contains(line, agentcfg.StartPrefix) {
			first = time.Since(start)
		}
		if tail = append(tail, line); len(tail) > 20 {
			tail = tail[1:]
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return 0, err
	}
	if first == 0 {
		return 0, fmt.Errorf("no %q line (%v); last output:\n%s", agentcfg.StartPrefix, err, strings.Join(tail, "\n"))
	}
	return first, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
