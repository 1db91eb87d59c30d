package frame

import (
	"bytes"
	"testing"
)

// The codec against struct virtio_net_hdr's layout (virtio 1.2 §5.1.6):
// flags, gso_type, then hdr_len, gso_size, csum_start, csum_offset as
// little-endian u16s; a round trip keeps every field.
func TestOffloadCodec(t *testing.T) {
	o := Offload{Flags: NeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 0x4a, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}
	want := []byte{1, 0x84, 0x4a, 0, 0x94, 0x05, 54, 0, 16, 0}
	b := make([]byte, VnetHdrLen+2)
	b[VnetHdrLen], b[VnetHdrLen+1] = 0xee, 0xee // beyond the header: untouched
	o.Encode(b)
	if !bytes.Equal(b[:VnetHdrLen], want) || b[VnetHdrLen] != 0xee || b[VnetHdrLen+1] != 0xee {
		t.Fatalf("Encode = % x, want % x then ee ee", b, want)
	}
	if got := DecodeOffload(want); got != o {
		t.Fatalf("DecodeOffload = %+v, want %+v", got, o)
	}
}

// A header shorter than VnetHdrLen is a caller's bug: it panics rather
// than read or write out of bounds.
func TestOffloadCodecShort(t *testing.T) {
	for name, f := range map[string]func(){
		"decode": func() { DecodeOffload(make([]byte, VnetHdrLen-1)) },
		"encode": func() { (&Offload{}).Encode(make([]byte, VnetHdrLen-1)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s of %d bytes did not panic", name, VnetHdrLen-1)
				}
			}()
			f()
		}()
	}
}
