package main

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// farRoundTrip is the cross-core round trip above which bench vhost calls
// the forwarder's and the generator's cores far apart. Measured on the
// shared 2-vCPU machines this benchmark runs on (vhost/BENCH_NOTES.md,
// sessions 20 and 21): 50-140 ns when the host runs the two vCPUs on cores
// that share a last-level cache, 320-470 ns when it runs them on
// different dies; the host moves them between the two every few seconds
// to minutes.
const farRoundTrip = 150 * time.Nanosecond

// maxRateJump is the most the rate received back may change between two
// slices of a run's window (the larger over the smaller, less one) for
// the run to count as in one placement: the host can move the two cores
// and back within a run, between the round trips measured before and
// after it, and the rate shows it (a far second costs hvnet 1.6-1.8x a
// near one at 64 B; within one placement its seconds stay within 10 %:
// vhost/BENCH_NOTES.md, session 21).
const maxRateJump = 0.15

// placement is what coreRoundTrip found before and after one run, and how
// much the run's rate changed between the slices of its window.
type placement struct {
	before, after time.Duration // 0: not measured
	jump          float64       // the rate's largest change between slices: hi/lo - 1
}

// far reports whether the run's two cores were far apart both before and
// after it and its rate held; near, whether they were near both times and
// its rate held. Any other run moved during the run and is neither.
func (p placement) far() bool {
	return p.before > farRoundTrip && p.after > farRoundTrip && p.jump <= maxRateJump
}
func (p placement) near() bool {
	return p.before > 0 && p.before <= farRoundTrip && p.after > 0 && p.after <= farRoundTrip && p.jump <= maxRateJump
}

func (p placement) String() string {
	switch {
	case p.before == 0 || p.after == 0:
		return "-"
	case p.far():
		return "far"
	case p.near():
		return "near"
	}
	return "moved"
}

// coreRoundTrip measures how long a cache line takes to go from core a to
// core b and back: two threads, one pinned to each core, take turns
// incrementing one shared counter, rounds times; the median of 5 such
// runs, per round trip. It needs both cores idle (run it between
// measurements) and at least two Ps (GOMAXPROCS), and gives up with an
// error after a second without progress (a core taken away).
func coreRoundTrip(a, b int) (time.Duration, error) {
	if a == b {
		return 0, errors.New("round trip: one core")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		return 0, errors.New("round trip: GOMAXPROCS below 2")
	}
	const rounds = 20000
	var runs [5]time.Duration
	for k := range runs {
		var line struct {
			_ [64]byte
			v atomic.Int64
			_ [64]byte
		}
		errc := make(chan error, 2)
		var t0 time.Time
		side := func(core int, first int64) {
			// The thread's affinity is put back and the thread
			// unlocked, not left to end with the goroutine: a child
			// started with Pdeathsig (OVS's daemons) is killed when the
			// thread that forked it ends, and that may be this one.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var old, set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				errc <- fmt.Errorf("round trip: affinity: %w", err)
				return
			}
			set.Set(core)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errc <- fmt.Errorf("round trip: pinning to core %d: %w", core, err)
				return
			}
			defer unix.SchedSetaffinity(0, &old)
			if first == 0 {
				t0 = time.Now()
			}
			deadline := time.Now().Add(time.Second)
			for i := first; i < 2*rounds; i += 2 {
				for spins := 0; line.v.Load() != i; spins++ {
					if spins&(1<<20-1) == 0 && time.Now().After(deadline) {
						line.v.Store(-1 << 62) // the other side gives up too
						errc <- fmt.Errorf("round trip: core %d: no progress in a second", core)
						return
					}
					if line.v.Load() < 0 {
						errc <- nil
						return
					}
				}
				line.v.Store(i + 1)
			}
			errc <- nil
		}
		go side(b, 1)
		go side(a, 0)
		for range 2 {
			if err := <-errc; err != nil {
				return 0, err
			}
		}
		runs[k] = time.Since(t0) / rounds
	}
	for i := 1; i < len(runs); i++ {
		for j := i; j > 0 && runs[j] < runs[j-1]; j-- {
			runs[j], runs[j-1] = runs[j-1], runs[j]
		}
	}
	return runs[len(runs)/2], nil
}
