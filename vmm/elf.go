package vmm

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// kernelSegment is a piece of the kernel image loaded at a guest-physical
// address; memory from len(data) to size is zeroed (bss).
type kernelSegment struct {
	addr uint64
	data []byte
	size uint64
}

// parseELFKernel accepts an uncompressed x86-64 vmlinux, as Firecracker
// does: its PT_LOAD segments go to their physical addresses and the vCPU
// starts at the ELF entry (phys_startup_64) in 64-bit mode, with
// boot_params built from scratch. This skips the decompressor of a
// bzImage: the same kernel boots faster.
func parseELFKernel(img []byte) (*Kernel, error) {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("%w: ELF: %v", ErrBadKernel, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("%w: ELF %v %v %v, want a 64-bit x86-64 executable (vmlinux)", ErrBadKernel, f.Class, f.Machine, f.Type)
	}
	k := &Kernel{Entry: f.Entry}
	entryOK := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Filesz > p.Memsz || p.Off+p.Filesz > uint64(len(img)) || p.Off+p.Filesz < p.Off {
			return nil, fmt.Errorf("%w: ELF segment at %#x: file size %#x, memory size %#x, offset %#x in a %d-byte file",
				ErrBadKernel, p.Paddr, p.Filesz, p.Memsz, p.Off, len(img))
		}
		if p.Paddr < kernelAddr || p.Paddr+p.Memsz < p.Paddr || p.Paddr+p.Memsz > mmioHoleStart {
			return nil, fmt.Errorf("%w: ELF segment at physical %#x+%#x outside 1 MiB..3 GiB", ErrBadKernel, p.Paddr, p.Memsz)
		}
		k.segments = append(k.segments, kernelSegment{addr: p.Paddr, data: img[p.Off : p.Off+p.Filesz], size: p.Memsz})
		if f.Entry >= p.Paddr && f.Entry < p.Paddr+p.Memsz {
			entryOK = true
		}
	}
	if len(k.segments) == 0 || !entryOK {
		return nil, fmt.Errorf("%w: ELF entry %#x is not inside a loadable segment (is this a vmlinux?)", ErrBadKernel, f.Entry)
	}
	// The setup header a bzImage would carry (boot protocol 2.15 fields
	// the kernel reads from boot_params).
	hdr := make([]byte, 0x268-setupHeaderOff)
	put := func(off int, b []byte) { copy(hdr[off-setupHeaderOff:], b) }
	var w [4]byte
	putU16(w[:], 0xaa55)
	put(bootFlagOff, w[:2])
	put(headerMagicOff, []byte("HdrS"))
	putU16(w[:], 0x020f)
	put(0x206, w[:2])
	put(loadFlagsOff, []byte{loadedHigh})
	putU32(w[:], 0x7fffffff)
	put(0x22c, w[:]) // initrd_addr_max
	putU32(w[:], 0x1000000)
	put(0x230, w[:]) // kernel_alignment
	putU32(w[:], 2047)
	put(0x238, w[:]) // cmdline_size
	k.setup = hdr
	k.Header.InitrdAddrMax = 0x7fffffff
	k.Header.CmdLineSize = 2047
	k.Header.Protocolversion = 0x020f
	return k, nil
}

// end returns the first guest-physical address above the kernel once it
// runs: the end of its segments, or of init_size for a bzImage.
func (k *Kernel) end() uint64 {
	var e uint64
	for _, s := range k.segments {
		e = max(e, s.addr+s.size)
	}
	return e
}

// loadInto copies the kernel's segments into guest memory.
func (k *Kernel) loadInto(m *Memory) error {
	for _, s := range k.segments {
		dst, err := m.Slice(s.addr, s.size)
		if err != nil {
			return fmt.Errorf("load kernel segment at %#x: %w", s.addr, err)
		}
		n := copy(dst, s.data)
		clear(dst[n:])
	}
	return nil
}
