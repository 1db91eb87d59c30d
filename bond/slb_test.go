package bond

import (
	"testing"
)

// Rebalancing moves buckets from the busiest member to the least busy
// one, the largest that fits in half the gap first, until the gap is
// within a tenth of the busiest's load; it moves nothing when the load
// is even, and it starts measuring again each time.
func TestRebalance(t *testing.T) {
	p := &Port{}
	tx := []int32{0, 1}
	p.txList.Store(&tx)
	// Everything on member 0: 8 buckets, loads 100..800.
	for b := range slbBuckets {
		p.slb[b].Store(0)
	}
	for i := range 8 {
		p.slbLoad[i].Store(uint64(100 * (i + 1)))
	}
	p.rebalance()
	var per [2]uint64
	for i := range 8 {
		per[p.slb[i].Load()] += uint64(100 * (i + 1))
	}
	if hi, lo := max(per[0], per[1]), min(per[0], per[1]); hi-lo > hi/10 || p.st.rebalanced.Load() == 0 {
		t.Errorf("after rebalancing: member loads %v (moved %d buckets)", per, p.st.rebalanced.Load())
	}
	for b := range slbBuckets {
		if p.slbLoad[b].Load() != 0 {
			t.Fatalf("bucket %d's load not reset", b)
		}
	}
	// Even load: nothing moves.
	moved := p.st.rebalanced.Load()
	for i := range 8 {
		p.slbLoad[i].Store(100)
	}
	for i := range 8 {
		p.slb[i].Store(int32(i % 2))
	}
	p.rebalance()
	if p.st.rebalanced.Load() != moved {
		t.Errorf("an even load moved %d buckets", p.st.rebalanced.Load()-moved)
	}
	// One member: nothing to do.
	one := []int32{1}
	p.txList.Store(&one)
	p.slbLoad[0].Store(1000)
	p.rebalance()
	if p.st.rebalanced.Load() != moved {
		t.Error("rebalanced with one member")
	}
}
