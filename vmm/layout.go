package vmm

// Guest-physical layout used to boot Linux without firmware. The low
// addresses follow the conventions of Firecracker and QEMU's direct kernel
// boot: everything the boot needs sits below 1 MiB except the kernel
// (loaded at 1 MiB) and the initrd (at the top of low RAM).
const (
	gdtAddr      = 0x500  // flat GDT (Linux boot protocol §64-bit: __BOOT_CS 0x10, __BOOT_DS 0x18)
	idtAddr      = 0x530  // empty IDT, after the 5-entry GDT (0x500-0x527): no interrupts before the kernel sets its own
	zeroPageAddr = 0x7000 // struct boot_params
	bootStack    = 0x8ff0
	pml4Addr     = 0x9000 // page tables: PML4, one PDPT, four page directories
	pdptAddr     = 0xa000
	pdAddr       = 0xb000 // 4 x 4 KiB: identity map of the first 4 GiB with 2 MiB pages
	cmdlineAddr  = 0x20000
	mptableAddr  = 0x9fc00 // the last KiB of base memory, where Linux scans for "_MP_"
	ebdaEnd      = 0xa0000
	kernelAddr   = 0x100000 // "high memory", where the protected-mode kernel is loaded

	// mmioHoleStart..4 GiB is not RAM: PCI BARs, the IOAPIC (0xfec00000)
	// and the local APICs (0xfee00000). RAM above it continues at 4 GiB.
	mmioHoleStart = 0xc0000000
	mmioHoleEnd   = 0x100000000
	ioapicAddr    = 0xfec00000
	lapicAddr     = 0xfee00000

	// KVM needs three pages for the TSS and one for the identity map on
	// Intel hosts; both sit just below the BIOS area at the top of 4 GiB.
	tssAddr         = 0xfffbd000
	identityMapAddr = 0xfffbc000
)

// Ports of the emulated legacy devices.
const (
	com1Port    = 0x3f8 // 8250 UART, IRQ 4
	com1IRQ     = 4
	com2Port    = 0x2f8 // the second UART (Config.Events), IRQ 3
	com2IRQ     = 3
	i8042Data   = 0x60
	i8042Cmd    = 0x64  // writing 0xfe pulses the CPU reset line (reboot=k)
	cmosPort    = 0x70  // CMOS index, data at 0x71
	pciAddrPort = 0xcf8 // PCI configuration mechanism #1
	pciDataPort = 0xcfc

	// ExitPort is hvnet's paravirtual exit port. A one-byte write of N ends
	// the VMM with exit status N. It is the port of QEMU's isa-debug-exit
	// device (iobase 0xf4), so the same guest agent works under QEMU.
	ExitPort = 0xf4
)

// e820 memory types (Linux boot protocol, "e820_table").
const (
	e820RAM      = 1
	e820Reserved = 2
)

// E820Entry is one entry of the e820 memory map given to the guest.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// ramRegions returns where guest RAM of memBytes lives: below the MMIO hole
// and, for the rest, from 4 GiB.
func ramRegions(memBytes uint64) (low, high uint64) {
	if memBytes <= mmioHoleStart {
		return memBytes, 0
	}
	return mmioHoleStart, memBytes - mmioHoleStart
}

// e820Map is the memory map for memBytes of RAM: base memory up to the MP
// table and the ACPI tables (reserved), then RAM from 1 MiB, then RAM above 4 GiB if any.
func e820Map(memBytes uint64) []E820Entry {
	low, high := ramRegions(memBytes)
	m := []E820Entry{
		{0, mptableAddr, e820RAM},
		{mptableAddr, ebdaEnd - mptableAddr, e820Reserved},
		{rsdpAddr, acpiEnd - rsdpAddr, e820Reserved},
		{kernelAddr, low - kernelAddr, e820RAM},
	}
	if high > 0 {
		m = append(m, E820Entry{mmioHoleEnd, high, e820RAM})
	}
	return m
}
