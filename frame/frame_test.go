package frame

import (
	"bytes"
	"os"
	"runtime/debug"
	"testing"

	"golang.org/x/sys/unix"
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

// None is true of the zero Offload only: any one byte of a decoded
// header set, at any bit, makes it false.
func TestOffloadNone(t *testing.T) {
	if o := (Offload{}); !o.None() {
		t.Fatal("the zero Offload is not None")
	}
	for i := range VnetHdrLen {
		for bit := range 8 {
			b := make([]byte, VnetHdrLen)
			b[i] = 1 << bit
			if o := DecodeOffload(b); o.None() {
				t.Errorf("byte %d bit %d set: %+v is None", i, bit, o)
			}
		}
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

// ReadTail copies a tail, and tells a fault on the tail (its memory
// truncated under it: false) from a fault anywhere else (a panic, for the
// caller's own guard).
func TestReadTail(t *testing.T) {
	pg := os.Getpagesize()
	fd, err := unix.MemfdCreate("tail", 0)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, int64(3*pg)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, 3*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	for i := range m[:pg] {
		m[i] = byte(i)
	}
	dst := make([]byte, pg)
	if !ReadTail(dst, m[:pg]) || !bytes.Equal(dst, m[:pg]) {
		t.Fatal("ReadTail of mapped memory failed or copied wrong bytes")
	}
	if err := unix.Ftruncate(fd, int64(pg)); err != nil {
		t.Fatal(err)
	}
	if ReadTail(dst[:100], m[pg+10:pg+110]) {
		t.Fatal("ReadTail of truncated memory reported success")
	}
	// The tail spans the cut: the fault is on its second part, still its own.
	if ReadTail(dst[:200], m[pg-100:pg+100]) {
		t.Fatal("ReadTail across the truncation reported success")
	}
	// Writing into truncated memory is not the tail's fault: it panics on.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("a fault on the destination did not panic")
			}
		}()
		prev := debug.SetPanicOnFault(true)
		defer debug.SetPanicOnFault(prev)
		ReadTail(m[2*pg:2*pg+100], dst[:100])
	}()
}
