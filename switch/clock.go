package vswitch

import (
	"sync/atomic"
	"time"
)

// Clock gives the switch its time: nanoseconds, monotonic. Token buckets,
// FDB aging and pcap timestamps all read it; inject a ManualClock in tests.
type Clock interface {
	Now() int64
}

// RealClock is the system clock: wall time at process start plus the
// monotonic time elapsed since, in Unix nanoseconds. It never goes back.
type RealClock struct{}

var (
	clockStart     = time.Now()
	clockStartUnix = clockStart.UnixNano()
)

// Now implements Clock.
func (RealClock) Now() int64 { return clockStartUnix + int64(time.Since(clockStart)) }

// ManualClock is a Clock that moves only when told to. Safe for concurrent use.
type ManualClock struct{ ns atomic.Int64 }

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start int64) *ManualClock {
	c := &ManualClock{}
	c.ns.Store(start)
	return c
}

// Now implements Clock.
func (c *ManualClock) Now() int64 { return c.ns.Load() }

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set sets the clock to ns.
func (c *ManualClock) Set(ns int64) { c.ns.Store(ns) }

var (
	_ Clock = RealClock{}
	_ Clock = (*ManualClock)(nil)
)
