package vmm

import (
	"strings"
	"testing"
)

func sum8(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// mpConfig is what a parser following the MP spec 1.4 reads from a table.
type mpConfig struct {
	cpus       []byte // APIC IDs in entry order
	bsp        []byte // APIC IDs with the BSP flag
	ioapicIDs  []byte
	ioapicAddr uint32
	ioInts     [][8]byte
	localInts  [][8]byte
	buses      []string
}

// parseMPTable reads an MP table placed at addr, checking what Linux's
// mpparse.c checks (smp_scan_config, smp_check_mpc).
func parseMPTable(t *testing.T, b []byte, addr uint32) mpConfig {
	t.Helper()
	var c mpConfig
	if len(b) < mpfSize {
		t.Fatalf("MP table of %d bytes", len(b))
	}
	// §4.1 floating pointer structure.
	mpf := b[:mpfSize]
	if string(mpf[0:4]) != "_MP_" {
		t.Fatalf("floating pointer signature %q, want _MP_", mpf[0:4])
	}
	if mpf[8] != 1 {
		t.Errorf("floating pointer length %d paragraphs, want 1", mpf[8])
	}
	if mpf[9] != 1 && mpf[9] != 4 {
		t.Errorf("floating pointer spec revision %d, want 1 or 4", mpf[9])
	}
	if s := sum8(mpf); s != 0 {
		t.Errorf("floating pointer checksum: sum = %#x, want 0", s)
	}
	if mpf[11] != 0 {
		t.Errorf("floating pointer feature byte 1 = %d, want 0 (configuration table present)", mpf[11])
	}
	phys := getU32(mpf[4:])
	if phys != addr+mpfSize {
		t.Errorf("floating pointer physptr = %#x, want %#x", phys, addr+mpfSize)
	}
	if phys < addr || int(phys-addr)+mpcHeaderSize > len(b) {
		t.Fatalf("physptr %#x outside the table at %#x+%d", phys, addr, len(b))
	}
	// §4.2 configuration table header.
	cfg := b[phys-addr:]
	if string(cfg[0:4]) != "PCMP" {
		t.Fatalf("configuration table signature %q, want PCMP", cfg[0:4])
	}
	length := int(getU16(cfg[4:]))
	if length != len(cfg) {
		t.Errorf("configuration table length %d, want %d (the bytes that follow)", length, len(cfg))
	}
	if length > len(cfg) {
		t.Fatalf("configuration table length %d past the end (%d)", length, len(cfg))
	}
	cfg = cfg[:length]
	if s := sum8(cfg); s != 0 {
		t.Errorf("configuration table checksum: sum = %#x, want 0", s)
	}
	if cfg[6] != 1 && cfg[6] != 4 {
		t.Errorf("configuration table spec revision %d", cfg[6])
	}
	if got := getU32(cfg[36:]); got != lapicAddr {
		t.Errorf("local APIC address %#x, want %#x", got, lapicAddr)
	}
	if ext := getU16(cfg[40:]); ext != 0 {
		t.Errorf("extended table length %d, want 0", ext)
	}
	count := int(getU16(cfg[34:]))
	p := cfg[mpcHeaderSize:]
	for i := 0; i < count; i++ {
		if len(p) == 0 {
			t.Fatalf("entry %d of %d: past the end of the table", i, count)
		}
		size := mpEntrySize
		if p[0] == 0 {
			size = mpProcSize
		}
		if len(p) < size {
			t.Fatalf("entry %d (type %d): %d bytes left, want %d", i, p[0], len(p), size)
		}
		e := p[:size]
		switch e[0] {
		case 0: // §4.3.1 processor
			c.cpus = append(c.cpus, e[1])
			if e[3]&mpCPUEnabled == 0 {
				t.Errorf("processor %d not enabled", e[1])
			}
			if e[3]&mpCPUBoot != 0 {
				c.bsp = append(c.bsp, e[1])
			}
		case 1: // §4.3.2 bus
			c.buses = append(c.buses, string(e[2:8]))
		case 2: // §4.3.3 I/O APIC
			c.ioapicIDs = append(c.ioapicIDs, e[1])
			c.ioapicAddr = getU32(e[4:])
			if e[3]&1 == 0 {
				t.Errorf("IOAPIC %d not enabled", e[1])
			}
		case 3: // §4.3.4 I/O interrupt assignment
			c.ioInts = append(c.ioInts, [8]byte(e))
		case 4: // §4.3.5 local interrupt assignment
			c.localInts = append(c.localInts, [8]byte(e))
		default:
			t.Fatalf("entry %d: unknown type %d", i, e[0])
		}
		p = p[size:]
	}
	if len(p) != 0 {
		t.Errorf("%d bytes after the %d entries", len(p), count)
	}
	return c
}

func TestMPTable(t *testing.T) {
	for _, n := range []int{1, 2, 4, 31, maxCPUs} {
		b, err := buildMPTable(n, mptableAddr)
		if err != nil {
			t.Fatalf("buildMPTable(%d) = %v", n, err)
		}
		if end := mptableAddr + len(b); end > ebdaEnd {
			t.Errorf("buildMPTable(%d): ends at %#x, past %#x", n, end, ebdaEnd)
		}
		c := parseMPTable(t, b, mptableAddr)
		if len(c.cpus) != n {
			t.Fatalf("buildMPTable(%d): %d processors", n, len(c.cpus))
		}
		for i, id := range c.cpus {
			if int(id) != i {
				t.Errorf("buildMPTable(%d): processor %d has APIC ID %d, want %d", n, i, id, i)
			}
		}
		if len(c.bsp) != 1 || c.bsp[0] != 0 {
			t.Errorf("buildMPTable(%d): BSP flag on APIC IDs %v, want [0]", n, c.bsp)
		}
		if len(c.ioapicIDs) != 1 || int(c.ioapicIDs[0]) != n || c.ioapicAddr != ioapicAddr {
			t.Errorf("buildMPTable(%d): IOAPICs %v at %#x, want [%d] at %#x", n, c.ioapicIDs, c.ioapicAddr, n, ioapicAddr)
		}
		if len(c.buses) != 1 || c.buses[0] != "ISA   " {
			t.Errorf("buildMPTable(%d): buses %q, want [\"ISA   \"]", n, c.buses)
		}
		if len(c.ioInts) != 16 {
			t.Errorf("buildMPTable(%d): %d I/O interrupt entries, want 16", n, len(c.ioInts))
		}
		for i, e := range c.ioInts {
			// INT, conforming polarity/trigger, ISA bus 0, IRQ i -> IOAPIC pin i.
			want := [8]byte{3, mpIRQTypeINT, 0, 0, 0, byte(i), byte(n), byte(i)}
			if e != want {
				t.Errorf("buildMPTable(%d): I/O interrupt %d = % x, want % x", n, i, e, want)
			}
		}
		wantLocal := [][8]byte{
			{4, mpIRQTypeExtINT, 0, 0, 0, 0, 0xff, 0},
			{4, mpIRQTypeNMI, 0, 0, 0, 0, 0xff, 1},
		}
		if len(c.localInts) != 2 || c.localInts[0] != wantLocal[0] || c.localInts[1] != wantLocal[1] {
			t.Errorf("buildMPTable(%d): local interrupts % x, want % x", n, c.localInts, wantLocal)
		}
	}

	// The floating pointer must be 16-byte aligned in the last KiB of
	// base memory for Linux's scan (smp_scan_config) to find it.
	if mptableAddr%16 != 0 || mptableAddr < ebdaEnd-1024 {
		t.Errorf("mptableAddr %#x: not a 16-byte boundary in the last KiB below %#x", mptableAddr, ebdaEnd)
	}

	for _, tc := range []struct {
		n    int
		addr uint32
		want string
	}{
		{0, mptableAddr, "0 CPUs"},
		{-1, mptableAddr, "-1 CPUs"},
		{maxCPUs + 1, mptableAddr, "33 CPUs"},
		{maxCPUs, ebdaEnd - 16, "do not fit"},
	} {
		if _, err := buildMPTable(tc.n, tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("buildMPTable(%d, %#x) = %v, want error %q", tc.n, tc.addr, err, tc.want)
		}
	}
}
