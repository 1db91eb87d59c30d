package main

import (
	"math"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// twoCores returns the first two cores of this process's affinity set
// (fewer if it has fewer).
func twoCores(t *testing.T) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cores []int
	for c := 0; c < 1024 && len(cores) < 2; c++ {
		if set.IsSet(c) {
			cores = append(cores, c)
		}
	}
	return cores
}

// The probe measures something a cache line's round trip can take (a few
// ns to a few µs, never zero) between two cores of this process's set,
// and refuses one core.
func TestCoreRoundTrip(t *testing.T) {
	cores := twoCores(t)
	if _, err := coreRoundTrip(0, 0); err == nil {
		t.Error("one core: no error")
	}
	if len(cores) < 2 || runtime.GOMAXPROCS(0) < 2 {
		t.Skipf("needs two cores, has %v (GOMAXPROCS %d)", cores, runtime.GOMAXPROCS(0))
	}
	d, err := coreRoundTrip(cores[0], cores[1])
	if err != nil {
		t.Fatal(err)
	}
	if d < time.Nanosecond || d > 20*time.Microsecond {
		t.Fatalf("round trip between cores %d and %d: %v", cores[0], cores[1], d)
	}
	t.Logf("round trip between cores %d and %d: %v", cores[0], cores[1], d)
}

// The probe's pinned threads outlive it: OVS's daemons are started with
// Pdeathsig, which kills a child when the thread that forked it ends, and
// any of the process's threads may have forked one. A child started from
// every thread the runtime has must survive the probe.
func TestCoreRoundTripKeepsThreads(t *testing.T) {
	cores := twoCores(t)
	if len(cores) < 2 || runtime.GOMAXPROCS(0) < 2 {
		t.Skipf("needs two cores, has %v (GOMAXPROCS %d)", cores, runtime.GOMAXPROCS(0))
	}
	// Eight goroutines hold eight threads at once, each forks a child,
	// then all let their threads go back to the runtime's idle pool,
	// where the probe's goroutines find them; the test's own thread
	// forks one too.
	type kid struct {
		cmd  *exec.Cmd
		done chan struct{}
	}
	var (
		mu   sync.Mutex
		kids []kid
		wg   sync.WaitGroup
	)
	start := func() error {
		c := exec.Command("sleep", "60")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return err
		}
		k := kid{c, make(chan struct{})}
		go func() { c.Wait(); close(k.done) }()
		mu.Lock()
		kids = append(kids, k)
		mu.Unlock()
		return nil
	}
	defer func() {
		for _, k := range kids {
			k.cmd.Process.Kill()
			<-k.done
		}
	}()
	hold := make(chan struct{})
	errc := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			err := start()
			wg.Done()
			<-hold
			errc <- err
		}()
	}
	wg.Wait()
	close(hold)
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	runtime.LockOSThread()
	err := start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := coreRoundTrip(cores[0], cores[1]); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for i, k := range kids {
		select {
		case <-k.done:
			t.Errorf("child %d of %d (pid %d) ended during the probe: %v", i+1, len(kids), k.cmd.Process.Pid, k.cmd.ProcessState)
		default:
		}
	}
}

func TestPlacement(t *testing.T) {
	ns := time.Nanosecond
	for _, tc := range []struct {
		p    placement
		want string
	}{
		{placement{60 * ns, 70 * ns, 0.04}, "near"},
		{placement{340 * ns, 360 * ns, 0.02}, "far"},
		{placement{60 * ns, 360 * ns, 0}, "moved"},
		{placement{340 * ns, 70 * ns, 0}, "moved"},
		{placement{0, 70 * ns, 0}, "-"},
		{placement{farRoundTrip, farRoundTrip, maxRateJump}, "near"},
		// Near before and after, but the rate jumped: moved and back.
		{placement{90 * ns, 100 * ns, 0.6}, "moved"},
		{placement{400 * ns, 420 * ns, maxRateJump + 0.01}, "moved"},
		{placement{400 * ns, 420 * ns, math.Inf(1)}, "moved"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}

// A run stands unless its cores moved, or it was in the other placement
// than the round's first steady run; an unprobed run (a failed probe)
// stands, there being nothing to measure again for.
func TestSettled(t *testing.T) {
	ns := time.Nanosecond
	near := placement{60 * ns, 70 * ns, 0.04}
	far := placement{340 * ns, 360 * ns, 0.02}
	moved := placement{60 * ns, 360 * ns, 0}
	jumped := placement{60 * ns, 70 * ns, 0.5}
	unknown := placement{0, 70 * ns, 0}
	for _, tc := range []struct {
		p    placement
		want string
		ok   bool
	}{
		{near, "", true}, {far, "", true}, {moved, "", false}, {jumped, "", false}, {unknown, "", true},
		{near, "near", true}, {far, "near", false}, {moved, "near", false}, {unknown, "near", true},
		{far, "far", true}, {near, "far", false}, {jumped, "far", false},
	} {
		if got := settled(tc.p, tc.want); got != tc.ok {
			t.Errorf("settled(%v %+v, want %q) = %v, want %v", tc.p, tc.p, tc.want, got, tc.ok)
		}
	}
}

// vhost/bench-ab.patch (the in-process A/B of vhost/BENCH_NOTES.md,
// session 20) still applies to the tree.
func TestBenchABPatchApplies(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	root, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	dir := strings.TrimSpace(string(root))
	out, err := exec.Command(git, "-C", dir, "apply", "--check", "vhost/bench-ab.patch").CombinedOutput()
	if err != nil {
		t.Fatalf("vhost/bench-ab.patch no longer applies: %v\n%s", err, out)
	}
}
