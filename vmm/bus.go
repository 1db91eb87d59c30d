package vmm

import (
	"fmt"
	"sort"
	"sync"
)

// PIODevice is a device on the port-I/O bus. Reads fill data (1, 2 or 4
// bytes) for the port; off is the port minus the device's base.
type PIODevice interface {
	PIORead(off uint16, data []byte)
	PIOWrite(off uint16, data []byte)
}

type pioRange struct {
	base, size uint16
	dev        PIODevice
}

// pioBus dispatches port I/O exits to devices. Registration happens before
// the vCPUs start; lookups are read-only afterwards.
type pioBus struct {
	mu     sync.Mutex // serialises device access from several vCPUs
	ranges []pioRange
}

func (b *pioBus) register(base, size uint16, dev PIODevice) error {
	end := uint32(base) + uint32(size)
	for _, r := range b.ranges {
		if uint32(base) < uint32(r.base)+uint32(r.size) && uint32(r.base) < end {
			return fmt.Errorf("pio: ports %#x-%#x overlap %#x-%#x", base, end-1, r.base, uint32(r.base)+uint32(r.size)-1)
		}
	}
	b.ranges = append(b.ranges, pioRange{base, size, dev})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

func (b *pioBus) find(port uint16) (pioRange, bool) {
	i := sort.Search(len(b.ranges), func(i int) bool {
		r := b.ranges[i]
		return uint32(r.base)+uint32(r.size) > uint32(port)
	})
	if i < len(b.ranges) && b.ranges[i].base <= port {
		return b.ranges[i], true
	}
	return pioRange{}, false
}

// access performs one port access. Unclaimed ports read as all ones and
// ignore writes, like an ISA bus with nothing on it.
func (b *pioBus) access(port uint16, data []byte, write bool) {
	r, ok := b.find(port)
	if !ok {
		if !write {
			for i := range data {
				data[i] = 0xff
			}
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if write {
		r.dev.PIOWrite(port-r.base, data)
	} else {
		r.dev.PIORead(port-r.base, data)
	}
}
