package vmm

import "fmt"

// MP table (Intel MultiProcessor Specification 1.4, chapter 4): how a guest
// without ACPI finds its processors, its IOAPIC and how ISA interrupts are
// wired. Linux scans the last KiB of base memory for the floating pointer.
const (
	mpfSize         = 16
	mpcHeaderSize   = 44
	mpProcSize      = 20
	mpEntrySize     = 8 // bus, IOAPIC, I/O and local interrupt entries
	mpSpecRev       = 4
	apicVersion     = 0x14
	ioapicVersion   = 0x11
	mpCPUEnabled    = 1
	mpCPUBoot       = 2
	mpIRQTypeINT    = 0
	mpIRQTypeNMI    = 1
	mpIRQTypeExtINT = 3
	maxCPUs         = 32 // what fits between mptableAddr and ebdaEnd, with margin
)

func mpChecksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// buildMPTable returns the floating pointer followed by the configuration
// table for ncpu processors (APIC IDs 0..ncpu-1), to be placed at addr.
func buildMPTable(ncpu int, addr uint32) ([]byte, error) {
	if ncpu < 1 || ncpu > maxCPUs {
		return nil, fmt.Errorf("mptable: %d CPUs, want 1..%d", ncpu, maxCPUs)
	}
	ioapicID := byte(ncpu)
	var entries [][]byte
	for i := 0; i < ncpu; i++ {
		e := make([]byte, mpProcSize)
		e[0] = 0 // processor
		e[1] = byte(i)
		e[2] = apicVersion
		e[3] = mpCPUEnabled
		if i == 0 {
			e[3] |= mpCPUBoot
		}
		putU32(e[4:], 0x600)       // signature: family 6
		putU32(e[8:], 0x200|0x001) // features: APIC, FPU
		entries = append(entries, e)
	}
	bus := make([]byte, mpEntrySize)
	bus[0], bus[1] = 1, 0 // bus entry, bus 0
	copy(bus[2:], "ISA   ")
	entries = append(entries, bus)
	ioapic := make([]byte, mpEntrySize)
	ioapic[0], ioapic[1], ioapic[2], ioapic[3] = 2, ioapicID, ioapicVersion, 1
	putU32(ioapic[4:], ioapicAddr)
	entries = append(entries, ioapic)
	// ISA IRQs 0-15 go to the IOAPIC pins of the same number, as KVM's
	// default GSI routing wires them.
	for irq := 0; irq < 16; irq++ {
		e := make([]byte, mpEntrySize)
		e[0], e[1] = 3, mpIRQTypeINT
		e[4], e[5], e[6], e[7] = 0, byte(irq), ioapicID, byte(irq)
		entries = append(entries, e)
	}
	// LINT0 of every local APIC is ExtINT (the PIC), LINT1 is NMI.
	lint0 := []byte{4, mpIRQTypeExtINT, 0, 0, 0, 0, 0xff, 0}
	lint1 := []byte{4, mpIRQTypeNMI, 0, 0, 0, 0, 0xff, 1}
	entries = append(entries, lint0, lint1)

	cfg := make([]byte, mpcHeaderSize)
	copy(cfg[0:], "PCMP")
	cfg[6] = mpSpecRev
	copy(cfg[8:], "HVNET   ")
	copy(cfg[16:], "000000000000")
	putU16(cfg[34:], uint16(len(entries)))
	putU32(cfg[36:], lapicAddr)
	for _, e := range entries {
		cfg = append(cfg, e...)
	}
	putU16(cfg[4:], uint16(len(cfg)))
	cfg[7] = mpChecksum(cfg)

	mpf := make([]byte, mpfSize)
	copy(mpf[0:], "_MP_")
	putU32(mpf[4:], addr+mpfSize)
	mpf[8] = 1 // length in 16-byte units
	mpf[9] = mpSpecRev
	mpf[10] = mpChecksum(mpf)
	out := append(mpf, cfg...)
	if uint32(len(out))+addr > ebdaEnd {
		return nil, fmt.Errorf("mptable: %d bytes do not fit below %#x", len(out), ebdaEnd)
	}
	return out, nil
}
