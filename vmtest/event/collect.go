package event

import (
	"bytes"
	"sync"
)

// Collector is the host's end: an io.Writer for the guest's COM2 output
// (vmm.Config.Events) that splits it into lines and parses each. It keeps
// the events (up to MaxKept of them and MaxKeptBytes of their data; the
// guest decides how many it sends), counts the lines that are not events,
// and calls On (when set) as each arrives, kept or not. A line longer
// than MaxLine is dropped and counted.
type Collector struct {
	On func(Event) // called in arrival order, from the VMM's vCPU thread: keep it short

	mu      sync.Mutex
	part    []byte
	over    bool // the current line passed MaxLine: drop up to its newline
	events  []Event
	kept    int // bytes of data in events
	bad     int
	dropped int // events not kept: past MaxKept or MaxKeptBytes
}

// Bounds of what a Collector keeps.
const (
	MaxKept      = 100000
	MaxKeptBytes = 64 << 20
)

// Write implements io.Writer.
func (c *Collector) Write(p []byte) (int, error) {
	n := len(p)
	var got []Event
	c.mu.Lock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.add(p)
			break
		}
		c.add(p[:i])
		p = p[i+1:]
		if c.over {
			c.bad++
		} else if len(bytes.TrimSpace(c.part)) > 0 {
			if e, err := Parse(c.part); err == nil {
				if len(c.events) < MaxKept && c.kept+len(e.Data) <= MaxKeptBytes {
					c.events = append(c.events, e)
					c.kept += len(e.Data)
				} else {
					c.dropped++
				}
				got = append(got, e)
			} else {
				c.bad++
			}
		}
		c.part, c.over = c.part[:0], false
	}
	on := c.On
	c.mu.Unlock()
	if on != nil {
		for _, e := range got {
			on(e)
		}
	}
	return n, nil
}

func (c *Collector) add(b []byte) {
	if c.over {
		return
	}
	if len(c.part)+len(b) > MaxLine {
		c.over, c.part = true, c.part[:0]
		return
	}
	c.part = append(c.part, b...)
}

// Events returns the events so far, in arrival order.
func (c *Collector) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// Dropped is the number of events not kept (past MaxKept or
// MaxKeptBytes); On saw them.
func (c *Collector) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Malformed is the number of lines that were not events.
func (c *Collector) Malformed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}
