package vmm

import "fmt"

// ACPI tables (ACPI 6.4): how a guest whose kernel lacks MP-table parsing
// (Debian's cloud kernel: CONFIG_X86_MPPARSE is off) finds its local APICs
// and IOAPIC. The platform is a full (not hardware-reduced) ACPI PC: the
// legacy PIC and ISA interrupts stay, so IRQ 4 of the serial port works as
// on the MP-table platform, with a fixed-hardware PM1 block and PM timer
// (pm.go). Hardware-reduced ACPI would drop the legacy IRQ mappings, and
// ISA devices would then need AML descriptions in the DSDT.
//
// Layout, all in the reserved window below 1 MiB: RSDP at rsdpAddr, then
// XSDT, FADT, DSDT and MADT. boot_params.acpi_rsdp_addr points at the RSDP
// (boot protocol 2.14+), which is also where a legacy scan finds it.
const (
	rsdpAddr      = 0xe0000
	acpiEnd       = 0x100000
	acpiOEMID     = "HVNET "
	acpiOEMTable  = "HVNETVM "
	acpiCreatorID = "HVNT"
	sdtHeaderSize = 36

	fadtFlagWBINVD    = 1 << 0
	fadtFlagPwrButton = 1 << 4
	fadtFlagSlpButton = 1 << 5
	fadtFlagTmrValExt = 1 << 8 // 32-bit PM timer
	iapcLegacyDevices = 1 << 0 // ISA devices (the UART); no 8042 bit: no keyboard probe
	iapcVGANotPresent = 1 << 2
	sciIRQ            = 9

	madtPCATCompat   = 1
	madtTypeLAPIC    = 0
	madtTypeIOAPIC   = 1
	madtTypeLAPICNMI = 4
	madtLAPICEnabled = 1
)

func acpiChecksum(b []byte) byte { return mpChecksum(b) }

// sdt builds a table: the 36-byte system description header (§5.2.6)
// followed by body, with length and checksum filled in.
func sdt(sig string, rev byte, body []byte) []byte {
	t := make([]byte, sdtHeaderSize, sdtHeaderSize+len(body))
	copy(t[0:4], sig)
	t[8] = rev
	copy(t[10:16], acpiOEMID)
	copy(t[16:24], acpiOEMTable)
	putU32(t[24:], 1)
	copy(t[28:32], acpiCreatorID)
	putU32(t[32:], 1)
	t = append(t, body...)
	putU32(t[4:], uint32(len(t)))
	t[9] = acpiChecksum(t)
	return t
}

// buildACPI returns the tables for ncpu processors laid out from rsdpAddr.
func buildACPI(ncpu int) ([]byte, error) {
	if ncpu < 1 || ncpu > maxCPUs {
		return nil, fmt.Errorf("acpi: %d CPUs, want 1..%d", ncpu, maxCPUs)
	}
	const rsdpSize = 36
	align := func(n int) int { return (n + 15) &^ 15 }

	// DSDT (§5.2.11.1): the serial port is found by legacy probing, PCI
	// devices below the host bridge PCI0 (aml.go) through configuration
	// mechanism #1. The S5 sleep type lets the guest power off through
	// PM1a_CNT: Name (_S5, Package () { 5, 5, 0, 0 }) (§7.4.2, AML §20.2.5.2).
	s5 := []byte{0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, slpTypS5, 0x0a, slpTypS5, 0x00, 0x00}
	pci0, err := pciHostBridgeAML()
	if err != nil {
		return nil, err
	}
	dsdt := sdt("DSDT", 2, append(s5, pci0...))

	// MADT (§5.2.12): one local APIC per vCPU, the IOAPIC with GSI base 0,
	// and LINT1 as NMI on all processors.
	var m []byte
	m = append(m, make([]byte, 8)...)
	putU32(m[0:], lapicAddr)
	putU32(m[4:], madtPCATCompat)
	for i := 0; i < ncpu; i++ {
		e := []byte{madtTypeLAPIC, 8, byte(i), byte(i), 0, 0, 0, 0}
		putU32(e[4:], madtLAPICEnabled)
		m = append(m, e...)
	}
	io := []byte{madtTypeIOAPIC, 12, byte(ncpu), 0, 0, 0, 0, 0, 0, 0, 0, 0}
	putU32(io[4:], ioapicAddr)
	m = append(m, io...)
	m = append(m, madtTypeLAPICNMI, 6, 0xff, 0, 0, 1) // all processors, flags 0, LINT1
	madt := sdt("APIC", 5, m)

	dsdtAddr := uint64(rsdpAddr + align(rsdpSize))
	madtAddr := dsdtAddr + uint64(align(len(dsdt)))
	fadtAddr := madtAddr + uint64(align(len(madt)))

	// FADT (§5.2.9), revision 6. SMI_CMD 0: always in ACPI mode.
	f := make([]byte, 276-sdtHeaderSize)
	body := func(off int) []byte { return f[off-sdtHeaderSize:] }
	putU32(body(40), uint32(dsdtAddr))
	putU16(body(46), sciIRQ)
	putU32(body(56), pmBase+pm1EvtOff)
	putU32(body(64), pmBase+pm1CntOff)
	putU32(body(76), pmBase+pmTmrOff)
	body(88)[0] = 4 // PM1_EVT_LEN
	body(89)[0] = 2 // PM1_CNT_LEN
	body(91)[0] = 4 // PM_TMR_LEN
	putU16(body(109), iapcLegacyDevices|iapcVGANotPresent)
	putU32(body(112), fadtFlagWBINVD|fadtFlagPwrButton|fadtFlagSlpButton|fadtFlagTmrValExt)
	body(131)[0] = 4 // FADT minor version (6.4)
	putU64(body(140), dsdtAddr)
	putU64(body(268), 0x544e5648) // hypervisor vendor identity "HVNT"
	fadt := sdt("FACP", 6, f)

	xsdtAddr := fadtAddr + uint64(align(len(fadt)))
	x := make([]byte, 16)
	putU64(x[0:], fadtAddr)
	putU64(x[8:], madtAddr)
	xsdt := sdt("XSDT", 1, x)

	// RSDP (§5.2.5.3), revision 2: checksum over the first 20 bytes,
	// extended checksum over all 36.
	rsdp := make([]byte, rsdpSize)
	copy(rsdp[0:8], "RSD PTR ")
	copy(rsdp[9:15], acpiOEMID)
	rsdp[15] = 2
	putU32(rsdp[20:], rsdpSize)
	putU64(rsdp[24:], xsdtAddr)
	rsdp[8] = acpiChecksum(rsdp[:20])
	rsdp[32] = acpiChecksum(rsdp)

	out := make([]byte, int(xsdtAddr-rsdpAddr)+len(xsdt))
	copy(out, rsdp)
	copy(out[dsdtAddr-rsdpAddr:], dsdt)
	copy(out[madtAddr-rsdpAddr:], madt)
	copy(out[fadtAddr-rsdpAddr:], fadt)
	copy(out[xsdtAddr-rsdpAddr:], xsdt)
	if rsdpAddr+len(out) > acpiEnd {
		return nil, fmt.Errorf("acpi: %d bytes of tables do not fit below %#x", len(out), acpiEnd)
	}
	return out, nil
}
