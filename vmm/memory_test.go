package vmm

import (
	"bytes"
	"testing"
)

func TestNewMemory(t *testing.T) {
	for _, size := range []uint64{0, 1, 1 << 20, 3<<20 + 4096} {
		if m, err := NewMemory(size); err == nil {
			m.Close()
			t.Errorf("NewMemory(%#x) = nil error, want one (not a positive multiple of 2 MiB)", size)
		}
	}
	for _, tc := range []struct {
		size uint64
		want []MemRegion
	}{
		{2 << 20, []MemRegion{{0, 2 << 20, 0}}},
		{3 << 30, []MemRegion{{0, 3 << 30, 0}}},
		{4<<30 + 2<<20, []MemRegion{{0, 3 << 30, 0}, {4 << 30, 1<<30 + 2<<20, 3 << 30}}},
	} {
		m, err := NewMemory(tc.size)
		if err != nil {
			t.Fatalf("NewMemory(%#x) = %v", tc.size, err)
		}
		got := m.Regions()
		if len(got) != len(tc.want) {
			t.Errorf("NewMemory(%#x).Regions() = %+v, want %+v", tc.size, got, tc.want)
		}
		for i := range got {
			if i < len(tc.want) && got[i] != tc.want[i] {
				t.Errorf("NewMemory(%#x).Regions()[%d] = %+v, want %+v", tc.size, i, got[i], tc.want[i])
			}
		}
		if m.Size() != tc.size || m.FD() < 0 {
			t.Errorf("NewMemory(%#x): Size %#x, FD %d", tc.size, m.Size(), m.FD())
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("second Close() = %v, want nil", err)
		}
	}
}

func TestMemorySlice(t *testing.T) {
	m, err := NewMemory(3<<30 + 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		name   string
		gpa, n uint64
		ok     bool
	}{
		{"start", 0, 4096, true},
		{"empty at end of low RAM", 3 << 30, 0, true},
		{"end of low RAM", 3<<30 - 8, 8, true},
		{"across the MMIO hole", 3<<30 - 8, 16, false},
		{"in the MMIO hole", ioapicAddr, 4, false},
		{"high RAM", 4 << 30, 2 << 20, true},
		{"past high RAM", 4<<30 + 2<<20 - 1, 2, false},
		{"far away", 1 << 40, 1, false},
		{"overflow", 1<<64 - 2, 4, false},
		{"huge length", 0, 1<<64 - 1, false},
	} {
		b, err := m.Slice(tc.gpa, tc.n)
		if (err == nil) != tc.ok {
			t.Errorf("Slice(%s: %#x, %#x) = %v, want ok %v", tc.name, tc.gpa, tc.n, err, tc.ok)
		}
		if err == nil && (uint64(len(b)) != tc.n || uint64(cap(b)) != tc.n) {
			t.Errorf("Slice(%#x, %#x): len %d cap %d, want %d", tc.gpa, tc.n, len(b), cap(b), tc.n)
		}
	}
	// High RAM lives after low RAM in the file: a write at 4 GiB shows
	// up at offset 3 GiB of the mapping.
	if err := m.Write(4<<30, []byte("high")); err != nil {
		t.Fatalf("Write(4 GiB) = %v", err)
	}
	hi := m.Host(m.Regions()[1])
	if !bytes.Equal(hi[:4], []byte("high")) {
		t.Errorf("host mapping of high RAM starts %q, want \"high\"", hi[:4])
	}
	if err := m.Write(3<<30-2, []byte("xyz")); err == nil {
		t.Errorf("Write across the MMIO hole = nil, want an error")
	}
}
