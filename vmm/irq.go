package vmm

import (
	"fmt"
	"sort"
	"sync"
)

// platform is what a PCI device needs from the machine for its
// notifications: ioeventfds for queue kicks and MSI routes with irqfds for
// its interrupts. The Machine implements it with KVM (kvmPlatform); tests
// use a fake.
type platform interface {
	// IOEvent assigns (or deassigns) fd to guest writes of length bytes
	// at MMIO address addr (KVM_IOEVENTFD).
	IOEvent(fd int, addr uint64, length uint32, assign bool) error
	// AllocGSI reserves a GSI for an MSI route.
	AllocGSI() (uint32, error)
	// SetMSI points gsi at the MSI message (addr, data) (KVM GSI routing).
	SetMSI(gsi uint32, addr uint64, data uint32) error
	// IRQFD makes a write to fd inject gsi (KVM_IRQFD).
	IRQFD(fd int, gsi uint32) error
}

// KVM GSI routing (include/uapi/linux/kvm.h, struct kvm_irq_routing and
// kvm_irq_routing_entry: gsi, type, flags, pad, then a 32-byte union).
const (
	routingEntrySize   = 48
	routingTypeIRQChip = 1
	routingTypeMSI     = 2
	irqchipPICMaster   = 0
	irqchipPICSlave    = 1
	irqchipIOAPIC      = 2
	ioapicPins         = 24
	firstMSIGSI        = ioapicPins // GSIs above the IOAPIC's are free for MSI
	maxGSI             = 1024
)

type msiMsg struct {
	addr uint64
	data uint32
}

// kvmPlatform implements platform on a VM. KVM_SET_GSI_ROUTING replaces the
// whole table, so it keeps every MSI route and re-sends them with the
// default PIC/IOAPIC entries that KVM_CREATE_IRQCHIP had installed.
type kvmPlatform struct {
	vm      *VM
	mu      sync.Mutex
	nextGSI uint32
	msi     map[uint32]msiMsg
}

var _ platform = (*kvmPlatform)(nil)

func newKVMPlatform(vm *VM) *kvmPlatform {
	return &kvmPlatform{vm: vm, nextGSI: firstMSIGSI, msi: map[uint32]msiMsg{}}
}

func (p *kvmPlatform) IOEvent(fd int, addr uint64, length uint32, assign bool) error {
	return p.vm.ioEventFD(fd, addr, length, false, !assign)
}

func (p *kvmPlatform) IRQFD(fd int, gsi uint32) error { return p.vm.IRQFD(fd, gsi) }

func (p *kvmPlatform) AllocGSI() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nextGSI >= maxGSI {
		return 0, fmt.Errorf("irq: all %d GSIs in use", maxGSI)
	}
	g := p.nextGSI
	p.nextGSI++
	p.msi[g] = msiMsg{}
	return g, p.commit()
}

func (p *kvmPlatform) SetMSI(gsi uint32, addr uint64, data uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.msi[gsi]; ok && old == (msiMsg{addr, data}) {
		return nil
	}
	p.msi[gsi] = msiMsg{addr, data}
	return p.commit()
}

// commit sends the routing table: KVM's default irqchip routes (GSI 0-15
// to the PICs and the IOAPIC, 16-23 to the IOAPIC; virt/kvm/irqchip.c
// kvm_setup_default_irq_routing) and the MSI routes.
func (p *kvmPlatform) commit() error {
	b := routingTable(p.msi)
	if err := ioctlBytes(p.vm.fd, kvmSetGSIRouting, b); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_GSI_ROUTING(%d entries)", getU32(b)), err)
	}
	return nil
}

func routingTable(msi map[uint32]msiMsg) []byte {
	var entries [][routingEntrySize]byte
	irqchip := func(gsi, chip, pin uint32) {
		var e [routingEntrySize]byte
		putU32(e[0:], gsi)
		putU32(e[4:], routingTypeIRQChip)
		putU32(e[16:], chip)
		putU32(e[20:], pin)
		entries = append(entries, e)
	}
	for gsi := uint32(0); gsi < ioapicPins; gsi++ {
		if gsi < 16 {
			chip := uint32(irqchipPICMaster)
			if gsi >= 8 {
				chip = irqchipPICSlave
			}
			irqchip(gsi, chip, gsi%8)
		}
		irqchip(gsi, irqchipIOAPIC, gsi)
	}
	gsis := make([]uint32, 0, len(msi))
	for g := range msi {
		gsis = append(gsis, g)
	}
	sort.Slice(gsis, func(i, j int) bool { return gsis[i] < gsis[j] })
	for _, g := range gsis {
		m := msi[g]
		var e [routingEntrySize]byte
		putU32(e[0:], g)
		putU32(e[4:], routingTypeMSI)
		putU32(e[16:], uint32(m.addr))
		putU32(e[20:], uint32(m.addr>>32))
		putU32(e[24:], m.data)
		entries = append(entries, e)
	}
	b := make([]byte, 8+routingEntrySize*len(entries))
	putU32(b[0:], uint32(len(entries)))
	for i, e := range entries {
		copy(b[8+i*routingEntrySize:], e[:])
	}
	return b
}

// ioEventFD is IOEventFD with deassignment (KVM_IOEVENTFD_FLAG_DEASSIGN).
func (vm *VM) ioEventFD(eventFD int, addr uint64, length uint32, pio, deassign bool) error {
	var r [64]byte
	putU64(r[8:], addr)
	putU32(r[16:], length)
	putU32(r[20:], uint32(eventFD))
	var flags uint32
	if pio {
		flags |= 1 << 1 // KVM_IOEVENTFD_FLAG_PIO
	}
	if deassign {
		flags |= 1 << 2 // KVM_IOEVENTFD_FLAG_DEASSIGN
	}
	putU32(r[24:], flags)
	if err := ioctlBytes(vm.fd, kvmIOEventFD, r[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_IOEVENTFD(fd %d, addr %#x, deassign %v)", eventFD, addr, deassign), err)
	}
	return nil
}
