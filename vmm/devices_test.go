package vmm

import (
	"strings"
	"testing"
	"time"
)

func TestCMOS(t *testing.T) {
	// A Sunday in a non-UTC zone: the RTC holds UTC.
	zone := time.FixedZone("UTC+2", 2*3600)
	now := time.Date(2025, time.March, 9, 1, 7, 59, 999, zone) // 2025-03-08 23:07:59 UTC, a Saturday
	c := &CMOS{now: func() time.Time { return now }}
	read := func(index byte) byte {
		c.PIOWrite(0, []byte{index})
		b := []byte{0xaa, 0xaa}
		c.PIORead(1, b)
		if b[1] != 0 {
			t.Errorf("CMOS[%#x]: 2-byte read = % x, want the second byte 0", index, b)
		}
		return b[0]
	}
	for _, tc := range []struct {
		name  string
		index byte
		want  byte
	}{
		{"seconds", 0x00, 0x59},
		{"minutes", 0x02, 0x07},
		{"hours", 0x04, 0x23},
		{"weekday", 0x06, 7}, // Saturday; Sunday is 1
		{"day", 0x07, 0x08},
		{"month", 0x08, 0x03},
		{"year", 0x09, 0x25},
		{"century", 0x32, 0x20},
		{"seconds, NMI disabled", 0x80, 0x59},
		{"alarm seconds", 0x01, 0},
		{"unknown", 0x40, 0},
	} {
		if got := read(tc.index); got != tc.want {
			t.Errorf("CMOS %s [%#x] = %#x, want %#x", tc.name, tc.index, got, tc.want)
		}
	}
	if got := read(0x0a); got&0x80 != 0 {
		t.Errorf("CMOS register A = %#x, want UIP (0x80) clear", got)
	}
	if got := read(0x0b); got&0x02 == 0 || got&0x04 != 0 {
		t.Errorf("CMOS register B = %#x, want 24-hour (0x02) and BCD (0x04 clear)", got)
	}
	if got := read(0x0d); got&0x80 == 0 {
		t.Errorf("CMOS register D = %#x, want VRT (0x80)", got)
	}

	now = time.Date(1999, time.December, 31, 9, 5, 1, 0, time.UTC)
	for _, tc := range []struct {
		index, want byte
	}{{0x00, 0x01}, {0x02, 0x05}, {0x04, 0x09}, {0x07, 0x31}, {0x08, 0x12}, {0x09, 0x99}, {0x32, 0x19}} {
		if got := read(tc.index); got != tc.want {
			t.Errorf("CMOS[%#x] at %v = %#x, want %#x", tc.index, now, got, tc.want)
		}
	}

	// Reading the index port, or with no data, does nothing harmful.
	b := []byte{0xaa}
	c.PIORead(0, b)
	if b[0] != 0 {
		t.Errorf("CMOS index port read = %#x, want 0", b[0])
	}
	c.PIORead(1, nil)
	c.PIOWrite(1, []byte{0x12}) // writes to the data port are ignored
	if got := read(0x09); got != 0x99 {
		t.Errorf("CMOS year after a data write = %#x, want 0x99", got)
	}
	// The zero CMOS uses the real clock.
	var real CMOS
	real.PIOWrite(0, []byte{0x32})
	real.PIORead(1, b)
	if want := bcd(time.Now().UTC().Year() / 100); b[0] != want {
		t.Errorf("CMOS century with the real clock = %#x, want %#x", b[0], want)
	}
}

func TestCMOSBCD(t *testing.T) {
	for _, tc := range []struct {
		in   int
		want byte
	}{{0, 0}, {9, 0x09}, {10, 0x10}, {59, 0x59}, {99, 0x99}} {
		if got := bcd(tc.in); got != tc.want {
			t.Errorf("bcd(%d) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// pciConfig drives configuration mechanism #1 through the two PIO devices,
// as a guest does through ports 0xcf8 and 0xcfc.
type pciConfig struct {
	addr pciAddrPortDev
	data pciDataPortDev
}

func newPCIConfig(b *PCIBus) pciConfig { return pciConfig{pciAddrPortDev{b}, pciDataPortDev{b}} }

func pciAddress(dev, fn, reg int) uint32 {
	return 1<<31 | uint32(dev)<<11 | uint32(fn)<<8 | uint32(reg)&0xfc
}

func (p pciConfig) setAddr(a uint32) {
	b := make([]byte, 4)
	putU32(b, a)
	p.addr.PIOWrite(0, b)
}

func (p pciConfig) read(a uint32, off uint16, size int) uint32 {
	p.setAddr(a)
	b := make([]byte, size)
	for i := range b {
		b[i] = 0x5a
	}
	p.data.PIORead(off, b)
	return getN(b)
}

func (p pciConfig) write(a uint32, off uint16, size int, v uint32) {
	p.setAddr(a)
	b := make([]byte, size)
	putN(b, v)
	p.data.PIOWrite(off, b)
}

// fakePCI is a PCI function with a plain configuration header.
type fakePCI struct{ ConfigSpace }

func TestPCIConfig(t *testing.T) {
	bus := NewPCIBus()
	p := newPCIConfig(bus)
	host := pciAddress(0, 0, 0)
	for _, tc := range []struct {
		name string
		addr uint32
		off  uint16
		size int
		want uint32
	}{
		{"vendor/device", host, 0, 4, 0x0d578086},
		{"vendor", host, 0, 2, 0x8086},
		{"device", host, 2, 2, 0x0d57},
		{"vendor low byte", host, 0, 1, 0x86},
		{"vendor high byte", host, 1, 1, 0x80},
		{"class", pciAddress(0, 0, 0x08), 2, 2, 0x0600},
		{"class dword", pciAddress(0, 0, 0x08), 0, 4, 0x06000000},
		{"base class byte", pciAddress(0, 0, 0x08), 3, 1, 0x06},
		{"header type", pciAddress(0, 0, 0x0c), 2, 1, 0x00},
		{"register bits 1:0 ignored", host | 3, 0, 2, 0x8086},
		{"empty slot", pciAddress(5, 0, 0), 0, 4, 0xffffffff},
		{"empty slot word", pciAddress(31, 0, 0), 2, 2, 0xffff},
		{"function 1", pciAddress(0, 1, 0), 0, 4, 0xffffffff},
		{"bus 1", host | 1<<16, 0, 4, 0xffffffff},
		{"disabled", host &^ (1 << 31), 0, 4, 0xffffffff},
		{"access past the window", host, 2, 4, 0xffffffff},
		{"last register", pciAddress(0, 0, 0xfc), 0, 4, 0},
	} {
		if got := p.read(tc.addr, tc.off, tc.size); got != tc.want {
			t.Errorf("%s: config read(%#x+%d, %d bytes) = %#x, want %#x", tc.name, tc.addr, tc.off, tc.size, got, tc.want)
		}
	}

	// The address register reads back what was latched, bits 1:0 clear;
	// only dword writes at 0xcf8 latch (Linux's pci_check_type1 relies
	// on this: it writes a byte to 0xcfb first).
	p.setAddr(0x80000000)
	a := make([]byte, 4)
	p.addr.PIORead(0, a)
	if got := getU32(a); got != 0x80000000 {
		t.Errorf("address register = %#x, want 0x80000000", got)
	}
	p.addr.PIOWrite(3, []byte{0x01})
	p.addr.PIOWrite(0, []byte{0x12, 0x34})
	p.addr.PIORead(0, a)
	if got := getU32(a); got != 0x80000000 {
		t.Errorf("address register after byte/word writes = %#x, want 0x80000000", got)
	}
	b := make([]byte, 1)
	p.addr.PIORead(3, b)
	if b[0] != 0x80 {
		t.Errorf("address register byte 3 = %#x, want 0x80", b[0])
	}
	p.setAddr(0x80001237)
	p.addr.PIORead(0, a)
	if got := getU32(a); got != 0x80001234 {
		t.Errorf("address register = %#x, want 0x80001234", got)
	}

	// Read-only registers ignore writes; the command register is writable.
	p.write(host, 0, 2, 0x1234)
	p.write(host, 0, 4, 0xffffffff)
	if got := p.read(host, 0, 4); got != 0x0d578086 {
		t.Errorf("vendor/device after writes = %#x, want 0x0d578086", got)
	}
	p.write(pciAddress(0, 0, 0x04), 0, 2, 0x0007)
	if got := p.read(pciAddress(0, 0, 0x04), 0, 2); got != 0x0007 {
		t.Errorf("command register = %#x, want 0x0007", got)
	}
	p.write(pciAddress(0, 0, 0x08), 0, 4, 0)
	if got := p.read(pciAddress(0, 0, 0x08), 2, 2); got != 0x0600 {
		t.Errorf("class after a write = %#x, want 0x0600", got)
	}
	// Writes to empty slots and disabled addresses go nowhere.
	p.write(pciAddress(7, 0, 0), 0, 4, 0)
	p.write(host&^(1<<31), 0, 4, 0)
	p.write(host, 3, 4, 0)
}

func TestPCIBusAdd(t *testing.T) {
	bus := NewPCIBus()
	p := newPCIConfig(bus)
	for want := 1; want < 32; want++ {
		d := &fakePCI{}
		putU16(d.data[pciVendorID:], 0x1af4)
		putU16(d.data[pciDeviceID:], uint16(0x1040+want))
		if got := bus.Add(d); got != want {
			t.Fatalf("Add(device %d) = %d, want %d", want, got, want)
		}
		if got, want := p.read(pciAddress(want, 0, 0), 0, 4), uint32(0x1040+want)<<16|0x1af4; got != want {
			t.Errorf("slot %d vendor/device = %#x, want %#x", want, got, want)
		}
	}
	if got := bus.Add(&fakePCI{}); got != -1 {
		t.Errorf("Add to a full bus = %d, want -1", got)
	}

	// Writes reach the device through the mask, at the right offset.
	d := &fakePCI{}
	d.wmask[0x10], d.wmask[0x11], d.wmask[0x12], d.wmask[0x13] = 0xf0, 0xff, 0xff, 0xff
	b2 := NewPCIBus()
	slot := b2.Add(d)
	p2 := newPCIConfig(b2)
	p2.write(pciAddress(slot, 0, 0x10), 0, 4, 0xffffffff)
	if got := p2.read(pciAddress(slot, 0, 0x10), 0, 4); got != 0xfffffff0 {
		t.Errorf("BAR0 after writing ones = %#x, want 0xfffffff0 (size probe)", got)
	}
	p2.write(pciAddress(slot, 0, 0x10), 2, 1, 0x00)
	if got := p2.read(pciAddress(slot, 0, 0x10), 0, 4); got != 0xff00fff0 {
		t.Errorf("BAR0 after a byte write at +2 = %#x, want 0xff00fff0", got)
	}
}

func TestConfigSpaceBounds(t *testing.T) {
	var c ConfigSpace
	for i := range c.wmask {
		c.wmask[i] = 0xff
	}
	c.ConfigWrite(0xfe, 4, 0x44332211) // runs off the end: the tail is dropped
	if got := c.ConfigRead(0xfe, 2); got != 0x2211 {
		t.Errorf("ConfigRead(0xfe, 2) = %#x, want 0x2211", got)
	}
	if got := c.ConfigRead(0xfe, 4); got != 0xffffffff {
		t.Errorf("ConfigRead(0xfe, 4) = %#x, want 0xffffffff (past the header)", got)
	}
}

// recorder is a PIODevice that records accesses.
type recorder struct {
	fill   byte
	writes []string
	reads  []uint16
}

func (r *recorder) PIORead(off uint16, data []byte) {
	r.reads = append(r.reads, off)
	for i := range data {
		data[i] = r.fill
	}
}

func (r *recorder) PIOWrite(off uint16, data []byte) {
	r.writes = append(r.writes, strings.Repeat("x", int(off))+string(data))
}

func TestPIOBus(t *testing.T) {
	var b pioBus
	serial, cmos, top := &recorder{fill: 1}, &recorder{fill: 2}, &recorder{fill: 3}
	for _, r := range []struct {
		base, size uint16
		dev        PIODevice
	}{{0x3f8, 8, serial}, {0x70, 2, cmos}, {0xfff0, 0x10, top}} {
		if err := b.register(r.base, r.size, r.dev); err != nil {
			t.Fatalf("register(%#x, %d) = %v", r.base, r.size, err)
		}
	}
	for _, tc := range []struct {
		base, size uint16
	}{{0x3f8, 1}, {0x3ff, 1}, {0x3f0, 9}, {0x3f0, 0x20}, {0x71, 1}, {0x6f, 2}, {0xfffe, 1}} {
		err := b.register(tc.base, tc.size, &recorder{})
		if err == nil || !strings.Contains(err.Error(), "overlap") {
			t.Errorf("register(%#x, %d) over an existing range = %v, want overlap error", tc.base, tc.size, err)
		}
	}
	if err := b.register(0x3f0, 8, &recorder{fill: 4}); err != nil {
		t.Errorf("register(0x3f0, 8) just below 0x3f8 = %v, want nil", err)
	}
	if err := b.register(0x72, 2, &recorder{fill: 5}); err != nil {
		t.Errorf("register(0x72, 2) just above 0x70-0x71 = %v, want nil", err)
	}
	for _, tc := range []struct {
		port uint16
		want byte
	}{
		{0x3f8, 1}, {0x3ff, 1}, {0x3f7, 4}, {0x400, 0xff},
		{0x70, 2}, {0x71, 2}, {0x72, 5}, {0x74, 0xff},
		{0, 0xff}, {0x80, 0xff}, {0xffff, 3}, {0xffef, 0xff},
	} {
		data := []byte{0, 0, 0, 0}
		b.access(tc.port, data, false)
		for i, got := range data {
			if got != tc.want {
				t.Errorf("read port %#x: byte %d = %#x, want %#x", tc.port, i, got, tc.want)
				break
			}
		}
	}
	if got, want := serial.reads[len(serial.reads)-1], uint16(7); got != want {
		t.Errorf("read of 0x3ff reached the UART at offset %d, want %d", got, want)
	}
	b.access(0x3fd, []byte("hi"), true)
	b.access(0x1234, []byte("lost"), true) // unclaimed: ignored
	if len(serial.writes) != 1 || serial.writes[0] != "xxxxxhi" {
		t.Errorf("UART writes = %q, want [\"xxxxxhi\"] (offset 5)", serial.writes)
	}
}

func TestExitDevices(t *testing.T) {
	type exit struct {
		status int
		reason string
	}
	var exits []exit
	ex := &exitDevice{exit: func(status int, reason string) { exits = append(exits, exit{status, reason}) }}
	var b pioBus
	if err := b.register(i8042Data, 5, i8042{ex}); err != nil {
		t.Fatal(err)
	}
	if err := b.register(ExitPort, 1, exitPort{ex}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		port uint16
		data []byte
		want []exit
	}{
		{"exit 0", ExitPort, []byte{0}, []exit{{0, "exit port"}}},
		{"exit 3", ExitPort, []byte{3}, []exit{{3, "exit port"}}},
		{"exit 255", ExitPort, []byte{0xff, 0, 0, 0}, []exit{{255, "exit port"}}},
		{"exit empty", ExitPort, nil, nil},
		{"i8042 reset", i8042Cmd, []byte{0xfe}, []exit{{0, "i8042 reset"}}},
		{"i8042 other command", i8042Cmd, []byte{0xad}, nil},
		{"0xfe on the data port", i8042Data, []byte{0xfe}, nil},
		{"i8042 empty", i8042Cmd, nil, nil},
	} {
		exits = nil
		b.access(tc.port, tc.data, true)
		if len(exits) != len(tc.want) || (len(exits) == 1 && exits[0] != tc.want[0]) {
			t.Errorf("%s: write %x to %#x: exits %+v, want %+v", tc.name, tc.data, tc.port, exits, tc.want)
		}
	}
	// The i8042 status port reads 0: input buffer empty, so Linux's
	// keyboard-controller reset proceeds.
	for _, port := range []uint16{i8042Data, i8042Cmd, ExitPort} {
		data := []byte{0xaa, 0xaa}
		b.access(port, data, false)
		if data[0] != 0 || data[1] != 0 {
			t.Errorf("read port %#x = % x, want 00 00", port, data)
		}
	}
}
