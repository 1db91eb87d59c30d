package vmm

import (
	"errors"
	"fmt"

	"github.com/hvnet/hvnet/virtio"
)

// virtioMemory is guest RAM as the virtio devices see it.
func (m *Machine) virtioMemory() (*virtio.Memory, error) {
	var rs []virtio.Region
	for _, r := range m.mem.Regions() {
		rs = append(rs, virtio.Region{GPA: r.GPA, Data: m.mem.Host(r)})
	}
	return virtio.NewMemory(rs...)
}

// AddNet adds a virtio-net PCI device whose dataplane runs in the VMM,
// its frames going to cfg.Sink. Call it after New and before Run.
func (m *Machine) AddNet(cfg NetConfig) (*NetDevice, error) {
	var n *NetDevice
	err := m.addNetFunc(&cfg, func(mem *virtio.Memory, bar uint32) (*netFunc, func() error, error) {
		var err error
		n, err = newNetDevice(cfg, mem, m.plat, bar)
		if err != nil {
			return nil, nil, err
		}
		return &n.netFunc, n.close, nil
	})
	return n, err
}

// AddVhostNet adds a virtio-net PCI device whose data queues the
// vhost-user backend at socket runs (hvnet switch, DPDK net_vhost):
// cfg.Sink must be nil. It connects to the backend now. Call it after New
// and before Run.
func (m *Machine) AddVhostNet(socket string, cfg NetConfig) (*VhostNetDevice, error) {
	var n *VhostNetDevice
	err := m.addNetFunc(&cfg, func(mem *virtio.Memory, bar uint32) (*netFunc, func() error, error) {
		var err error
		n, err = newVhostNetDevice(socket, cfg, mem, m.mem, m.plat, bar)
		if err != nil {
			return nil, nil, err
		}
		return &n.netFunc, n.close, nil
	})
	return n, err
}

// addNetFunc places a virtio-net function built by build on the PCI bus,
// at the next free BAR.
func (m *Machine) addNetFunc(cfg *NetConfig, build func(mem *virtio.Memory, bar uint32) (*netFunc, func() error, error)) error {
	if cfg.Log == nil {
		cfg.Log = m.log.Named("virtio-net")
	}
	mem, err := m.virtioMemory()
	if err != nil {
		return fmt.Errorf("virtio-net: %w", err)
	}
	// BARs are assigned here, as firmware would, from the bottom of the
	// MMIO hole; the guest keeps them (they lie in PCI0's _CRS window).
	bar := m.nextBAR
	if bar == 0 {
		bar = mmioHoleStart
	}
	if uint64(bar)+vpciBarSize > ioapicAddr {
		return fmt.Errorf("virtio-net: no room for another BAR")
	}
	f, closeFn, err := build(mem, bar)
	if err != nil {
		return err
	}
	if slot := m.pci.Add(f.pci); slot < 0 {
		closeFn()
		return fmt.Errorf("virtio-net: PCI bus 0 is full")
	}
	m.nextBAR = bar + vpciBarSize
	m.mmio.register(f.pci)
	m.closers = append(m.closers, closeFn)
	return nil
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
