package vswitch

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Many ports forward at once while the control plane changes things under
// them; run with -race.
func TestConcurrentInputAndControl(t *testing.T) {
	ts := newTestSwitch(t)
	const n = 6
	for i := range n {
		c := access(fmt.Sprint("p", i), 1)
		if i%2 == 0 {
			c = trunk(c.Name, 1, 1, 2)
			c.Egress = RateLimit{Bytes: Bucket{Rate: 10_000_000, Burst: 100_000}}
		}
		ts.add(c, CapCsum)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h := ts.h[fmt.Sprint("p", i)]
			batch := make([]Frame, 32)
			for k := range batch {
				batch[k].Data = eth(mac(byte((i+k)%n)), mac(byte(i)), 0x0800, 60)
				if k%5 == 0 {
					batch[k].Data = eth(Broadcast, mac(byte(i)), 0x0800, 60)
				}
			}
			tf := tcpFrame(false, nil, 5000, 1000, 0x18)
			for {
				select {
				case <-stop:
					return
				default:
				}
				h.Input(batch)
				h.Input([]Frame{tf})
			}
		}(i)
	}
	for r := 0; r < 200; r++ {
		ts.advance(time.Millisecond)
		c := ts.h["p2"].Config()
		c.Egress.Bytes.Rate = int64(1_000_000 * (1 + r%5))
		c.MACLimit = r % 3
		if err := ts.sw.UpdatePort(c); err != nil {
			t.Fatal(err)
		}
		ts.sw.Poll(ts.clock.Now())
		ts.sw.Expire()
		_ = ts.sw.FDB()
		_ = ts.sw.Counters()
		if r == 100 {
			if err := ts.sw.RemovePort("p5"); err != nil {
				t.Fatal(err)
			}
		}
		if r%50 == 0 {
			ts.sw.Flush("", 0)
		}
	}
	close(stop)
	wg.Wait()
	for _, c := range ts.sw.Counters() {
		if c.Drops[DropMalformed] != 0 {
			t.Errorf("%s: malformed drops %d", c.Name, c.Drops[DropMalformed])
		}
	}
}
