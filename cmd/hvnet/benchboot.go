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

	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/nested"
	"github.com/hvnet/hvnet/units"
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
	vmlinux := fs.String("vmlinux", "", "the same kernel uncompressed, also booted by hvnet (default: the test guest image's; \"none\" to skip)")
	initrd := fs.String("initrd", "", "initramfs (default: the test guest image)")
	mode := fs.String("nested", envOr(nested.EnvMode, "auto"), "nested test host: auto, always, never")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	memMiB, err := units.ParseMiB(*mem)
	if err != nil || *runs < 1 || *cpus < 1 {
		return fail(e, fmt.Errorf("%w: bench boot: want --runs >= 1, --cpus >= 1 and a valid --mem", errUsage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *kernel == "" || *initrd == "" {
		set, err := images.Build(ctx, images.Config{Log: e.log.Named("images"), Progress: e.stderr, Steps: e.steps})
		if err != nil {
			return fail(e, err)
		}
		*kernel, *initrd = set.Kernel, set.Initrd
		if *vmlinux == "" {
			*vmlinux = set.Vmlinux
		}
	}
	if *vmlinux == "none" {
		*vmlinux = ""
	}
	need, reason, err := nested.Decide(*mode)
	if err != nil {
		return fail(e, err)
	}
	if need {
		e.log.Info("benchmarking inside the nested test host", "reason", reason)
		return benchBootNested(ctx, e, *runs, memMiB, *cpus, *kernel, *vmlinux, *initrd)
	}
	return benchBootDirect(ctx, e, *runs, memMiB, *cpus, *kernel, *vmlinux, *initrd)
}

func benchBootNested(ctx context.Context, e *env, runs int, memMiB uint64, cpus int, kernel, vmlinux, initrd string) int {
	set, files, err := nestedBase(ctx, e)
	if err != nil {
		return fail(e, err)
	}
	qemuFiles, err := nested.QEMUFiles()
	if err != nil {
		return fail(e, err)
	}
	files = append(append(files, qemuFiles...),
		nested.File{Src: kernel, Dst: "/hvnet/guest/kernel"}, nested.File{Src: initrd, Dst: "/hvnet/guest/initrd"})
	script := fmt.Sprintf("/hvnet/bin/hvnet --log-level warn bench boot --nested never --runs %d --mem %dM --cpus %d --kernel /hvnet/guest/kernel --initrd /hvnet/guest/initrd",
		runs, memMiB, cpus)
	if vmlinux != "" {
		files = append(files, nested.File{Src: vmlinux, Dst: "/hvnet/guest/vmlinux"})
		script += " --vmlinux /hvnet/guest/vmlinux"
	} else {
		script += " --vmlinux none"
	}
	res, err := nested.Run(ctx, nested.Config{
		Kernel: set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
		MemMiB: 2048 + int(memMiB), CPUs: max(2, cpus), Console: newAgentWatcher(e.stdout, e.log, true),
		Log: e.log.Named("nested"), Steps: e.steps, Timeout: 30 * time.Minute,
	})
	if err != nil {
		return fail(e, err)
	}
	return res.Status
}

// benchBootDirect boots each variant runs times, interleaved, and reports
// the median time from process start to the agent's first line: hvnet with
// the bzImage, hvnet with the same kernel uncompressed (vmlinux, when
// given), and QEMU with the bzImage.
func benchBootDirect(ctx context.Context, e *env, runs int, memMiB uint64, cpus int, kernel, vmlinux, initrd string) int {
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
	hvnetArgs := func(k string) []string {
		return []string{"--log-level", "error", "run", "--nested", "never", "--kernel", k, "--initrd", initrd,
			"--mem", fmt.Sprintf("%dM", memMiB), "--cpus", fmt.Sprint(cpus), "--cmdline", cmdline}
	}
	type variant struct {
		name, bin string
		args      []string
		times     []time.Duration
	}
	vs := []*variant{{name: "hvnet", bin: self, args: hvnetArgs(kernel)}}
	if vmlinux != "" {
		vs = append(vs, &variant{name: "hvnet-vmlinux", bin: self, args: hvnetArgs(vmlinux)})
	}
	vs = append(vs, &variant{name: "qemu", bin: qemu, args: []string{"-accel", "kvm", "-cpu", "host", "-machine", "pc",
		"-m", fmt.Sprint(memMiB), "-smp", fmt.Sprint(cpus), "-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline}})
	for i := 0; i < runs; i++ {
		fmt.Fprintf(e.stdout, "run %d:", i+1)
		for _, v := range vs {
			d, err := timeBoot(ctx, v.bin, v.args)
			if err != nil {
				return fail(e, fmt.Errorf("bench boot: %s run %d: %w", v.name, i+1, err))
			}
			v.times = append(v.times, d)
			fmt.Fprintf(e.stdout, " %s %v", v.name, d.Round(time.Millisecond))
		}
		fmt.Fprintln(e.stdout)
	}
	qm := median(vs[len(vs)-1].times)
	fmt.Fprintf(e.stdout, "%-14s %10s %10s %10s %12s\n", "vmm", "median", "min", "max", "vs qemu")
	for _, v := range vs {
		m := median(v.times)
		fmt.Fprintf(e.stdout, "%-14s %10v %10v %10v %12.3f\n", v.name, m.Round(time.Millisecond),
			slices.Min(v.times).Round(time.Millisecond), slices.Max(v.times).Round(time.Millisecond), float64(m)/float64(qm))
	}
	line := fmt.Sprintf("BENCH boot runs=%d mem=%dM cpus=%d qemu_median_ms=%d", runs, memMiB, cpus, qm.Milliseconds())
	for _, v := range vs[:len(vs)-1] {
		m := median(v.times)
		line += fmt.Sprintf(" %s_median_ms=%d %s_ratio=%.3f", v.name, m.Milliseconds(), v.name, float64(m)/float64(qm))
	}
	fmt.Fprintln(e.stdout, line+" goal<=0.5")
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
