// Package vmtest lets ordinary Go tests, in this module or in a user's
// own, boot Linux guests with hvnet's VMM and run the user's network
// software in them, on any host: where the host's KVM cannot boot Linux,
// Nest re-runs the calling test inside a nested test host (package nested)
// and reports its outcome as the test's own.
//
// What it offers a test:
//   - Images: hvnet's guest image (a Debian kernel; a u-root initramfs with
//     the guest agent, u-root's core commands and iperf3), built once and
//     cached. BuildImage adds the test's own Go commands, Go test
//     binaries, host programs (with their shared libraries) and files.
//   - RunGuest boots one guest; package hvnet/lab boots several on an hvnet
//     switch (addresses, VLANs and trunks, rate limits, ACLs, security
//     groups, extra ports: lab.UplinkAttach joins a veth into a network
//     namespace the test made with package hvnet/vmtest/netns).
//   - A structured channel from guest to host (package
//     hvnet/vmtest/event): JSON events on the guest's second serial port,
//     sent by the agent (readiness, test results), by scripts (`/init
//     event TYPE [JSON]`) and by the user's programs (event.Emit), and
//     returned with each guest's result, or seen live (lab.Config.Events;
//     event.Waiter waits for a guest's readiness or any event).
//   - Go tests in guests: `/init gotest [-cover] /tests/PKG.test [FLAG...]`
//     in a guest script runs a test binary of Image.Tests; ReportGoTests
//     turns each of its tests into a subtest of the host test, with its
//     output, and returns (or writes) its coverage profile.
//
// A complete test of a user's module (examples/udpecho in hvnet's
// repository is this example, with its go.mod):
//
//	// go.mod: require github.com/hvnet/hvnet v0.0.0 and, until it is
//	// published, replace github.com/hvnet/hvnet => /path/to/hvnet
//	var image = vmtest.Image{Commands: []string{"./cmd/echod"}, Tests: []string{"./echo"}}
//
//	func TestEcho(t *testing.T) {
//		if vmtest.Nest(t, vmtest.NestOptions{Images: []vmtest.Image{image}}) {
//			return // ran (and passed or failed) inside the nested test host
//		}
//		set := vmtest.BuildImage(t, image)
//		res, err := lab.Run(context.Background(), lab.Config{
//			Kernel: set.Kernel, Initrd: set.Initrd,
//			Guests: []lab.GuestConfig{
//				{Name: "srv", PVID: 10, Addr: netip.MustParsePrefix("10.0.0.1/24"),
//					Script: "echod -for 60s"},
//				{Name: "cli", PVID: 10, Addr: netip.MustParsePrefix("10.0.0.2/24"),
//					Script: "/init gotest /tests/echo.test -server 10.0.0.1:7"},
//			},
//		})
//		if err != nil || lab.Failed(res) {
//			t.Fatalf("guests: %v %+v", err, res)
//		}
//		vmtest.ReportGoTests(t, "cli", res[1].Events, "")
//	}
//
// Run it as root (KVM, and the nested test host's QEMU) with go test; the
// first run builds the images (about a minute, cached after that in
// $HVNET_CACHE or ~/.cache/hvnet).
//
// The images come from images.Build, once per test process, or from
// HVNET_KERNEL and HVNET_INITRD where set (as inside the nested host).
package vmtest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/nested"
)

// Environment variables that pass the images and the nesting level into
// the nested test host.
const (
	EnvKernel = "HVNET_KERNEL"
	EnvInitrd = "HVNET_INITRD"
	EnvInL1   = "HVNET_IN_L1"
)

var (
	imagesOnce sync.Once
	imagesSet  *images.Set
	imagesErr  error
)

// Images returns the guest images, building them on first use.
func Images(t testing.TB) *images.Set {
	t.Helper()
	imagesOnce.Do(func() {
		if k, i := os.Getenv(EnvKernel), os.Getenv(EnvInitrd); k != "" && i != "" {
			imagesSet = &images.Set{Kernel: k, Initrd: i}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		imagesSet, imagesErr = images.Build(ctx, images.Config{Progress: os.Stderr})
	})
	if imagesErr != nil {
		t.Fatalf("building guest images: %v", imagesErr)
	}
	return imagesSet
}

// InL1 reports whether this process runs inside the nested test host.
func InL1() bool { return os.Getenv(EnvInL1) == "1" }

// NestOptions adjust the nested test host for one test.
type NestOptions struct {
	MemMiB  int           // L1 RAM (default 4096)
	CPUs    int           // L1 vCPUs (default 2)
	Files   []nested.File // extra files
	Timeout time.Duration // per run of the test host
	// Attempts is how many test hosts a test may take in all when
	// they die under it or its guests triple-fault (default 5).
	Attempts int
	// Silence counts a test host whose console has been silent that
	// long as frozen (nested.Config.SilenceLimit; default 4 minutes,
	// negative for none): a frozen host is given up, and the test run
	// again, in minutes rather than at its Timeout. Tests run with -v
	// inside and their guests' consoles are copied to the log, so a
	// healthy host is rarely silent for more than seconds.
	Silence time.Duration
	// Images are the test's own guest images (BuildImage): Nest builds
	// them here and carries them in, where BuildImage finds them.
	Images []Image
	// Lockup counts a test host whose own kernel reports a CPU stuck in
	// a soft lockup that long as frozen (nested.Config.LockupLimit;
	// default 60 s, negative for none).
	Lockup time.Duration
}

// Nest runs the calling top-level test inside the nested test host when the
// host needs one (see nested.Decide), failing the test if it fails there.
// It returns true when it did so; the caller must then return at once.
func Nest(t *testing.T, opts ...NestOptions) bool {
	t.Helper()
	if InL1() {
		return false
	}
	need, reason, err := nested.Decide("")
	if err != nil {
		t.Fatal(err)
	}
	if !need {
		return false
	}
	var o NestOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Minute
	}
	switch {
	case o.Silence == 0:
		o.Silence = 4 * time.Minute
	case o.Silence < 0:
		o.Silence = 0
	}
	switch {
	case o.Lockup == 0:
		o.Lockup = nested.DefaultLockupLimit
	case o.Lockup < 0:
		o.Lockup = 0
	}
	set := Images(t)
	bin := testBinary(t)
	name := strings.SplitN(t.Name(), "/", 2)[0]
	unlock := lockNested(t)
	defer unlock()
	t.Logf("running %s inside the nested test host (%s)", name, reason)
	files := append([]nested.File{
		{Src: bin, Dst: "/hvnet/test"},
		{Src: set.Kernel, Dst: "/hvnet/images/vmlinuz"},
		{Src: set.Initrd, Dst: "/hvnet/images/initrd"},
	}, o.Files...)
	var imageEnv []string
	for _, img := range o.Images {
		key, err := img.key()
		if err != nil {
			t.Fatalf("vmtest: image: %v", err)
		}
		s := BuildImage(t, img)
		dst := "/hvnet/images/vmtest-" + key
		files = append(files, nested.File{Src: s.Initrd, Dst: dst})
		imageEnv = append(imageEnv, EnvImagePrefix+key+"="+dst)
	}
	script := fmt.Sprintf("cd /tmp\n/hvnet/test -test.run '^%s$' -test.v -test.count 1 -test.timeout %s\n",
		regexp.QuoteMeta(name), o.Timeout)
	maxAttempts := o.Attempts
	if maxAttempts <= 0 {
		maxAttempts = 5
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(maxAttempts)*(o.Timeout+2*time.Minute))
	defer cancel()
	cfg := nested.Config{
		Timeout: o.Timeout + 2*time.Minute,
		Kernel:  set.Kernel, Initrd: set.Initrd, Files: files, Script: script,
		Env: append(append(forwardedEnv(), imageEnv...), EnvInL1+"=1", EnvKernel+"=/hvnet/images/vmlinuz",
			EnvInitrd+"=/hvnet/images/initrd", nested.EnvMode+"=never"),
		MemMiB: o.MemMiB, CPUs: o.CPUs, SilenceLimit: o.Silence, LockupLimit: o.Lockup,
	}
	var res *nested.Result
	var con *logWriter
	for attempt := 1; ; attempt++ {
		con = &logWriter{t: t, prefix: "L1| ", test: name}
		con.lines.Line = con.line
		cfg.Console = con
		res, err = nested.Run(ctx, cfg)
		// The test host itself can die under emulation (nested SVM in
		// TCG: a kernel panic in the L1, no result). That is the test
		// bed failing, not the test: try again (maxAttempts in all), and
		// say so.
		// (A panic, or a silent end: QEMU exits at the L1's own triple
		// fault, -no-reboot.) A test that fails inside still reports.
		// It can also freeze outright (nested.ErrFrozen: killed at its
		// time limit after minutes of silence); a test that hangs for
		// real hangs every time.
		if (errors.Is(err, nested.ErrNoResult) || errors.Is(err, nested.ErrFrozen)) && attempt < maxAttempts && ctx.Err() == nil {
			t.Logf("the nested test host crashed or froze (%v, kernel panic seen: %v); running %s in a fresh one", err, con.sawPanic(), name)
			continue
		}
		// Under concurrent load the emulated SVM also makes guests
		// (QEMU's as well as hvnet's: see TestSMPStress) end in a
		// triple fault at random points of their boot. A failure that
		// came with one is retried in a fresh test host; a real failure
		// fails every time.
		if err == nil && res.Status != 0 && con.sawTripleFault() && attempt < maxAttempts && ctx.Err() == nil {
			t.Logf("a guest triple-faulted in the nested test host (emulated SVM); running %s once more in a fresh one", name)
			continue
		}
		// Or a guest's CPU spins for minutes with interrupts on (a soft
		// lockup, as one waiting for an IPI that the emulation lost
		// would), and the test fails waiting for it: the same rule.
		if err == nil && res.Status != 0 && con.sawLockup() && attempt < maxAttempts && ctx.Err() == nil {
			t.Logf("a kernel in the nested test host reported a soft lockup (emulated SVM); running %s once more in a fresh one", name)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("nested test host: %v", err)
	}
	// The subtests that ran in there become this test's, with their
	// outcomes (their output is in the log above).
	for _, st := range con.subtests() {
		t.Run(st.name, func(t *testing.T) {
			switch st.result {
			case "FAIL":
				t.Error("failed inside the nested test host (its output is in the parent's log)")
			case "SKIP":
				t.SkipNow()
			}
		})
	}
	if res.Status != 0 {
		t.Fatalf("%s failed inside the nested test host: status %d %s", name, res.Status, res.Error)
	}
	return true
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// testBinary returns a statically linked build of the running test binary:
// the binary itself when it is static, else a CGO_ENABLED=0 rebuild of the
// package under test (go test runs tests in the package's directory). A
// race-instrumented binary needs libc, which the guest image lacks.
func testBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		self, err := os.Executable()
		if err == nil && isStatic(self) {
			binPath = self
			return
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		dir, err := os.MkdirTemp("", "hvnet-vmtest-")
		if err != nil {
			binErr = err
			return
		}
		out := filepath.Join(dir, "pkg.test")
		cmd := exec.Command(gobin, "test", "-c", "-o", out, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("go test -c (static, for the nested test host): %v\n%s", err, stderr.String())
			return
		}
		binPath = out
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// isStatic reports whether an ELF executable has no program interpreter.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// logWriter turns console lines into test log lines.
type logWriter struct {
	t        testing.TB
	prefix   string
	test     string    // the test run in the nested host: its subtests' result lines are kept
	subs     []subtest // guarded by mu
	lines    lines.Splitter
	mu       sync.Mutex // guards panicked, triple and lockup
	panicked bool
	triple   bool
	lockup   bool
}

// sawLockup reports a soft lockup report on the console, the test
// host's own or a guest's.
func (w *logWriter) sawLockup() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lockup
}

// sawTripleFault reports a guest that ended in a triple fault (the VMM's
// GuestFaultError text) on the console.
func (w *logWriter) sawTripleFault() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.triple
}

// sawPanic reports a kernel panic on the console.
func (w *logWriter) sawPanic() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.panicked
}

func (w *logWriter) Write(p []byte) (int, error) { return w.lines.Write(p) }

func (w *logWriter) line(line string) error {
	w.mu.Lock()
	if strings.HasPrefix(line, "Kernel panic") || strings.Contains(line, "] Kernel panic") {
		w.panicked = true
	}
	if strings.Contains(line, "shutdown (triple fault)") {
		w.triple = true
	}
	if strings.Contains(line, "watchdog: BUG: soft lockup") {
		w.lockup = true
	}
	if w.test != "" {
		if m := subtestLine.FindStringSubmatch(line); m != nil {
			if sub, ok := strings.CutPrefix(m[2], w.test+"/"); ok {
				w.subs = append(w.subs, subtest{name: sub, result: m[1]})
			}
		}
	}
	w.mu.Unlock()
	w.t.Log(w.prefix + line)
	return nil
}

// subtest is a subtest's outcome as the test binary inside the nested
// host printed it.
type subtest struct{ name, result string }

// subtestLine is go test -v's result line of a (sub)test.
var subtestLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(`)

// subtests returns the subtests' outcomes, in the order they ended.
func (w *logWriter) subtests() []subtest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]subtest(nil), w.subs...)
}

// Ensure the agent's parser stays the one both sides use.
var _ = agentcfg.ResultPrefix

// forwardedEnv returns this process's HVNET_* settings that mean the same
// inside the test host (durations, seeds, benchmark switches), so a test
// run there sees them: everything but the paths and modes that vmtest
// sets itself and the image cache, which is a path on this host.
func forwardedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case !strings.HasPrefix(k, "HVNET_"):
		case k == EnvInL1, k == EnvKernel, k == EnvInitrd, k == nested.EnvMode, k == "HVNET_CACHE",
			strings.HasPrefix(k, EnvImagePrefix):
		default:
			env = append(env, kv)
		}
	}
	return env
}

// NestedLock is the file that serialises test hosts: go test runs packages
// in parallel, and two emulated hosts on a small machine make each other
// slow, and the emulation less reliable (RELIABILITY.md).
var NestedLock = filepath.Join(os.TempDir(), "hvnet-nested.lock")

// lockNested waits for the test hosts of other test processes to end.
func lockNested(t *testing.T) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(NestedLock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("nested test host lock: %v", err)
	}
	start := time.Now()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("nested test host lock %s: %v", NestedLock, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("waited %v for another test host to end (%s)", d.Round(time.Second), NestedLock)
	}
	return func() { f.Close() }
}
