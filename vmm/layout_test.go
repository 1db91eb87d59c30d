package vmm

import (
	"reflect"
	"sort"
	"testing"
)

func TestE820Map(t *testing.T) {
	const legacy = kernelAddr - mptableAddr // MP table KiB + VGA/BIOS window: backed, not RAM
	for _, tc := range []struct {
		name      string
		mem       uint64
		low, high uint64
	}{
		{"64 MiB", 64 << 20, 64 << 20, 0},
		{"512 MiB", 512 << 20, 512 << 20, 0},
		{"3 GiB - 2 MiB", 3<<30 - 2<<20, 3<<30 - 2<<20, 0},
		{"3 GiB", 3 << 30, 3 << 30, 0},
		{"3 GiB + 2 MiB", 3<<30 + 2<<20, 3 << 30, 2 << 20},
		{"4 GiB", 4 << 30, 3 << 30, 1 << 30},
		{"64 GiB", 64 << 30, 3 << 30, 61 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			low, high := ramRegions(tc.mem)
			if low != tc.low || high != tc.high {
				t.Errorf("ramRegions(%#x) = %#x, %#x; want %#x, %#x", tc.mem, low, high, tc.low, tc.high)
			}
			if low+high != tc.mem {
				t.Errorf("ramRegions(%#x): %#x + %#x != requested", tc.mem, low, high)
			}

			m := e820Map(tc.mem)
			if !sort.SliceIsSorted(m, func(i, j int) bool { return m[i].Addr < m[j].Addr }) {
				t.Errorf("e820Map(%#x) = %+v: not sorted", tc.mem, m)
			}
			var ram []E820Entry
			var total uint64
			mptReserved := false
			for i, e := range m {
				if e.Size == 0 {
					t.Errorf("e820[%d] = %+v: empty", i, e)
				}
				if i > 0 && e.Addr < m[i-1].Addr+m[i-1].Size {
					t.Errorf("e820[%d] = %+v overlaps e820[%d] = %+v", i, e, i-1, m[i-1])
				}
				end := e.Addr + e.Size
				if e.Type == e820Reserved && e.Addr <= mptableAddr && end >= ebdaEnd {
					mptReserved = true
				}
				if e.Type != e820RAM {
					continue
				}
				ram = append(ram, e)
				total += e.Size
				if e.Addr < kernelAddr && end > mptableAddr {
					t.Errorf("e820[%d] = %+v: RAM over the MP table / legacy window %#x-%#x", i, e, mptableAddr, kernelAddr)
				}
				if e.Addr < mmioHoleEnd && end > mmioHoleStart {
					t.Errorf("e820[%d] = %+v: RAM over the MMIO hole", i, e)
				}
			}
			if !mptReserved {
				t.Errorf("e820Map(%#x) = %+v: MP table %#x-%#x not reserved", tc.mem, m, mptableAddr, ebdaEnd)
			}
			// Every byte of guest RAM is reported as RAM except the
			// legacy window 0x9fc00-0x100000 (MP table, VGA, BIOS).
			if want := tc.mem - legacy; total != want {
				t.Errorf("e820Map(%#x) RAM = %#x, want %#x (requested less the %#x-%#x window)", tc.mem, total, want, mptableAddr, kernelAddr)
			}
			want := []E820Entry{{0, mptableAddr, e820RAM}, {kernelAddr, low - kernelAddr, e820RAM}}
			if high > 0 {
				want = append(want, E820Entry{mmioHoleEnd, high, e820RAM})
			}
			if !reflect.DeepEqual(ram, want) {
				t.Errorf("e820Map(%#x) RAM entries = %+v, want %+v", tc.mem, ram, want)
			}
		})
	}
}

// walk translates a virtual address like the MMU in IA-32e mode with 4-level
// paging (Intel SDM vol. 3 §4.5), reading tables from the guest-physical
// page map mem. It returns the physical address and the page size.
func walk(t *testing.T, mem map[uint64][]byte, va uint64) (pa, size uint64, ok bool) {
	t.Helper()
	const present, rw, ps = 1, 2, 0x80
	const addrMask = 0x000ffffffffff000
	entry := func(table, index uint64) (uint64, bool) {
		page, found := mem[table]
		if !found {
			t.Errorf("walk(%#x): table at %#x is not one of the page-table pages", va, table)
			return 0, false
		}
		e := getU64(page[index*8:])
		if e&present == 0 {
			return 0, false
		}
		if e&rw == 0 {
			t.Errorf("walk(%#x): entry %#x at %#x[%d] is read-only", va, e, table, index)
		}
		return e, true
	}
	pml4e, ok := entry(pml4Addr, va>>39&0x1ff)
	if !ok {
		return 0, 0, false
	}
	if pml4e&ps != 0 {
		t.Errorf("walk(%#x): PML4 entry %#x has PS set (reserved)", va, pml4e)
	}
	pdpte, ok := entry(pml4e&addrMask, va>>30&0x1ff)
	if !ok {
		return 0, 0, false
	}
	if pdpte&ps != 0 {
		return pdpte&0x000fffffc0000000 | va&(1<<30-1), 1 << 30, true
	}
	pde, ok := entry(pdpte&addrMask, va>>21&0x1ff)
	if !ok {
		return 0, 0, false
	}
	if pde&ps == 0 {
		t.Errorf("walk(%#x): PDE %#x points at a page table, want a 2 MiB page", va, pde)
		return 0, 0, false
	}
	return pde&0x000fffffffe00000 | va&(1<<21-1), 2 << 20, true
}

func TestPageTables(t *testing.T) {
	pml4, pdpt, pd := pageTables()
	if len(pml4) != 4096 || len(pdpt) != 4096 || len(pd) != 4*4096 {
		t.Fatalf("pageTables() sizes %d, %d, %d; want 4096, 4096, 16384", len(pml4), len(pdpt), len(pd))
	}
	if pml4Addr+len(pml4) > pdptAddr || pdptAddr+len(pdpt) > pdAddr || pdAddr+len(pd) > cmdlineAddr {
		t.Fatalf("page tables overlap each other or the command line")
	}
	mem := map[uint64][]byte{pml4Addr: pml4, pdptAddr: pdpt}
	for i := 0; i < 4; i++ {
		mem[uint64(pdAddr+i*4096)] = pd[i*4096 : (i+1)*4096]
	}
	for _, va := range []uint64{
		0, 0x7000, 0x9000, 0x100000, 0x100200, 0x1fffff, 0x200000,
		0x3fffffff, 0x40000000, 0xbfffffff, 0xc0000000, 0xfec00000, 0xffffffff,
	} {
		pa, size, ok := walk(t, mem, va)
		if !ok || pa != va || size != 2<<20 {
			t.Errorf("walk(%#x) = %#x, %#x, %v; want %#x, 2 MiB, true", va, pa, size, ok, va)
		}
	}
	for _, va := range []uint64{0x100000000, 0x8000000000, 0xffffffff80000000} {
		if pa, _, ok := walk(t, mem, va); ok {
			t.Errorf("walk(%#x) = %#x, true; want not mapped", va, pa)
		}
	}
}

func TestGDT(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		flags                  uint16
		base, limit            uint32
		want                   Segment
		wantLimitAfterGranular uint32
	}{
		{"code64", 0xa09b, 0, 0xfffff, Segment{Type: 0xb, S: 1, Present: 1, L: 1, DB: 0, G: 1, Selector: 0x10}, 0xffffffff},
		{"data", 0xc093, 0, 0xfffff, Segment{Type: 0x3, S: 1, Present: 1, L: 0, DB: 1, G: 1, Selector: 0x10}, 0xffffffff},
		{"tss", 0x808b, 0, 0xfffff, Segment{Type: 0xb, S: 0, Present: 1, G: 1, Selector: 0x10}, 0xffffffff},
		{"byte granular", 0x0093, 0x12345678, 0xabcde, Segment{Base: 0x12345678, Type: 0x3, S: 1, Present: 1, Selector: 0x10}, 0xabcde},
		{"ring 3 avl", 0x10f3, 0xff000000, 0x1, Segment{Base: 0xff000000, Type: 0x3, S: 1, DPL: 3, Present: 1, AVL: 1, Selector: 0x10}, 0x1},
		{"not present", 0xc013, 0, 0xfffff, Segment{Type: 0x3, S: 1, DB: 1, G: 1, Unusable: 1, Selector: 0x10}, 0xffffffff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := gdtEntry(tc.flags, tc.base, tc.limit)
			want := tc.want
			want.Limit = tc.wantLimitAfterGranular
			if got := segmentFromGDT(e, 2); got != want {
				t.Errorf("segmentFromGDT(gdtEntry(%#x, %#x, %#x) = %#016x) = %+v, want %+v", tc.flags, tc.base, tc.limit, e, got, want)
			}
		})
	}
	// Known encodings (as in Firecracker's and the kernel's boot GDT).
	for _, tc := range []struct {
		flags uint16
		want  uint64
	}{
		{0xa09b, 0x00af9b000000ffff},
		{0xc093, 0x00cf93000000ffff},
		{0x808b, 0x008f8b000000ffff},
	} {
		if got := gdtEntry(tc.flags, 0, 0xfffff); got != tc.want {
			t.Errorf("gdtEntry(%#x, 0, 0xfffff) = %#016x, want %#016x", tc.flags, got, tc.want)
		}
	}
	gdt := bootGDT()
	if gdt[0] != 0 {
		t.Errorf("bootGDT()[0] = %#x, want the null descriptor", gdt[0])
	}
	if gdtAddr+8*len(gdt) > idtAddr {
		t.Errorf("GDT of %d entries at %#x-%#x runs into the IDT at %#x: load() zeroes the TSS descriptor", len(gdt), gdtAddr, gdtAddr+8*len(gdt)-1, idtAddr)
	}
}

func TestLongModeSregs(t *testing.T) {
	in := Sregs{CR2: 0x1234, APICBase: 0xfee00900, CR0: 0x60000010}
	s := longModeSregs(in)
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"CR0&PE", s.CR0 & cr0PE, cr0PE},
		{"CR0&PG", s.CR0 & cr0PG, cr0PG},
		{"CR0 CD|NW", s.CR0 & 0x60000000, 0}, // caches on
		{"CR4&PAE", s.CR4 & cr4PAE, cr4PAE},
		{"EFER&LME", s.EFER & eferLME, eferLME},
		{"EFER&LMA", s.EFER & eferLMA, eferLMA},
		{"CR3", s.CR3, pml4Addr},
		{"CR2 (kept)", s.CR2, 0x1234},
		{"APICBase (kept)", s.APICBase, 0xfee00900},
		{"GDT.Base", s.GDT.Base, gdtAddr},
		{"GDT.Limit", uint64(s.GDT.Limit), uint64(8*len(bootGDT()) - 1)},
		{"IDT.Base", s.IDT.Base, idtAddr},
		{"CS.Selector", uint64(s.CS.Selector), 0x10},
		{"CS.L", uint64(s.CS.L), 1},
		{"CS.DB", uint64(s.CS.DB), 0},
		{"CS.G", uint64(s.CS.G), 1},
		{"CS.Limit", uint64(s.CS.Limit), 0xffffffff},
		{"CS.Type", uint64(s.CS.Type), 0xb},
		{"TR.Selector", uint64(s.TR.Selector), 0x20},
		{"TR.Present", uint64(s.TR.Present), 1},
	} {
		if f.got != f.want {
			t.Errorf("longModeSregs() %s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
	for name, seg := range map[string]Segment{"DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS} {
		if seg.Selector != 0x18 || seg.DB != 1 || seg.L != 0 || seg.Type != 0x3 || seg.Present != 1 || seg.Limit != 0xffffffff {
			t.Errorf("longModeSregs() %s = %+v, want flat data segment 0x18", name, seg)
		}
	}

	r := bootRegs(kernelAddr + 0x200)
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"RIP", r.RIP, 0x100200},
		{"RSI", r.RSI, 0x7000},
		{"RFLAGS", r.RFLAGS, 2},
		{"RSP", r.RSP, bootStack},
	} {
		if f.got != f.want {
			t.Errorf("bootRegs(kernelAddr + 0x200) %s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
	if r.RSP <= zeroPageAddr+zeroPageSize || r.RSP > pml4Addr {
		t.Errorf("bootRegs(kernelAddr + 0x200) RSP = %#x: not between boot_params and the page tables", r.RSP)
	}
}

func TestRegsEncoding(t *testing.T) {
	var r Regs
	for i, f := range r.fields() {
		*f = uint64(i+1) * 0x0101010101010101
	}
	b := make([]byte, regsSize)
	r.encode(b)
	if got := getU64(b[16*8:]); got != r.RIP {
		t.Errorf("encoded rip = %#x, want %#x at offset 128 (struct kvm_regs)", got, r.RIP)
	}
	var back Regs
	back.decode(b)
	if back != r {
		t.Errorf("decode(encode(%+v)) = %+v", r, back)
	}

	s := longModeSregs(Sregs{InterruptBitmap: [4]uint64{1, 2, 3, 4}})
	sb := make([]byte, sregsSize)
	s.encode(sb)
	var sback Sregs
	sback.decode(sb)
	if sback != s {
		t.Errorf("Sregs decode(encode(%+v)) = %+v", s, sback)
	}
	// struct kvm_sregs: cr0 after 8 segments (24 bytes) and 2 dtables (16).
	if got := getU64(sb[224:]); got != s.CR0 {
		t.Errorf("encoded cr0 = %#x, want %#x at offset 224", got, s.CR0)
	}
	if got := getU64(sb[264:]); got != s.EFER {
		t.Errorf("encoded efer = %#x, want %#x at offset 264", got, s.EFER)
	}
}
