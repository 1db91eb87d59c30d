package vmm

import "sync"

// PCI configuration mechanism #1 (PCI Local Bus Specification 3.0 §3.2.2.3.2):
// a 32-bit address register at 0xcf8 (enable bit 31, bus 23:16, device
// 15:11, function 10:8, register 7:2) and a data window at 0xcfc-0xcff.

// PCIDevice is a function on bus 0. Config reads and writes are of 1, 2 or
// 4 bytes at a naturally aligned offset inside the 256-byte header.
type PCIDevice interface {
	ConfigRead(off uint8, size int) uint32
	ConfigWrite(off uint8, size int, v uint32)
}

// PCI configuration header offsets (type 0).
const (
	pciVendorID   = 0x00
	pciDeviceID   = 0x02
	pciCommand    = 0x04
	pciStatus     = 0x06
	pciRevision   = 0x08
	pciClassProg  = 0x09
	pciHeaderType = 0x0e
)

// PCIBus is bus 0 with up to 32 devices, function 0 each.
type PCIBus struct {
	mu      sync.Mutex
	addr    uint32
	devices [32]PCIDevice
}

// NewPCIBus returns a bus with the host bridge at 00:00.0.
func NewPCIBus() *PCIBus {
	b := &PCIBus{}
	b.devices[0] = newHostBridge()
	return b
}

// Add puts a device into the first free slot and returns its slot number,
// or -1 when the bus is full.
func (b *PCIBus) Add(d PCIDevice) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, s := range b.devices {
		if s == nil {
			b.devices[i] = d
			return i
		}
	}
	return -1
}

// target returns the addressed device and register, or nil.
func (b *PCIBus) target() (PCIDevice, uint8) {
	a := b.addr
	if a&(1<<31) == 0 || (a>>16)&0xff != 0 || (a>>8)&7 != 0 {
		return nil, 0
	}
	return b.devices[(a>>11)&0x1f], uint8(a & 0xfc)
}

type pciAddrPortDev struct{ *PCIBus }
type pciDataPortDev struct{ *PCIBus }

func (p pciAddrPortDev) PIORead(off uint16, data []byte) {
	p.mu.Lock()
	v := p.addr
	p.mu.Unlock()
	putN(data, v>>(8*off))
}

func (p pciAddrPortDev) PIOWrite(off uint16, data []byte) {
	if off != 0 || len(data) != 4 {
		return // only dword accesses latch an address
	}
	p.mu.Lock()
	p.addr = getU32(data) &^ 3
	p.mu.Unlock()
}

func (p pciDataPortDev) PIORead(off uint16, data []byte) {
	p.mu.Lock()
	d, reg := p.target()
	p.mu.Unlock()
	if d == nil || int(off)+len(data) > 4 {
		putN(data, 0xffffffff)
		return
	}
	putN(data, d.ConfigRead(reg+uint8(off), len(data)))
}

func (p pciDataPortDev) PIOWrite(off uint16, data []byte) {
	p.mu.Lock()
	d, reg := p.target()
	p.mu.Unlock()
	if d == nil || int(off)+len(data) > 4 {
		return
	}
	d.ConfigWrite(reg+uint8(off), len(data), getN(data))
}

func putN(b []byte, v uint32) {
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}

func getN(b []byte) uint32 {
	var v uint32
	for i := range b {
		v |= uint32(b[i]) << (8 * i)
	}
	return v
}

// ConfigSpace is a 256-byte PCI configuration header with a write mask: a
// base for emulated PCI functions.
type ConfigSpace struct {
	mu    sync.Mutex
	data  [256]byte
	wmask [256]byte
}

// ConfigRead implements PCIDevice.
func (c *ConfigSpace) ConfigRead(off uint8, size int) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int(off)+size > len(c.data) {
		return 0xffffffff
	}
	return getN(c.data[off : int(off)+size])
}

// ConfigWrite implements PCIDevice: only bits in the write mask change.
func (c *ConfigSpace) ConfigWrite(off uint8, size int, v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < size && int(off)+i < len(c.data); i++ {
		o := int(off) + i
		b := byte(v >> (8 * i))
		c.data[o] = c.data[o]&^c.wmask[o] | b&c.wmask[o]
	}
}

// hostBridge is 00:00.0, what Linux's PCI probe looks for to trust
// configuration mechanism #1 (arch/x86/pci/direct.c pci_sanity_check).
type hostBridge struct{ ConfigSpace }

func newHostBridge() *hostBridge {
	h := &hostBridge{}
	putU16(h.data[pciVendorID:], 0x8086) // Intel
	putU16(h.data[pciDeviceID:], 0x0d57) // as cloud-hypervisor's root
	h.data[0x0b] = 0x06                  // class: bridge
	h.data[0x0a] = 0x00                  // subclass: host bridge
	h.data[pciHeaderType] = 0
	h.wmask[pciCommand] = 0xff
	return h
}
