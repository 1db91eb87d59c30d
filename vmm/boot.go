package vmm

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"

	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// Linux x86 boot protocol (Documentation/arch/x86/boot.rst) offsets and
// flags used here.
const (
	setupHeaderOff  = 0x1f1
	bootFlagOff     = 0x1fe // 0xAA55
	headerMagicOff  = 0x202 // "HdrS"
	xlfKernel64     = 1 << 0
	loadedHigh      = 1 << 0
	canUseHeap      = 1 << 7
	typeOfLoaderOff = 0x210
	loadFlagsOff    = 0x211
	ramdiskImageOff = 0x218
	ramdiskSizeOff  = 0x21c
	heapEndPtrOff   = 0x224
	cmdLinePtrOff   = 0x228
	acpiRSDPAddrOff = 0x070 // boot_params.acpi_rsdp_addr (protocol 2.14+)
	e820EntriesOff  = 0x1e8
	e820TableOff    = 0x2d0
	e820MaxEntries  = 128
	zeroPageSize    = 4096
)

// ErrBadKernel is wrapped by every error about an unusable kernel image.
var ErrBadKernel = errors.New("not a bootable x86-64 bzImage")

// Kernel is a parsed bzImage: its setup header and protected-mode code.
type Kernel struct {
	Header    bzimage.LinuxHeader
	setup     []byte // the setup header bytes, copied into boot_params
	Protected []byte // the 64-bit protected-mode kernel, loaded at kernelAddr
	Entry     uint64 // guest-physical 64-bit entry point
	segments  []kernelSegment
}

// ParseKernel checks a bzImage and splits it into setup header and
// protected-mode kernel. Truncated or foreign files get ErrBadKernel.
func ParseKernel(img []byte) (*Kernel, error) {
	if bytes.HasPrefix(img, []byte(elf.ELFMAG)) {
		return parseELFKernel(img)
	}
	if len(img) < 0x1000 {
		return nil, fmt.Errorf("%w: only %d bytes", ErrBadKernel, len(img))
	}
	var k Kernel
	if err := k.Header.UnmarshalBinary(img); err != nil {
		return nil, fmt.Errorf("%w: setup header: %v", ErrBadKernel, err)
	}
	h := &k.Header
	if getU16(img[bootFlagOff:]) != 0xaa55 || !bytes.Equal(h.HeaderMagic[:], []byte("HdrS")) {
		return nil, fmt.Errorf("%w: no boot flag 0xAA55 / header magic \"HdrS\"", ErrBadKernel)
	}
	if h.Protocolversion < 0x020c {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d, need 2.12 (64-bit entry)", ErrBadKernel,
			h.Protocolversion>>8, h.Protocolversion&0xff)
	}
	if h.XLoadFlags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: no 64-bit entry point (XLF_KERNEL_64)", ErrBadKernel)
	}
	if h.Loadflags&loadedHigh == 0 {
		return nil, fmt.Errorf("%w: zImage (not loaded high)", ErrBadKernel)
	}
	setupSects := int(h.SetupSects)
	if setupSects == 0 {
		setupSects = 4
	}
	pmOff := (setupSects + 1) * 512
	// The setup header ends at 0x202 + the jump offset at 0x201.
	hdrEnd := 0x202 + int(img[0x201])
	if pmOff >= len(img) || hdrEnd > pmOff {
		return nil, fmt.Errorf("%w: setup of %d sectors, file of %d bytes", ErrBadKernel, setupSects, len(img))
	}
	// syssize counts 16-byte paragraphs of protected-mode code: a file
	// shorter than that is truncated.
	if want := pmOff + int(h.Syssize)*16; want > len(img) {
		return nil, fmt.Errorf("%w: truncated: %d bytes, header says %d", ErrBadKernel, len(img), want)
	}
	k.setup = img[setupHeaderOff:hdrEnd]
	k.Protected = img[pmOff:]
	k.Entry = kernelAddr + 0x200 // startup_64 of the decompressor
	// The decompressor needs init_size bytes from the load address.
	k.segments = []kernelSegment{{addr: kernelAddr, data: k.Protected,
		size: max(uint64(len(k.Protected)), uint64(h.InitSize))}}
	return &k, nil
}

// bootPlan is where everything goes in guest memory.
type bootPlan struct {
	initrdAddr uint64
	initrdSize uint64
}

// planBoot checks that kernel, initrd and command line fit into memBytes of
// RAM and places the initrd at the top of low RAM, below initrd_addr_max.
func planBoot(k *Kernel, initrdSize int, cmdline string, memBytes uint64) (bootPlan, error) {
	var p bootPlan
	// cmdline_size is the longest command line without its NUL.
	if n := uint64(len(cmdline)); k.Header.CmdLineSize != 0 && n > uint64(k.Header.CmdLineSize) {
		return p, fmt.Errorf("command line of %d bytes exceeds the kernel's limit of %d", n, k.Header.CmdLineSize)
	}
	if len(cmdline)+1 > mptableAddr-cmdlineAddr {
		return p, fmt.Errorf("command line of %d bytes too long", len(cmdline))
	}
	low, _ := ramRegions(memBytes)
	kernelEnd := k.end()
	const headroom = 32 << 20 // what the kernel needs to come up at all
	top := low
	if m := uint64(k.Header.InitrdAddrMax) + 1; k.Header.InitrdAddrMax != 0 && m < top {
		top = m
	}
	p.initrdSize = uint64(initrdSize)
	p.initrdAddr = (top - p.initrdSize) &^ 0xfff
	if top < low && (top < p.initrdSize || p.initrdAddr < kernelEnd+headroom) {
		return p, fmt.Errorf("initrd of %d MiB does not fit between the kernel (%d MiB decompressed) and the kernel's initrd_addr_max %#x",
			p.initrdSize>>20, (kernelEnd-kernelAddr)>>20, k.Header.InitrdAddrMax)
	}
	if top < p.initrdSize || p.initrdAddr < kernelEnd+headroom {
		need := (kernelEnd + headroom + p.initrdSize + (1 << 20)) >> 20
		return p, fmt.Errorf("memory of %d MiB too small for this kernel (%d MiB decompressed) and initrd (%d MiB): need at least %d MiB",
			memBytes>>20, (kernelEnd-kernelAddr)>>20, p.initrdSize>>20, need)
	}
	return p, nil
}

// buildZeroPage fills struct boot_params: the kernel's setup header plus
// what the loader provides (boot protocol "Details of header fields").
func buildZeroPage(k *Kernel, p bootPlan, e820 []E820Entry) ([]byte, error) {
	if len(e820) > e820MaxEntries {
		return nil, fmt.Errorf("e820 map of %d entries, at most %d", len(e820), e820MaxEntries)
	}
	zp := make([]byte, zeroPageSize)
	copy(zp[setupHeaderOff:], k.setup)
	zp[typeOfLoaderOff] = 0xff // undefined loader
	zp[loadFlagsOff] |= loadedHigh | canUseHeap
	putU16(zp[heapEndPtrOff:], 0xfe00)
	putU32(zp[cmdLinePtrOff:], cmdlineAddr)
	putU32(zp[ramdiskImageOff:], uint32(p.initrdAddr))
	putU32(zp[ramdiskSizeOff:], uint32(p.initrdSize))
	putU64(zp[acpiRSDPAddrOff:], rsdpAddr)
	zp[e820EntriesOff] = byte(len(e820))
	for i, e := range e820 {
		o := zp[e820TableOff+20*i:]
		putU64(o[0:], e.Addr)
		putU64(o[8:], e.Size)
		putU32(o[16:], e.Type)
	}
	return zp, nil
}

// gdtEntry encodes a segment descriptor (Intel SDM vol. 3 §3.4.5) from the
// access/flags word (as 0xa09b: G, L, P, DPL, S, type), base and limit.
func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<32 | uint64(flags&0xf0ff)<<40 |
		uint64(limit&0x000f0000)<<32 | uint64(base&0x00ffffff)<<16 | uint64(limit&0xffff)
}

// bootGDT is the flat GDT of the 64-bit boot protocol: __BOOT_CS at 0x10
// (64-bit code) and __BOOT_DS at 0x18, plus a TSS at 0x20 for KVM.
func bootGDT() []uint64 {
	return []uint64{
		0,
		0,
		gdtEntry(0xa09b, 0, 0xfffff), // 0x10: code, 64-bit, present, ring 0
		gdtEntry(0xc093, 0, 0xfffff), // 0x18: data, 4 GiB, writable
		gdtEntry(0x808b, 0, 0xfffff), // 0x20: busy 64-bit TSS
	}
}

// segmentFromGDT expands a descriptor into the kvm_segment KVM expects.
func segmentFromGDT(e uint64, index int) Segment {
	s := Segment{
		Base:     (e>>16)&0xffffff | (e>>32)&0xff000000,
		Limit:    uint32(e&0xffff | (e>>32)&0xf0000),
		Selector: uint16(index * 8),
		Type:     uint8(e>>40) & 0xf,
		S:        uint8(e>>44) & 1,
		DPL:      uint8(e>>45) & 3,
		Present:  uint8(e>>47) & 1,
		AVL:      uint8(e>>52) & 1,
		L:        uint8(e>>53) & 1,
		DB:       uint8(e>>54) & 1,
		G:        uint8(e>>55) & 1,
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	s.Unusable = 1 - s.Present
	return s
}

// pageTables returns the PML4, PDPT and page directories that identity-map
// the first 4 GiB with 2 MiB pages (Intel SDM vol. 3 §4.5), so that the
// kernel, boot_params, command line and initrd are all reachable at entry.
func pageTables() (pml4, pdpt, pd []byte) {
	const present, rw, ps = 1, 2, 0x80
	pml4 = make([]byte, 4096)
	pdpt = make([]byte, 4096)
	pd = make([]byte, 4*4096)
	putU64(pml4, pdptAddr|present|rw)
	for i := 0; i < 4; i++ {
		putU64(pdpt[i*8:], uint64(pdAddr+i*4096)|present|rw)
	}
	for j := 0; j < 4*512; j++ {
		putU64(pd[j*8:], uint64(j)<<21|present|rw|ps)
	}
	return pml4, pdpt, pd
}

// Control-register and EFER bits for long mode (Intel SDM vol. 3 §2.5).
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// longModeSregs returns the special registers for a 64-bit entry: paging
// with the identity map, the flat GDT loaded, CS=0x10, DS/ES/FS/GS/SS=0x18.
func longModeSregs(s Sregs) Sregs {
	gdt := bootGDT()
	s.GDT = DTable{Base: gdtAddr, Limit: uint16(len(gdt)*8 - 1)}
	s.IDT = DTable{Base: idtAddr, Limit: 7}
	s.CS = segmentFromGDT(gdt[2], 2)
	ds := segmentFromGDT(gdt[3], 3)
	s.DS, s.ES, s.FS, s.GS, s.SS = ds, ds, ds, ds, ds
	s.TR = segmentFromGDT(gdt[4], 4)
	s.CR0 = cr0PE | cr0ET | cr0PG
	s.CR3 = pml4Addr
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
	return s
}

// bootRegs are the registers at the 64-bit entry point (startup_64: 0x200
// into a bzImage's protected-mode kernel, or a vmlinux's ELF entry): %rsi
// points at boot_params.
func bootRegs(entry uint64) Regs {
	return Regs{
		RIP:    entry,
		RSI:    zeroPageAddr,
		RSP:    bootStack,
		RBP:    bootStack,
		RFLAGS: 2, // bit 1 is reserved and always set
	}
}

// MSR indexes set at boot (Intel SDM vol. 4), as Firecracker does.
const (
	msrIA32TSC          = 0x10
	msrIA32SysenterCS   = 0x174
	msrIA32SysenterESP  = 0x175
	msrIA32SysenterEIP  = 0x176
	msrIA32MiscEnable   = 0x1a0
	msrMTRRDefType      = 0x2ff
	msrSTAR             = 0xc0000081
	msrLSTAR            = 0xc0000082
	msrCSTAR            = 0xc0000083
	msrSyscallMask      = 0xc0000084
	msrKernelGSBase     = 0xc0000102
	miscEnableFastStrng = 1
)

func bootMSRs() []MSR {
	return []MSR{
		{msrIA32SysenterCS, 0}, {msrIA32SysenterESP, 0}, {msrIA32SysenterEIP, 0},
		{msrSTAR, 0}, {msrCSTAR, 0}, {msrKernelGSBase, 0}, {msrSyscallMask, 0}, {msrLSTAR, 0},
		{msrIA32TSC, 0},
		{msrIA32MiscEnable, miscEnableFastStrng},
		{msrMTRRDefType, 1<<11 | 6}, // MTRRs enabled, default type write-back
	}
}
