package vmm

import (
	"math/big"
	"testing"
	"time"
)

// The PM timer counts at 3.579545 MHz from the machine's start and wraps
// at 2^32, whatever the uptime: past 86 minutes the 64-bit product of
// nanoseconds and the rate overflowed and the timer jumped (found by an
// audit), which Linux's clocksource watchdog would notice.
func TestPMTicksLongUptime(t *testing.T) {
	want := func(d time.Duration) uint32 {
		n := new(big.Int).Mul(big.NewInt(int64(d)), big.NewInt(pmTimerHz))
		n.Div(n, big.NewInt(int64(time.Second)))
		return uint32(n.Uint64())
	}
	for _, d := range []time.Duration{0, time.Second, 85 * time.Minute, 86 * time.Minute, 87 * time.Minute,
		100 * time.Hour, 365 * 24 * time.Hour, 1<<63 - 1} {
		if got := pmTicks(d); got != want(d) {
			t.Errorf("pmTicks(%v) = %d, want %d", d, got, want(d))
		}
	}
	// Steady across the old overflow: a millisecond is 3579 or 3580 ticks.
	for d := 85 * time.Minute; d < 88*time.Minute; d += 7 * time.Second {
		if step := pmTicks(d+time.Millisecond) - pmTicks(d); step < 3579 || step > 3580 {
			t.Fatalf("at %v a millisecond is %d ticks", d, step)
		}
	}
}
