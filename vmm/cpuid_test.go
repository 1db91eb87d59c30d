package vmm

import "testing"

// hostCPUID is a synthetic KVM_GET_SUPPORTED_CPUID answer with the leaves
// VCPUCPUID rewrites, filled with host-like values.
func hostCPUID() []CPUIDEntry {
	return []CPUIDEntry{
		{Function: 0, EAX: 0x1f, EBX: 0x756e6547},
		{Function: 1, EAX: 0x806f8, EBX: 0x3f_10_08_00 | 0x55, ECX: 0x7ffafbff, EDX: 0xbfebfbff},
		{Function: 4, Index: 0, EAX: 0xfc004121},
		{Function: 4, Index: 3, EAX: 0xfc03c163},
		{Function: 7, EBX: 0x12345678},
		{Function: 0xb, Index: 0, EAX: 1, EBX: 2, ECX: 0x100, EDX: 0x77},
		{Function: 0xb, Index: 1, EAX: 7, EBX: 96, ECX: 0x201, EDX: 0x77},
		{Function: 0xb, Index: 2, EAX: 0, EBX: 0, ECX: 2, EDX: 0x77},
		{Function: 0x1f, Index: 1, EAX: 7, EBX: 96, ECX: 0x201, EDX: 0x77},
		{Function: 0x80000008, EAX: 0x3030, ECX: 0x0000705f},
		{Function: 0x8000001e, EAX: 0x77, EBX: 0x10f, ECX: 0x303},
	}
}

func findCPUID(t *testing.T, es []CPUIDEntry, fn, index uint32) CPUIDEntry {
	t.Helper()
	for _, e := range es {
		if e.Function == fn && e.Index == index {
			return e
		}
	}
	t.Fatalf("no CPUID leaf %#x.%d", fn, index)
	return CPUIDEntry{}
}

func TestVCPUCPUID(t *testing.T) {
	host := hostCPUID()
	orig := hostCPUID()
	for _, tc := range []struct{ id, n int }{{0, 1}, {0, 2}, {1, 2}, {3, 4}, {5, 8}, {31, 32}} {
		out := VCPUCPUID(host, tc.id, tc.n)
		if len(out) != len(host) {
			t.Fatalf("VCPUCPUID(%d, %d) has %d entries, want %d", tc.id, tc.n, len(out), len(host))
		}
		l1 := findCPUID(t, out, 1, 0)
		for _, f := range []struct {
			name      string
			got, want uint32
		}{
			{"1:EBX[31:24] APIC ID", l1.EBX >> 24, uint32(tc.id)},
			{"1:EBX[23:16] logical CPUs", l1.EBX >> 16 & 0xff, uint32(tc.n)},
			{"1:EBX[15:0] kept", l1.EBX & 0xffff, 0x0855},
			{"1:ECX hypervisor", l1.ECX & cpuid1ECXHypervisor, cpuid1ECXHypervisor},
			{"1:ECX rest kept", l1.ECX &^ cpuid1ECXHypervisor, 0x7ffafbff},
			{"1:EAX kept", l1.EAX, 0x806f8},
			{"0xb.0 EDX x2APIC ID", findCPUID(t, out, 0xb, 0).EDX, uint32(tc.id)},
			{"0xb.1 EDX x2APIC ID", findCPUID(t, out, 0xb, 1).EDX, uint32(tc.id)},
			{"0xb.0 EBX threads", findCPUID(t, out, 0xb, 0).EBX, 1},
			{"0xb.0 ECX level type SMT", findCPUID(t, out, 0xb, 0).ECX, 0x100},
			{"0xb.1 EBX cores", findCPUID(t, out, 0xb, 1).EBX, uint32(tc.n)},
			{"0xb.1 ECX level type core", findCPUID(t, out, 0xb, 1).ECX, 0x201},
			{"0xb.1 EAX shift", findCPUID(t, out, 0xb, 1).EAX, uint32(bitsFor(tc.n))},
			{"0xb.2 ECX invalid level", findCPUID(t, out, 0xb, 2).ECX, 2},
			{"0x1f.1 EBX cores", findCPUID(t, out, 0x1f, 1).EBX, uint32(tc.n)},
			{"4.0 EAX[31:26] cores-1", findCPUID(t, out, 4, 0).EAX >> 26, uint32(tc.n - 1)},
			{"4.3 EAX[25:14] threads sharing-1", findCPUID(t, out, 4, 3).EAX >> 14 & 0xfff, 0},
			{"4.3 EAX[13:0] kept", findCPUID(t, out, 4, 3).EAX & 0x3fff, 0x0163},
			{"0x80000008 ECX[7:0] NC", findCPUID(t, out, 0x80000008, 0).ECX & 0xff, uint32(tc.n - 1)},
			{"0x80000008 ECX[15:12] ApicIdSize", findCPUID(t, out, 0x80000008, 0).ECX >> 12 & 0xf, uint32(bitsFor(tc.n))},
			{"0x80000008 EAX kept", findCPUID(t, out, 0x80000008, 0).EAX, 0x3030},
			{"0x8000001e EAX ext APIC ID", findCPUID(t, out, 0x8000001e, 0).EAX, uint32(tc.id)},
			{"0x8000001e EBX core ID", findCPUID(t, out, 0x8000001e, 0).EBX, uint32(tc.id)},
			{"7 EBX kept", findCPUID(t, out, 7, 0).EBX, 0x12345678},
		} {
			if f.got != f.want {
				t.Errorf("VCPUCPUID(id %d, n %d) %s = %#x, want %#x", tc.id, tc.n, f.name, f.got, f.want)
			}
		}
		if htt := l1.EDX&cpuid1EDXHTT != 0; htt != (tc.n > 1) {
			t.Errorf("VCPUCPUID(id %d, n %d) 1:EDX HTT = %v, want %v", tc.id, tc.n, htt, tc.n > 1)
		}
		if got, want := l1.EDX&^cpuid1EDXHTT, orig[1].EDX&^cpuid1EDXHTT; got != want {
			t.Errorf("VCPUCPUID(id %d, n %d) 1:EDX other bits = %#x, want %#x", tc.id, tc.n, got, want)
		}
	}
	// The supported list is not modified.
	for i := range host {
		if host[i] != orig[i] {
			t.Errorf("VCPUCPUID modified its input: entry %d = %+v, want %+v", i, host[i], orig[i])
		}
	}
	if out := VCPUCPUID(nil, 0, 1); len(out) != 0 {
		t.Errorf("VCPUCPUID(nil) = %+v, want empty", out)
	}
}

func TestCPUIDBitsFor(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{0, 0}, {1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {8, 3}, {9, 4}, {32, 5}, {33, 6}} {
		if got := bitsFor(tc.n); got != tc.want {
			t.Errorf("bitsFor(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}
