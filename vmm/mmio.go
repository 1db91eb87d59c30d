package vmm

import "sync"

// MMIODevice is a device in guest-physical address space (a PCI BAR). Its
// range may move (the guest reprograms BARs), so the bus asks for it on
// every access; accesses are 1 to 8 bytes at off = address - base.
type MMIODevice interface {
	// MMIORange returns the decoded range; ok is false while the device
	// decodes nothing (memory space disabled, BAR unassigned).
	MMIORange() (base, size uint64, ok bool)
	MMIORead(off uint64, data []byte)
	MMIOWrite(off uint64, data []byte)
}

// mmioBus dispatches KVM_EXIT_MMIO. It holds few devices (the PCI BARs):
// a linear scan is cheaper than keeping an index in step with BAR moves.
// Queue notifications never come here: they are ioeventfds in KVM.
type mmioBus struct {
	mu   sync.Mutex
	devs []MMIODevice
}

func (b *mmioBus) register(d MMIODevice) {
	b.mu.Lock()
	b.devs = append(b.devs, d)
	b.mu.Unlock()
}

// access performs one access. Addresses nobody decodes read as all ones
// and ignore writes (a master abort).
func (b *mmioBus) access(addr uint64, data []byte, write bool) {
	b.mu.Lock()
	var dev MMIODevice
	var off uint64
	for _, d := range b.devs {
		base, size, ok := d.MMIORange()
		if ok && addr >= base && addr-base < size && uint64(len(data)) <= size-(addr-base) {
			dev, off = d, addr-base
			break
		}
	}
	b.mu.Unlock()
	if dev == nil {
		if !write {
			for i := range data {
				data[i] = 0xff
			}
		}
		return
	}
	if write {
		dev.MMIOWrite(off, data)
	} else {
		dev.MMIORead(off, data)
	}
}
