// Package nested boots a nested test host: a Linux "L1" machine under
// QEMU's TCG emulator with emulated AMD SVM, in which /dev/kvm is real
// hardware-style virtualisation, so that hvnet can boot stock Linux "L2"
// guests on hosts whose own KVM cannot (kvm_pvm, see ../shared/PLATFORM.md).
//
// The L1 runs the same Debian kernel and guest initramfs as the test
// guests, plus an overlay archive with the files a caller asks for (hvnet's
// binaries, a test binary, the L2 images) and a script that the guest
// agent runs as the L1's job. Run streams the L1 console to the caller and
// returns the script's exit status from the agent's result line.
//
//	res, err := nested.Run(ctx, nested.Config{
//		Kernel: set.Kernel, Initrd: set.Initrd,
//		Files:  []nested.File{{Src: "/usr/local/bin/hvnet", Dst: "/hvnet/bin/hvnet"}},
//		Script: "hvnet run --kernel ...",
//	})
//
// Whether nesting is needed is decided by Decide: HVNET_NESTED=always or
// never forces it, auto (the default) probes the host's KVM.
package nested

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/progress"
	"github.com/hvnet/hvnet/vmm"
)

// EnvMode is the environment variable that forces the choice: "always",
// "never" or "auto" (default).
const EnvMode = "HVNET_NESTED"

// Decide reports whether guests must be booted inside a nested test host,
// and why. It fails when nesting is forbidden but the host's KVM is
// unusable, or the mode is unknown.
func Decide(mode string) (bool, string, error) {
	if mode == "" {
		mode = os.Getenv(EnvMode)
	}
	probe := vmm.Probe("")
	switch mode {
	case "", "auto":
		if probe != nil {
			return true, probe.Error(), nil
		}
		return false, "host KVM can boot Linux", nil
	case "always", "on", "1":
		return true, EnvMode + "=always", nil
	case "never", "off", "0":
		if probe != nil {
			return false, "", fmt.Errorf("%s=never, but: %w", EnvMode, probe)
		}
		return false, EnvMode + "=never", nil
	}
	return false, "", fmt.Errorf("%s=%q: want auto, always or never", EnvMode, mode)
}

// Test-bed settings: EnvKVMParams sets Config.KVMParams where a caller
// leaves it empty (else DefaultKVMParams); EnvL1THP=never turns
// transparent huge pages off in the test host.
const (
	EnvKVMParams = "HVNET_L1_KVM_AMD"
	EnvL1THP     = "HVNET_L1_THP"
)

// DefaultKVMParams are the L1's kvm_amd parameters unless a caller or
// EnvKVMParams says otherwise: no nested paging. With it (kvm_amd's
// default) the L1 runs its guests on TCG's emulation of AMD's nested page
// tables, and under load the emulated machine lost about every other test
// host (L1 kernel panics in KVM_RUN, guests ending in a triple fault);
// with shadow paging (npt=0) the L1's KVM does not use that part of the
// emulation, guests boot as fast, and none was lost in the runs measured
// (RELIABILITY.md, the test bed). HVNET_L1_KVM_AMD=npt=1 brings nested
// paging back.
const DefaultKVMParams = "npt=0"

// File is a host file to put into the L1's file system.
type File struct {
	Src string // host path
	Dst string // absolute path inside L1
}

// Config describes one run of the nested test host.
type Config struct {
	Kernel  string   // bzImage for L1 (the guest kernel serves)
	Initrd  string   // base initramfs (uncompressed newc cpio, with the agent)
	Modules []string // modules for the agent to load (default "@kvm", "@net", "@vlan")
	// KVMParams are kvm_amd module parameters for the L1 ("vgif=0 ...";
	// default from HVNET_L1_KVM_AMD, else DefaultKVMParams): the module
	// is loaded again with them before Script runs.
	KVMParams string
	Files     []File   // extra files
	Script    string   // the L1 job, run by the agent with the u-root shell
	Env       []string // KEY=VALUE lines exported before Script
	MemMiB    int      // L1 RAM (default 4096)
	CPUs      int      // L1 vCPUs (default 2)
	Timeout   time.Duration
	// SilenceLimit, when set, kills the test host as frozen (ErrFrozen)
	// once its console has been silent that long, before its Timeout: for
	// a job that talks steadily, a frozen host then costs minutes less.
	SilenceLimit time.Duration
	// LockupLimit, when set, kills the test host as frozen (ErrFrozen)
	// once its own kernel reports a CPU stuck in a soft lockup for that
	// long: such a host goes on printing the report every half minute,
	// so its console is never silent, and it does not recover (seen:
	// khugepaged stuck for 7 minutes until the time limit).
	LockupLimit time.Duration

	Console io.Writer // the L1 console, line by line (default: discarded)
	// Steps shows the start as steps a person can follow, with their
	// elapsed time: writing the initramfs, booting (until the agent's
	// first line), running the job (nil: none). On a terminal the
	// console goes through its Wrap, so the spinner stays below it.
	Steps   *progress.Reporter
	QEMU    string // default qemu-system-x86_64 from PATH
	Log     hclog.Logger
	WorkDir string // for the combined initrd (default os.TempDir())
}

// Result is the outcome of the L1 job.
type Result struct {
	Status int     // the script's exit status
	Error  string  // the agent's error, if any
	Uptime float64 // L1 uptime at the end, seconds
}

// DefaultLockupLimit is the Config.LockupLimit the test harnesses use: a
// CPU of the test host stuck that long has not come back in any run seen.
const DefaultLockupLimit = 60 * time.Second

// ErrNoResult means L1 ended without the agent's result line.
var ErrNoResult = errors.New("nested: the test host ended without a result line")

// ErrFrozen means the test host was killed at its time limit after its
// console had been silent for FrozenAfter or longer, or once it had been
// silent for Config.SilenceLimit: the emulated machine
// stood still (seen under load: no L2 vCPU came back from KVM_RUN and the
// L1's own timers stopped firing), rather than a test running long.
var ErrFrozen = errors.New("nested: the test host froze")

// FrozenAfter is the console silence before a kill at the time limit that
// makes it ErrFrozen (a variable for tests).
var FrozenAfter = 5 * time.Minute

// Run boots the nested test host, runs cfg.Script in it and returns its
// result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, errors.New("nested: Kernel and Initrd are required")
	}
	qemu := cfg.QEMU
	if qemu == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return nil, fmt.Errorf("nested: qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
		}
		qemu = p
	}
	if cfg.MemMiB == 0 {
		cfg.MemMiB = 4096
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Modules == nil {
		cfg.Modules = []string{"@kvm", "@net", "@vlan"}
	}
	if cfg.KVMParams == "" {
		cfg.KVMParams = os.Getenv(EnvKVMParams)
	}
	if cfg.KVMParams == "" {
		cfg.KVMParams = DefaultKVMParams
	}
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	st := cfg.Steps.Start("nested: writing the test host's initramfs (%d files)", len(cfg.Files))
	initrd, err := combinedInitrd(cfg)
	if err != nil {
		st.Fail(err)
		return nil, err
	}
	st.Done()
	defer os.Remove(initrd)

	cl := agentcfg.Cmdline{Modules: cfg.Modules, ScriptFile: scriptPath}
	if err := cl.Validate(); err != nil {
		return nil, fmt.Errorf("nested: %w", err)
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	args := []string{
		"-accel", "tcg,thread=multi", "-cpu", "EPYC,+svm",
		"-smp", fmt.Sprint(cfg.CPUs), "-m", fmt.Sprint(cfg.MemMiB),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-nic", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", cfg.Kernel, "-initrd", initrd,
		"-append", "console=ttyS0 loglevel=1 panic=-1 " + cl.String(),
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("nested: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	log.Info("starting nested test host", "qemu", qemu, "mem_mib", cfg.MemMiB, "cpus", cfg.CPUs)
	start := time.Now()
	// step is the boot, then the job once the agent says it started;
	// only the console's goroutine changes it until wg.Wait.
	step := cfg.Steps.Start("nested: booting the test host (QEMU TCG, %d vCPUs, %d MiB)", cfg.CPUs, cfg.MemMiB)
	onAgent := func() {
		step.Done()
		step = cfg.Steps.Start("nested: running the job in the test host")
	}
	if err := cmd.Start(); err != nil {
		step.Fail(err)
		return nil, fmt.Errorf("nested: start %s: %w", qemu, err)
	}
	var res *Result
	var resErr error
	var lastLine atomic.Int64 // unix nanoseconds of the console's last line
	lastLine.Store(time.Now().UnixNano())
	var silenced atomic.Int64         // the silence that killed it, if SilenceLimit did
	var lockup atomic.Pointer[string] // the report that killed it, if LockupLimit did
	onLockup := func(report string, stuck time.Duration) {
		if cfg.LockupLimit > 0 && stuck >= cfg.LockupLimit && lockup.CompareAndSwap(nil, &report) {
			_ = cmd.Process.Kill()
		}
	}
	watchDone := make(chan struct{})
	if cfg.SilenceLimit > 0 {
		go func() {
			tick := time.NewTicker(min(cfg.SilenceLimit/4, time.Second))
			defer tick.Stop()
			for {
				select {
				case <-watchDone:
					return
				case <-tick.C:
					if silent := time.Since(time.Unix(0, lastLine.Load())); silent >= cfg.SilenceLimit {
						silenced.Store(int64(silent))
						_ = cmd.Process.Kill()
						return
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, resErr = scanConsole(out, cfg.Steps.Wrap(cfg.Console), &lastLine, onLockup, onAgent)
	}()
	wg.Wait()
	waitErr := cmd.Wait()
	close(watchDone)
	switch {
	case res != nil && res.Status == 0:
		step.Done()
	case res != nil:
		step.Fail(fmt.Errorf("status %d", res.Status))
	case waitErr != nil:
		step.Fail(waitErr)
	default:
		step.Fail(errors.New("no result"))
	}
	log.Info("nested test host ended", "elapsed", time.Since(start).Round(time.Millisecond), "wait", waitErr)
	if silent := time.Duration(silenced.Load()); silent > 0 {
		return res, fmt.Errorf("%w: killed, its console silent for %v (the caller's limit %v)",
			ErrFrozen, silent.Round(time.Second), cfg.SilenceLimit)
	}
	if report := lockup.Load(); report != nil {
		return res, fmt.Errorf("%w: killed, its kernel reported %q (the caller's limit %v)",
			ErrFrozen, *report, cfg.LockupLimit)
	}
	if ctx.Err() != nil {
		if silent := time.Since(time.Unix(0, lastLine.Load())); silent >= FrozenAfter {
			return res, fmt.Errorf("%w: killed at its time limit, its console silent for %v (%v)",
				ErrFrozen, silent.Round(time.Second), ctx.Err())
		}
		return res, fmt.Errorf("nested: test host killed: %w", ctx.Err())
	}
	if resErr != nil {
		return nil, resErr
	}
	// isa-debug-exit makes QEMU exit with (status<<1)|1: the agent's
	// status, whatever result lines the console carried (a guest's own,
	// echoed inside the test host, looks the same).
	var exit *exec.ExitError
	if errors.As(waitErr, &exit) && exit.ExitCode()&1 == 1 {
		st := exit.ExitCode() >> 1
		if res == nil {
			res = &Result{Status: st, Error: "the test host's result line was lost"}
		} else if res.Status != st {
			log.Warn("result line and exit port disagree; using the exit port", "line", res.Status, "port", st)
			res.Status = st
		}
	}
	if res == nil {
		return nil, fmt.Errorf("%w (qemu: %v)", ErrNoResult, waitErr)
	}
	return res, nil
}

// softLockup matches the test host's own kernel reporting a soft lockup,
// at the start of a console line ("[  121.407783] watchdog: BUG: soft
// lockup - CPU#1 stuck for 45s! [khugepaged:36]"); a guest's console,
// copied by a test inside, comes with the test's prefix and does not match.
var softLockup = regexp.MustCompile(`^\[\s*\d+\.\d+\] watchdog: BUG: (soft lockup - CPU#\d+ stuck for (\d+)s! .*)$`)

// scanConsole copies the console line by line and picks up the result;
// onLockup hears of each soft lockup the test host's kernel reports,
// onAgent of the agent's first line (the test host is up).
func scanConsole(r io.Reader, console io.Writer, lastLine *atomic.Int64, onLockup func(report string, stuck time.Duration), onAgent func()) (*Result, error) {
	var res *Result
	agentUp := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lastLine.Store(time.Now().UnixNano())
		line := strings.TrimRight(sc.Text(), "\r")
		if console != nil {
			fmt.Fprintln(console, line)
		}
		if !agentUp && strings.Contains(line, agentcfg.StartPrefix) {
			agentUp = true
			onAgent()
		}
		if m := softLockup.FindStringSubmatch(line); m != nil {
			if secs, err := strconv.Atoi(m[2]); err == nil {
				onLockup(m[1], time.Duration(secs)*time.Second)
			}
		}
		if strings.HasPrefix(line, agentcfg.ResultPrefix) {
			r, err := agentcfg.ParseResult(line)
			if err != nil {
				return nil, fmt.Errorf("nested: bad result line %q: %w", line, err)
			}
			res = &Result{Status: r.Status, Error: r.Error, Uptime: r.Uptime}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		return res, fmt.Errorf("nested: reading console: %w", err)
	}
	return res, nil
}

const scriptPath = "/hvnet/job.sh"

// combinedInitrd writes the base initramfs followed by an overlay archive
// with cfg.Files and the job script. Linux unpacks concatenated newc
// archives in order (Documentation/driver-api/early-userspace/buffer-format.rst).
func combinedInitrd(cfg Config) (string, error) {
	f, err := os.CreateTemp(cfg.WorkDir, "hvnet-l1-*.cpio")
	if err != nil {
		return "", fmt.Errorf("nested: %w", err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("nested: build L1 initrd: %w", err)
	}
	base, err := os.Open(cfg.Initrd)
	if err != nil {
		return fail(err)
	}
	n, err := io.Copy(f, base)
	base.Close()
	if err != nil {
		return fail(err)
	}
	if pad := (4 - n%4) % 4; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			return fail(err)
		}
	}
	w := cpio.Newc.Writer(f)
	var recs []cpio.Record
	rec := cpio.NewRecorder()
	seen := map[string]bool{}
	for _, file := range cfg.Files {
		if !filepath.IsAbs(file.Dst) {
			return fail(fmt.Errorf("destination %q is not absolute", file.Dst))
		}
		if seen[file.Dst] {
			continue
		}
		seen[file.Dst] = true
		// Symbolic links (a library's soname, QEMU's firmware) are
		// stored as the files they point to, at the link's path.
		src, err := filepath.EvalSymlinks(file.Src)
		if err != nil {
			return fail(fmt.Errorf("file %s: %w", file.Src, err))
		}
		r, err := rec.GetRecord(src)
		if err != nil {
			return fail(fmt.Errorf("file %s: %w", file.Src, err))
		}
		r.Name = cpio.Normalize(file.Dst)
		recs = append(recs, r)
	}
	var script strings.Builder
	// Let shmem (the VMM's memfd guest RAM) use transparent huge pages, as
	// anonymous memory does: 2 MiB nested page mappings instead of 4 KiB
	// ones make L2 boots markedly faster under emulation.
	// HVNET_L1_THP=never turns transparent huge pages off altogether
	// (no page collapsing or compaction moving guest memory under the
	// emulated nested paging): a test-bed experiment.
	if os.Getenv(EnvL1THP) == "never" {
		script.WriteString("for f in enabled defrag shmem_enabled; do echo never > /sys/kernel/mm/transparent_hugepage/$f; done\n")
		script.WriteString("echo 0 > /sys/kernel/mm/transparent_hugepage/khugepaged/defrag\n")
	} else {
		script.WriteString("echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled\n")
	}
	for _, e := range cfg.Env {
		fmt.Fprintf(&script, "export %s\n", shellQuoteEnv(e))
	}
	if cfg.KVMParams != "" {
		fmt.Fprintf(&script, "rmmod kvm_amd && insmod /lib/modules/$(uname -r)/kernel/arch/x86/kvm/kvm-amd.ko %s || exit 3\n", cfg.KVMParams)
		script.WriteString("echo L1 kvm_amd: $(for p in /sys/module/kvm_amd/parameters/*; do echo -n \"${p##*/}=$(cat $p) \"; done)\n")
	}
	script.WriteString(cfg.Script)
	script.WriteString("\n")
	recs = append(recs, cpio.StaticFile(cpio.Normalize(scriptPath), script.String(), 0o755))
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return fail(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("nested: %w", err)
	}
	return name, nil
}

// shellQuoteEnv quotes the value of KEY=VALUE for a POSIX shell.
func shellQuoteEnv(kv string) string {
	k, v, _ := strings.Cut(kv, "=")
	return k + "='" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
