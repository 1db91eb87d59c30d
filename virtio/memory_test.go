package virtio_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hvnet/hvnet/virtio"
)

func twoRegions(t *testing.T) (*virtio.Memory, []byte, []byte) {
	t.Helper()
	a, b := make([]byte, 0x1000), make([]byte, 0x2000)
	m, err := virtio.NewMemory(
		virtio.Region{GPA: 0x3000, Data: b}, // given out of order on purpose
		virtio.Region{GPA: 0x2000, Data: a},
	)
	if err != nil {
		t.Fatal(err)
	}
	return m, a, b
}

func TestMemoryAccess(t *testing.T) {
	m, a, b := twoRegions(t)
	// [0x2000,0x3000) is a, [0x3000,0x5000) is b: adjacent.
	if err := m.Write(0x2ffe, []byte{1, 2, 3, 4}); err != nil {
		t.Fatalf("Write spanning regions = %v, want nil", err)
	}
	if a[0xffe] != 1 || a[0xfff] != 2 || b[0] != 3 || b[1] != 4 {
		t.Fatalf("spanning write landed wrong: %v %v", a[0xffe:], b[:2])
	}
	got := make([]byte, 4)
	if err := m.Read(0x2ffe, got); err != nil || got[3] != 4 {
		t.Fatalf("Read spanning = %v %v", got, err)
	}
	if _, err := m.Slice(0x2ffe, 4); err == nil {
		t.Fatal("Slice across regions succeeded, want error")
	}
	s, err := m.Slice(0x3000, 2)
	if err != nil || s[1] != 4 || cap(s) != 2 {
		t.Fatalf("Slice = %v cap %d, %v", s, cap(s), err)
	}
	if err := m.WriteU32(0x4ffc, 0xdeadbeef); err != nil {
		t.Fatal(err)
	}
	if v, err := m.ReadU32(0x4ffc); v != 0xdeadbeef || err != nil {
		t.Fatalf("ReadU32 = %#x, %v", v, err)
	}
	if v, err := m.ReadU16(0x4ffc); v != 0xbeef || err != nil {
		t.Fatalf("ReadU16 = %#x, %v", v, err)
	}
}

func TestMemoryOutOfRange(t *testing.T) {
	m, _, _ := twoRegions(t)
	for _, tc := range []struct {
		name string
		gpa  uint64
		n    uint64
	}{
		{"below", 0x1fff, 1},
		{"past end", 0x4fff, 2},
		{"gap start", 0x5000, 1},
		{"wraps", ^uint64(0) - 1, 4},
		{"huge", 0x2000, 1 << 63},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ae *virtio.AddrError
			if err := m.Check(tc.gpa, tc.n); !errors.As(err, &ae) {
				t.Errorf("Check(%#x, %#x) = %v, want *AddrError", tc.gpa, tc.n, err)
			}
			if _, err := m.Slice(tc.gpa, tc.n); !errors.As(err, &ae) {
				t.Errorf("Slice(%#x, %#x) = %v, want *AddrError", tc.gpa, tc.n, err)
			}
			if tc.n < 16 {
				buf := make([]byte, tc.n)
				if err := m.Read(tc.gpa, buf); !errors.As(err, &ae) {
					t.Errorf("Read = %v, want *AddrError", err)
				}
				if err := m.Write(tc.gpa, buf); !errors.As(err, &ae) {
					t.Errorf("Write = %v, want *AddrError", err)
				}
			}
		})
	}
	if _, err := m.ReadU64(0x4ffc); err == nil {
		t.Error("ReadU64 past the end succeeded")
	}
}

func TestNewMemoryRejects(t *testing.T) {
	buf := make([]byte, 0x1000)
	for _, tc := range []struct {
		name string
		rs   []virtio.Region
	}{
		{"empty", []virtio.Region{{GPA: 0, Data: nil}}},
		{"overlap", []virtio.Region{{GPA: 0, Data: buf}, {GPA: 0x800, Data: buf}}},
		{"wraps", []virtio.Region{{GPA: ^uint64(0) - 0x10, Data: buf}}},
		// The first ends at 2^64 exactly: its end wraps to 0 (an audit
		// found the overlap accepted).
		{"overlap at the top", []virtio.Region{{GPA: ^uint64(0) - 0xfff, Data: buf}, {GPA: ^uint64(0) - 0x7ff, Data: buf[:0x100]}}},
	} {
		if _, err := virtio.NewMemory(tc.rs...); err == nil {
			t.Errorf("NewMemory(%s) succeeded, want error", tc.name)
		}
	}
	// Adjacent regions, the last ending at 2^64: accepted.
	if _, err := virtio.NewMemory(virtio.Region{GPA: ^uint64(0) - 0x1fff, Data: buf}, virtio.Region{GPA: ^uint64(0) - 0xfff, Data: buf}); err != nil {
		t.Errorf("adjacent regions up to 2^64: %v", err)
	}
}

func TestDirtyLog(t *testing.T) {
	buf := make([]byte, 16*virtio.PageSize)
	m, err := virtio.NewMemory(virtio.Region{GPA: 0x10000, Data: buf})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Write(0x10000, []byte{1}); err != nil { // no log: fine
		t.Fatal(err)
	}
	log := virtio.NewDirtyLog(64)
	lm := m.WithLog(log)
	if err := lm.Write(0x10000+2*virtio.PageSize-1, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	for p := uint64(0); p < 64; p++ {
		want := p == 17 || p == 18
		if got := log.Dirty(p); got != want {
			t.Errorf("Dirty(%d) = %v, want %v", p, got, want)
		}
	}
	log.Mark(1<<40, 1) // beyond the log: ignored

	shared := make([]byte, 16) // heap slices of 16 bytes are 8-byte aligned
	sl, err := virtio.NewDirtyLogShared(shared)
	if err != nil {
		t.Fatal(err)
	}
	sl.Mark(9*virtio.PageSize, 1)
	if shared[1] != 0x02 {
		t.Errorf("shared log byte 1 = %#x, want 0x02 (page 9 = byte 1 bit 1)", shared[1])
	}
	if _, err := virtio.NewDirtyLogShared(shared[1:9]); err == nil {
		t.Error("NewDirtyLogShared(misaligned) succeeded")
	}
}

// WriteParts writes its two parts back to back, in one region or across
// two adjacent ones, marks exactly the pages written, and writes nothing
// when the range leaves guest memory.
func TestWriteParts(t *testing.T) {
	const page = virtio.PageSize
	lo, hi := make([]byte, 4*page), make([]byte, 4*page)
	m, err := virtio.NewMemory(virtio.Region{GPA: 0, Data: lo}, virtio.Region{GPA: 4 * page, Data: hi})
	if err != nil {
		t.Fatal(err)
	}
	head, tail := bytes.Repeat([]byte{0xaa}, 12), bytes.Repeat([]byte{0xbb}, 3000)
	for _, gpa := range []uint64{page - 6, 4*page - 1000} { // one region; across the two
		log := virtio.NewDirtyLog(8)
		if err := m.WithLog(log).WriteParts(gpa, head, tail); err != nil {
			t.Fatalf("WriteParts(%#x) = %v", gpa, err)
		}
		got := make([]byte, len(head)+len(tail))
		if err := m.Read(gpa, got); err != nil || !bytes.Equal(got, append(append([]byte(nil), head...), tail...)) {
			t.Errorf("at %#x: read back differs (%v)", gpa, err)
		}
		end := gpa + uint64(len(got)) - 1
		for p := uint64(0); p < 8; p++ {
			if want := p >= gpa/page && p <= end/page; log.Dirty(p) != want {
				t.Errorf("at %#x: Dirty(%d) = %v, want %v", gpa, p, log.Dirty(p), want)
			}
		}
	}
	log := virtio.NewDirtyLog(8)
	before := append([]byte(nil), hi...)
	if err := m.WithLog(log).WriteParts(8*page-10, head, tail); err == nil {
		t.Fatal("WriteParts past the end of guest memory succeeded")
	}
	if !bytes.Equal(hi, before) || log.Dirty(7) {
		t.Error("a failed WriteParts wrote or marked something")
	}
}
