package vmm

import (
	"bytes"
	"testing"
)

func TestAMLPkgLength(t *testing.T) {
	for _, c := range []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3f}},                 // 63 with itself: still one byte
		{63, []byte{0x41, 0x04}},           // 65 = 0x41: two bytes, low nibble 1, then 0x04
		{0x0ffd, []byte{0x4f, 0xff}},       // 0xfff
		{0x0ffe, []byte{0x81, 0x00, 0x01}}, // 0x1001 needs three bytes
	} {
		got, err := amlPkgLength(c.body)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("amlPkgLength(%d) = % x, %v; want % x", c.body, got, err, c.want)
		}
	}
	if _, err := amlPkgLength(1 << 28); err == nil {
		t.Error("amlPkgLength(2^28) did not fail")
	}
}

func TestAMLEISAID(t *testing.T) {
	// ASL EisaId("PNP0A03") is 0x030AD041; as a DWordConst, little-endian.
	got, err := amlEISAID("PNP0A03")
	if want := []byte{0x0c, 0x41, 0xd0, 0x0a, 0x03}; err != nil || !bytes.Equal(got, want) {
		t.Errorf("amlEISAID(PNP0A03) = % x, %v; want % x", got, err, want)
	}
	for _, bad := range []string{"", "PNP0A0", "pnp0A03", "PNP0A0G"} {
		if _, err := amlEISAID(bad); err == nil {
			t.Errorf("amlEISAID(%q) did not fail", bad)
		}
	}
}

func TestAMLInt(t *testing.T) {
	for _, c := range []struct {
		v    uint32
		want []byte
	}{
		{0, []byte{0x00}}, {1, []byte{0x01}}, {2, []byte{0x0a, 2}},
		{0x1234, []byte{0x0b, 0x34, 0x12}}, {0x12345678, []byte{0x0c, 0x78, 0x56, 0x34, 0x12}},
	} {
		if got := amlInt(c.v); !bytes.Equal(got, c.want) {
			t.Errorf("amlInt(%#x) = % x, want % x", c.v, got, c.want)
		}
	}
}

func TestAMLNames(t *testing.T) {
	for _, bad := range []string{"PCI", "PCI00", "0PCI", "pci0", "PC-0"} {
		if _, err := amlNameSeg(bad); err == nil {
			t.Errorf("amlNameSeg(%q) did not fail", bad)
		}
	}
	got, err := amlName("_UID", amlInt(0))
	if want := []byte{0x08, '_', 'U', 'I', 'D', 0x00}; err != nil || !bytes.Equal(got, want) {
		t.Errorf("Name(_UID, 0) = % x, %v", got, err)
	}
}

// TestPCIHostBridgeAML checks the structure of Scope(\_SB_){Device(PCI0)}
// by decoding it with the same grammar: each package's length must match
// the bytes that follow, and the resource template must end with an End Tag
// whose descriptors are well formed.
func TestPCIHostBridgeAML(t *testing.T) {
	b, err := pciHostBridgeAML()
	if err != nil {
		t.Fatal(err)
	}
	pkg := func(b []byte) (body []byte, rest []byte) {
		t.Helper()
		lead := b[0]
		n := int(lead >> 6)
		l := int(lead & 0x3f)
		if n > 0 {
			l = int(lead & 0x0f)
			for i := 0; i < n; i++ {
				l |= int(b[1+i]) << (4 + 8*i)
			}
		}
		if l > len(b) {
			t.Fatalf("package length %d > %d bytes", l, len(b))
		}
		return b[1+n : l], b[l:]
	}
	if b[0] != amlScopeOp {
		t.Fatalf("first byte %#x, want ScopeOp", b[0])
	}
	body, rest := pkg(b[1:])
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the scope", len(rest))
	}
	if string(body[:5]) != `\_SB_` {
		t.Fatalf("scope name %q", body[:5])
	}
	dev := body[5:]
	if dev[0] != amlExtOpPrefix || dev[1] != amlDeviceOp {
		t.Fatalf("no DeviceOp: % x", dev[:2])
	}
	dbody, rest := pkg(dev[2:])
	if len(rest) != 0 || string(dbody[:4]) != "PCI0" {
		t.Fatalf("device name %q, %d trailing bytes", dbody[:4], len(rest))
	}
	for _, name := range []string{"_HID", "_UID", "_SEG", "_BBN", "_CRS"} {
		if !bytes.Contains(dbody, append([]byte{amlNameOp}, name...)) {
			t.Errorf("PCI0 has no %s", name)
		}
	}
	i := bytes.Index(dbody, []byte{amlNameOp, '_', 'C', 'R', 'S', amlBufferOp})
	if i < 0 {
		t.Fatal("_CRS is not a buffer")
	}
	buf, _ := pkg(dbody[i+6:])
	var size int
	switch buf[0] {
	case amlBytePrefix:
		size, buf = int(buf[1]), buf[2:]
	case amlWordPrefix:
		size, buf = int(buf[1])|int(buf[2])<<8, buf[3:]
	default:
		t.Fatalf("buffer size opcode %#x", buf[0])
	}
	if size != len(buf) {
		t.Fatalf("buffer size %d, %d bytes", size, len(buf))
	}
	// Walk the resource descriptors (ACPI 6.4 §6.4.1 small, §6.4.3 large).
	var kinds []byte
	for len(buf) > 0 {
		tag := buf[0]
		var n int
		if tag&0x80 != 0 {
			n = 3 + int(buf[1]) | int(buf[2])<<8
		} else {
			n = 1 + int(tag&7)
		}
		if n > len(buf) {
			t.Fatalf("descriptor %#x overruns the buffer", tag)
		}
		kinds = append(kinds, tag)
		if tag == rdEndTag {
			if n != len(buf) {
				t.Errorf("%d bytes after the End Tag", len(buf)-n)
			}
			break
		}
		buf = buf[n:]
	}
	want := []byte{rdWordAddress, rdIOPort, rdWordAddress, rdWordAddress, rdDWordAddress, rdEndTag}
	if !bytes.Equal(kinds, want) {
		t.Errorf("descriptors % x, want % x", kinds, want)
	}
}
