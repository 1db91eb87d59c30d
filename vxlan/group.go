package vxlan

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// groups is txBatch.group's preallocated state: a hash table of the
// batch's (VTEP, flow) pairs and room to reorder the batch's messages.
type groups struct {
	tab    []int16 // (VTEP, flow) hash → group + 1; 0: empty
	of     []int16 // per message: its group
	gdst   []vtepAddr
	gfh    []uint64
	gcount []int16
	gnext  []int16 // per group: the next free place in the new order

	msgs  []unix.Mmsghdr
	frame []int32
	dst   []vtepAddr
	fh    []uint64
	ilen  []int32
	slot  []int32
}

func newGroups(n int) groups {
	t := 1
	for t < 2*n {
		t <<= 1
	}
	return groups{tab: make([]int16, t), of: make([]int16, n), gdst: make([]vtepAddr, n), gfh: make([]uint64, n),
		gcount: make([]int16, n), gnext: make([]int16, n), msgs: make([]unix.Mmsghdr, n), frame: make([]int32, n),
		dst: make([]vtepAddr, n), fh: make([]uint64, n), ilen: make([]int32, n), slot: make([]int32, n)}
}

// group reorders the batch's first m messages so that those of one inner
// flow to one VTEP are next to each other, in the order they came, and
// the groups in the order of their first message: each group can then
// leave as UDP GSO super-packets. Messages of different flows may
// overtake each other, as they may on the underlay's paths (which the
// flows' source ports choose); those of one flow never do.
func (b *txBatch) group(m int) {
	g := &b.grp
	if m < 3 {
		return // two messages are in order either way
	}
	clear(g.tab)
	mask := uint64(len(g.tab) - 1)
	ng := 0
	runs := 0 // places where the group changes
	for k := range m {
		d, f := b.dst[k], b.fh[k]
		i := (f ^ binary.LittleEndian.Uint64(d[8:])*0x9e3779b97f4a7c15) & mask
		for {
			e := g.tab[i]
			if e == 0 {
				g.tab[i] = int16(ng + 1)
				g.gdst[ng], g.gfh[ng], g.gcount[ng] = d, f, 0
				g.of[k] = int16(ng)
				ng++
				break
			}
			if g.gfh[e-1] == f && g.gdst[e-1] == d {
				g.of[k] = e - 1
				break
			}
			i = (i + 1) & mask
		}
		g.gcount[g.of[k]]++
		if k > 0 && g.of[k] != g.of[k-1] {
			runs++
		}
	}
	if runs == ng-1 {
		return // each group is together already
	}
	next := int16(0)
	for i := range ng {
		g.gnext[i] = next
		next += g.gcount[i]
	}
	for k := range m {
		to := g.gnext[g.of[k]]
		g.gnext[g.of[k]]++
		g.msgs[to], g.frame[to], g.dst[to], g.fh[to], g.ilen[to], g.slot[to] = b.msgs[k], b.frame[k], b.dst[k], b.fh[k], b.ilen[k], b.slot[k]
	}
	copy(b.msgs[:m], g.msgs[:m])
	copy(b.frame[:m], g.frame[:m])
	copy(b.dst[:m], g.dst[:m])
	copy(b.fh[:m], g.fh[:m])
	copy(b.ilen[:m], g.ilen[:m])
	copy(b.slot[:m], g.slot[:m])
}
