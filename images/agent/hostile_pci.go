package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PCI plumbing of the hostile driver: find the virtio-net function, take
// it from its kernel driver and locate its virtio structures.

const (
	sysPCI          = "/sys/bus/pci/devices"
	virtioVendor    = "0x1af4"
	virtioNetModern = "0x1041" // 0x1040 + device type 1 (virtio 1.2 §4.1.2.1)

	pciCommandReg   = 0x04
	pciStatusReg    = 0x06
	pciCapPointer   = 0x34
	pciCapList      = 0x10 // status: capability list present
	pciCmdMem       = 0x02 // memory space enable
	pciCmdMaster    = 0x04 // bus master enable
	pciCapIDVendor  = 0x09
	virtioCapCommon = 1
	virtioCapNotify = 2
	virtioCapISR    = 3
	virtioCapDevice = 4
)

// findVirtioNet returns the address of the first modern virtio-net
// function, e.g. 0000:00:01.0.
func findVirtioNet() (string, error) {
	ds, err := os.ReadDir(sysPCI)
	if err != nil {
		return "", err
	}
	for _, d := range ds {
		v, _ := os.ReadFile(filepath.Join(sysPCI, d.Name(), "vendor"))
		p, _ := os.ReadFile(filepath.Join(sysPCI, d.Name(), "device"))
		if strings.TrimSpace(string(v)) == virtioVendor && strings.TrimSpace(string(p)) == virtioNetModern {
			return d.Name(), nil
		}
	}
	return "", errors.New("no virtio-net PCI function")
}

// virtioCap is one virtio_pci_cap (virtio 1.2 §4.1.4).
type virtioCap struct {
	bar      int
	offset   uint32
	length   uint32
	multiply uint32 // notify_off_multiplier (notify capability only)
}

// pciFunc is the function taken from its driver.
type pciFunc struct {
	addr string
	caps map[int]virtioCap // by cfg_type
}

func writeSys(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", v, path, err)
	}
	return nil
}

// takePCI unbinds addr from its driver, enables it with bus mastering and
// reads its virtio capabilities (virtio 1.2 §4.1.4; PCI 3.0 §6.7).
func takePCI(addr string) (*pciFunc, error) {
	dir := filepath.Join(sysPCI, addr)
	if _, err := os.Stat(filepath.Join(dir, "driver")); err == nil {
		if err := writeSys(filepath.Join(dir, "driver", "unbind"), addr); err != nil {
			return nil, err
		}
	}
	if err := writeSys(filepath.Join(dir, "enable"), "1"); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "config"), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg := make([]byte, 256)
	if n, err := f.ReadAt(cfg, 0); n < 64 {
		return nil, fmt.Errorf("read %s config: %d bytes: %w", addr, n, err)
	}
	cmd := binary.LittleEndian.Uint16(cfg[pciCommandReg:]) | pciCmdMem | pciCmdMaster
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], cmd)
	if _, err := f.WriteAt(b[:], pciCommandReg); err != nil {
		return nil, fmt.Errorf("%s: set command register: %w", addr, err)
	}
	p := &pciFunc{addr: addr, caps: map[int]virtioCap{}}
	if binary.LittleEndian.Uint16(cfg[pciStatusReg:])&pciCapList == 0 {
		return nil, fmt.Errorf("%s: no capability list", addr)
	}
	seen := 0
	for off := int(cfg[pciCapPointer]) &^ 3; off != 0 && seen < 48; seen++ {
		if off+20 > len(cfg) {
			return nil, fmt.Errorf("%s: capability at %#x beyond config space", addr, off)
		}
		c := cfg[off:]
		if c[0] == pciCapIDVendor {
			vc := virtioCap{bar: int(c[4]), offset: binary.LittleEndian.Uint32(c[8:]), length: binary.LittleEndian.Uint32(c[12:])}
			if c[3] == virtioCapNotify {
				vc.multiply = binary.LittleEndian.Uint32(c[16:])
			}
			if _, dup := p.caps[int(c[3])]; !dup { // the first of a type is the preferred one
				p.caps[int(c[3])] = vc
			}
		}
		off = int(c[1]) &^ 3
	}
	for _, t := range []int{virtioCapCommon, virtioCapNotify, virtioCapDevice} {
		if _, ok := p.caps[t]; !ok {
			return nil, fmt.Errorf("%s: no virtio capability of type %d", addr, t)
		}
		if p.caps[t].bar != p.caps[virtioCapCommon].bar {
			return nil, fmt.Errorf("%s: virtio structures in several BARs are not supported", addr)
		}
	}
	return p, nil
}

// rebind gives the function back to the kernel's virtio-pci driver and
// waits for its network interface; it returns the interface's name.
func (p *pciFunc) rebind(timeout time.Duration) (string, error) {
	if err := writeSys("/sys/bus/pci/drivers/virtio-pci/bind", p.addr); err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	for {
		ns, _ := filepath.Glob(filepath.Join(sysPCI, p.addr, "virtio*", "net", "*"))
		if len(ns) > 0 {
			return filepath.Base(ns[0]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s: no network interface %v after rebinding", p.addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ramEnd is the end of the highest "System RAM" range in /proc/iomem.
func ramEnd() (uint64, error) {
	b, err := os.ReadFile("/proc/iomem")
	if err != nil {
		return 0, err
	}
	return parseRAMEnd(string(b))
}

func parseRAMEnd(iomem string) (uint64, error) {
	var end uint64
	for _, l := range strings.Split(iomem, "\n") {
		if strings.HasPrefix(l, " ") || !strings.HasSuffix(l, ": System RAM") {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(l, "%x-%x", &lo, &hi); err == nil && hi+1 > end {
			end = hi + 1
		}
	}
	if end == 0 {
		return 0, errors.New("/proc/iomem: no System RAM")
	}
	return end, nil
}
