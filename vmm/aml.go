package vmm

import "fmt"

// A tiny AML encoder (ACPI 6.4 §20.2, "AML Grammar Definition"): just what
// the DSDT needs to describe the PCI host bridge and the S5 sleep state.

// AML opcodes and prefixes (§20.2.3, §20.2.5).
const (
	amlZeroOp      = 0x00
	amlOneOp       = 0x01
	amlNameOp      = 0x08
	amlBytePrefix  = 0x0a
	amlWordPrefix  = 0x0b
	amlDWordPrefix = 0x0c
	amlScopeOp     = 0x10
	amlBufferOp    = 0x11
	amlPackageOp   = 0x12
	amlExtOpPrefix = 0x5b
	amlDeviceOp    = 0x82 // after amlExtOpPrefix
	amlRootChar    = '\\'
)

// amlPkgLength encodes a PkgLength (§20.2.4) for a body of n bytes: the
// encoded length counts its own bytes too. One byte holds up to 63; longer
// lengths take 1-3 follow bytes, the lead byte keeping the low nibble.
func amlPkgLength(n int) ([]byte, error) {
	for extra := 0; extra <= 3; extra++ {
		total := n + 1 + extra
		switch {
		case extra == 0 && total < 0x40:
			return []byte{byte(total)}, nil
		case extra > 0 && total < 1<<(4+8*extra):
			b := []byte{byte(extra<<6) | byte(total&0x0f)}
			for i := 0; i < extra; i++ {
				b = append(b, byte(total>>(4+8*i)))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("aml: package of %d bytes is too long", n)
}

// amlPkg wraps body as op PkgLength body.
func amlPkg(op []byte, body []byte) ([]byte, error) {
	l, err := amlPkgLength(len(body))
	if err != nil {
		return nil, err
	}
	out := append(append(append([]byte{}, op...), l...), body...)
	return out, nil
}

// amlNameSeg checks a four-character NameSeg (§20.2.2: lead char A-Z or
// '_', then A-Z, 0-9 or '_').
func amlNameSeg(s string) ([]byte, error) {
	if len(s) != 4 {
		return nil, fmt.Errorf("aml: name %q is not 4 characters", s)
	}
	for i := 0; i < 4; i++ {
		c := s[i]
		ok := c == '_' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return nil, fmt.Errorf("aml: bad character %q in name %q", c, s)
		}
	}
	return []byte(s), nil
}

// amlInt encodes an integer constant with the shortest form (§20.2.3).
func amlInt(v uint32) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xff:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xffff:
		return []byte{amlWordPrefix, byte(v), byte(v >> 8)}
	}
	return []byte{amlDWordPrefix, byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

// amlName encodes Name(name, data).
func amlName(name string, data []byte) ([]byte, error) {
	n, err := amlNameSeg(name)
	if err != nil {
		return nil, err
	}
	return append(append([]byte{amlNameOp}, n...), data...), nil
}

// amlEISAID compresses a PNP ID such as "PNP0A03" (three letters, four hex
// digits) into the 32-bit EISA form, as ASL's EisaId() does, and returns it
// as a DWordConst.
func amlEISAID(id string) ([]byte, error) {
	if len(id) != 7 {
		return nil, fmt.Errorf("aml: EISA ID %q: want 3 letters and 4 hex digits", id)
	}
	var v uint32
	for i := 0; i < 3; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return nil, fmt.Errorf("aml: EISA ID %q: bad letter %q", id, c)
		}
		v |= uint32(c-'@') << (26 - 5*i)
	}
	for i := 3; i < 7; i++ {
		var d byte
		switch c := id[i]; {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return nil, fmt.Errorf("aml: EISA ID %q: bad hex digit %q", id, c)
		}
		v |= uint32(d) << (4 * (6 - i))
	}
	// Stored big-endian: the bytes in memory read as the compressed ID.
	v = v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24
	return []byte{amlDWordPrefix, byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}, nil
}

// amlBuffer encodes Buffer() { data }.
func amlBuffer(data []byte) ([]byte, error) {
	return amlPkg([]byte{amlBufferOp}, append(amlInt(uint32(len(data))), data...))
}

// amlDevice encodes Device(name) { body }.
func amlDevice(name string, body []byte) ([]byte, error) {
	n, err := amlNameSeg(name)
	if err != nil {
		return nil, err
	}
	return amlPkg([]byte{amlExtOpPrefix, amlDeviceOp}, append(n, body...))
}

// amlScope encodes Scope(\name) { body } for a root-relative name.
func amlScope(name string, body []byte) ([]byte, error) {
	n, err := amlNameSeg(name)
	if err != nil {
		return nil, err
	}
	return amlPkg([]byte{amlScopeOp}, append(append([]byte{amlRootChar}, n...), body...))
}

// Resource descriptors (ACPI 6.4 §6.4), for _CRS buffers.
const (
	rdEndTag        = 0x79 // small item, End Tag, length 1
	rdIOPort        = 0x47 // small item, I/O Port Descriptor, length 7
	rdDWordAddress  = 0x87 // large item, DWord Address Space Descriptor
	rdWordAddress   = 0x88 // large item, Word Address Space Descriptor
	rdSpaceMemory   = 0
	rdSpaceIO       = 1
	rdSpaceBus      = 2
	rdFlagsFixed    = 0x0c // _MIF | _MAF, producer (a bridge's window)
	rdIOEntireRange = 0x03 // _RNG: ISA and non-ISA ranges
	rdMemReadWrite  = 0x01 // _RW, non-cacheable
)

// rdWord is a Word Address Space Descriptor (§6.4.3.5.3) for [min, max].
func rdWord(space, typeFlags byte, min, max uint16) []byte {
	b := []byte{rdWordAddress, 13, 0, space, rdFlagsFixed, typeFlags}
	for _, v := range []uint16{0, min, max, 0, max - min + 1} { // granularity, min, max, translation, length
		b = append(b, byte(v), byte(v>>8))
	}
	return b
}

// rdDWord is a DWord Address Space Descriptor (§6.4.3.5.2) for [min, max].
func rdDWord(space, typeFlags byte, min, max uint32) []byte {
	b := []byte{rdDWordAddress, 23, 0, space, rdFlagsFixed, typeFlags}
	for _, v := range []uint32{0, min, max, 0, max - min + 1} {
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return b
}

// rdIO is an I/O Port Descriptor (§6.4.2.5) with 16-bit decode.
func rdIO(base uint16, length byte) []byte {
	return []byte{rdIOPort, 1, byte(base), byte(base >> 8), byte(base), byte(base >> 8), 1, length}
}

// pciHostBridgeAML describes bus 0's host bridge (PCI Firmware
// Specification 3.2 §4.1.1; ACPI 6.4 §6.1.5 _HID, §6.5.5 _BBN, §6.5.6 _SEG,
// §6.2.2 _CRS). Linux scans PCI only below a PNP0A03 device when ACPI is
// on; its _CRS gives the bus range, the configuration ports and the
// windows BARs may live in: all I/O ports but those, and the 32-bit MMIO
// hole below the IOAPIC.
func pciHostBridgeAML() ([]byte, error) {
	var crs []byte
	crs = append(crs, rdWord(rdSpaceBus, 0, 0, 0)...)
	crs = append(crs, rdIO(pciAddrPort, 8)...)
	crs = append(crs, rdWord(rdSpaceIO, rdIOEntireRange, 0x0000, pciAddrPort-1)...)
	crs = append(crs, rdWord(rdSpaceIO, rdIOEntireRange, pciAddrPort+8, 0xffff)...)
	crs = append(crs, rdDWord(rdSpaceMemory, rdMemReadWrite, mmioHoleStart, ioapicAddr-1)...)
	crs = append(crs, rdEndTag, 0)
	buf, err := amlBuffer(crs)
	if err != nil {
		return nil, err
	}
	hid, err := amlEISAID("PNP0A03")
	if err != nil {
		return nil, err
	}
	var body []byte
	for _, n := range []struct {
		name string
		data []byte
	}{
		{"_HID", hid}, {"_UID", amlInt(0)}, {"_SEG", amlInt(0)}, {"_BBN", amlInt(0)}, {"_CRS", buf},
	} {
		b, err := amlName(n.name, n.data)
		if err != nil {
			return nil, err
		}
		body = append(body, b...)
	}
	dev, err := amlDevice("PCI0", body)
	if err != nil {
		return nil, err
	}
	return amlScope("_SB_", dev)
}
