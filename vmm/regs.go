package vmm

import (
	"fmt"
	"strings"
)

// Regs is struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

const regsSize = 18 * 8

func (r *Regs) fields() []*uint64 {
	return []*uint64{&r.RAX, &r.RBX, &r.RCX, &r.RDX, &r.RSI, &r.RDI, &r.RSP, &r.RBP,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15, &r.RIP, &r.RFLAGS}
}

func (r *Regs) encode(b []byte) {
	for i, f := range r.fields() {
		putU64(b[i*8:], *f)
	}
}

func (r *Regs) decode(b []byte) {
	for i, f := range r.fields() {
		*f = getU64(b[i*8:])
	}
}

// Segment is struct kvm_segment.
type Segment struct {
	Base                                 uint64
	Limit                                uint32
	Selector                             uint16
	Type, Present, DPL, DB, S, L, G, AVL uint8
	Unusable                             uint8
}

const segmentSize = 24

func (s *Segment) encode(b []byte) {
	putU64(b[0:], s.Base)
	putU32(b[8:], s.Limit)
	putU16(b[12:], s.Selector)
	copy(b[14:23], []byte{s.Type, s.Present, s.DPL, s.DB, s.S, s.L, s.G, s.AVL, s.Unusable})
}

func (s *Segment) decode(b []byte) {
	s.Base, s.Limit, s.Selector = getU64(b[0:]), getU32(b[8:]), getU16(b[12:])
	s.Type, s.Present, s.DPL, s.DB, s.S, s.L, s.G, s.AVL, s.Unusable =
		b[14], b[15], b[16], b[17], b[18], b[19], b[20], b[21], b[22]
}

// DTable is struct kvm_dtable (GDTR/IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
}

// Sregs is struct kvm_sregs: segment, control and descriptor-table registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT Segment
	GDT, IDT                        DTable
	CR0, CR2, CR3, CR4, CR8         uint64
	EFER, APICBase                  uint64
	InterruptBitmap                 [4]uint64
}

const sregsSize = 312

func (s *Sregs) segs() []*Segment {
	return []*Segment{&s.CS, &s.DS, &s.ES, &s.FS, &s.GS, &s.SS, &s.TR, &s.LDT}
}

func (s *Sregs) ctrl() []*uint64 {
	return []*uint64{&s.CR0, &s.CR2, &s.CR3, &s.CR4, &s.CR8, &s.EFER, &s.APICBase}
}

func (s *Sregs) encode(b []byte) {
	for i, seg := range s.segs() {
		seg.encode(b[i*segmentSize:])
	}
	putU64(b[192:], s.GDT.Base)
	putU16(b[200:], s.GDT.Limit)
	putU64(b[208:], s.IDT.Base)
	putU16(b[216:], s.IDT.Limit)
	for i, c := range s.ctrl() {
		putU64(b[224+i*8:], *c)
	}
	for i, v := range s.InterruptBitmap {
		putU64(b[280+i*8:], v)
	}
}

func (s *Sregs) decode(b []byte) {
	for i, seg := range s.segs() {
		seg.decode(b[i*segmentSize:])
	}
	s.GDT = DTable{Base: getU64(b[192:]), Limit: getU16(b[200:])}
	s.IDT = DTable{Base: getU64(b[208:]), Limit: getU16(b[216:])}
	for i, c := range s.ctrl() {
		*c = getU64(b[224+i*8:])
	}
	for i := range s.InterruptBitmap {
		s.InterruptBitmap[i] = getU64(b[280+i*8:])
	}
}

// GetRegs reads the general-purpose registers.
func (c *VCPU) GetRegs() (Regs, error) {
	var b [regsSize]byte
	var r Regs
	if err := ioctlBytes(c.fd, kvmGetRegs, b[:]); err != nil {
		return r, ioctlError(fmt.Sprintf("KVM_GET_REGS(vcpu %d)", c.id), err)
	}
	r.decode(b[:])
	return r, nil
}

// SetRegs writes the general-purpose registers.
func (c *VCPU) SetRegs(r Regs) error {
	var b [regsSize]byte
	r.encode(b[:])
	if err := ioctlBytes(c.fd, kvmSetRegs, b[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_REGS(vcpu %d)", c.id), err)
	}
	return nil
}

// GetSregs reads the special registers.
func (c *VCPU) GetSregs() (Sregs, error) {
	var b [sregsSize]byte
	var s Sregs
	if err := ioctlBytes(c.fd, kvmGetSregs, b[:]); err != nil {
		return s, ioctlError(fmt.Sprintf("KVM_GET_SREGS(vcpu %d)", c.id), err)
	}
	s.decode(b[:])
	return s, nil
}

// SetSregs writes the special registers.
func (c *VCPU) SetSregs(s Sregs) error {
	var b [sregsSize]byte
	s.encode(b[:])
	if err := ioctlBytes(c.fd, kvmSetSregs, b[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_SREGS(vcpu %d)", c.id), err)
	}
	return nil
}

// SetFPU loads the x87/SSE state with the power-on control words
// (FCW 0x37f, MXCSR 0x1f80) as a BIOS would leave them.
func (c *VCPU) SetFPU() error {
	var b [416]byte
	putU16(b[128:], 0x37f)  // fcw (after fpr[8][16])
	putU32(b[408:], 0x1f80) // mxcsr (after xmm[16][16] at 152)
	if err := ioctlBytes(c.fd, kvmSetFPU, b[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_FPU(vcpu %d)", c.id), err)
	}
	return nil
}

// MSR is one model-specific register value.
type MSR struct {
	Index uint32
	Data  uint64
}

// SetMSRs writes MSRs; KVM returns how many it set, all must be.
func (c *VCPU) SetMSRs(msrs []MSR) error {
	b := make([]byte, 8+16*len(msrs))
	putU32(b[0:], uint32(len(msrs)))
	for i, m := range msrs {
		putU32(b[8+i*16:], m.Index)
		putU64(b[8+i*16+8:], m.Data)
	}
	n, err := ioctlBytesRet(c.fd, kvmSetMSRs, b)
	if err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_MSRS(vcpu %d)", c.id), err)
	}
	if n != len(msrs) {
		return fmt.Errorf("kvm: KVM_SET_MSRS(vcpu %d): set %d of %d, first refused %#x", c.id, n, len(msrs), msrs[n].Index)
	}
	return nil
}

// String formats the registers as a one-screen summary.
func (r Regs) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rip=%#016x rflags=%#x\n", r.RIP, r.RFLAGS)
	fmt.Fprintf(&b, "rax=%#016x rbx=%#016x rcx=%#016x rdx=%#016x\n", r.RAX, r.RBX, r.RCX, r.RDX)
	fmt.Fprintf(&b, "rsi=%#016x rdi=%#016x rsp=%#016x rbp=%#016x\n", r.RSI, r.RDI, r.RSP, r.RBP)
	fmt.Fprintf(&b, "r8 =%#016x r9 =%#016x r10=%#016x r11=%#016x\n", r.R8, r.R9, r.R10, r.R11)
	fmt.Fprintf(&b, "r12=%#016x r13=%#016x r14=%#016x r15=%#016x", r.R12, r.R13, r.R14, r.R15)
	return b.String()
}

// String formats the control registers and code segment.
func (s Sregs) String() string {
	return fmt.Sprintf("cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x\ncs=%#x base=%#x l=%d db=%d gdt=%#x/%#x idt=%#x/%#x",
		s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.CS.Selector, s.CS.Base, s.CS.L, s.CS.DB,
		s.GDT.Base, s.GDT.Limit, s.IDT.Base, s.IDT.Limit)
}
