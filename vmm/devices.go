package vmm

import (
	"errors"
	"fmt"

	"hvnet/virtio"
)

// virtioMemory is guest RAM as the virtio devices see it.
func (m *Machine) virtioMemory() (*virtio.Memory, error) {
	var rs []virtio.Region
	for _, r := range m.mem.Regions() {
		rs = append(rs, virtio.Region{GPA: r.GPA, Data: m.mem.Host(r)})
	}
	return virtio.NewMemory(rs...)
}

// AddNet adds a virtio-net PCI device. Call it after New and before Run.
func (m *Machine) AddNet(cfg NetConfig) (*NetDevice, error) {
	if cfg.Log == nil {
		cfg.Log = m.log.Named("virtio-net")
	}
	mem, err := m.virtioMemory()
	if err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	// BARs are assigned here, as firmware would, from the bottom of the
	// MMIO hole; the guest keeps them (they lie in PCI0's _CRS window).
	bar := m.nextBAR
	if bar == 0 {
		bar = mmioHoleStart
	}
	if uint64(bar)+vpciBarSize > ioapicAddr {
		return nil, fmt.Errorf("virtio-net: no room for another BAR")
	}
	n, err := newNetDevice(cfg, mem, m.mem, m.plat, bar)
	if err != nil {
		return nil, err
	}
	if slot := m.pci.Add(n.pci); slot < 0 {
		n.close()
		return nil, fmt.Errorf("virtio-net: PCI bus 0 is full")
	}
	m.nextBAR = bar + vpciBarSize
	m.mmio.register(n.pci)
	m.closers = append(m.closers, n.close)
	return n, nil
}

// StopDevices stops the devices' dataplane goroutines and releases their
// eventfds (Close does it too). Call it on every machine of a group whose
// devices exchange frames (through a switch) before closing any of them, so
// that no device writes into guest memory that is being unmapped.
func (m *Machine) StopDevices() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c())
	}
	m.closers = nil
	return errors.Join(errs...)
}
