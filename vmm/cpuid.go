package vmm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function, Index, Flags uint32
	EAX, EBX, ECX, EDX     uint32
}

const cpuidEntrySize = 40

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID, growing the buffer while
// KVM answers E2BIG.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for n := 128; n <= 4096; n *= 2 {
		b := make([]byte, 8+n*cpuidEntrySize)
		putU32(b[0:], uint32(n))
		err := ioctlBytes(s.fd, kvmGetSupportedCPUID, b)
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, ioctlError("KVM_GET_SUPPORTED_CPUID", err)
		}
		nent := int(getU32(b[0:]))
		out := make([]CPUIDEntry, nent)
		for i := range out {
			e := b[8+i*cpuidEntrySize:]
			out[i] = CPUIDEntry{getU32(e[0:]), getU32(e[4:]), getU32(e[8:]),
				getU32(e[12:]), getU32(e[16:]), getU32(e[20:]), getU32(e[24:])}
		}
		return out, nil
	}
	return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: more than 4096 entries")
}

// SetCPUID2 sets the CPUID a vCPU sees.
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	b := make([]byte, 8+len(entries)*cpuidEntrySize)
	putU32(b[0:], uint32(len(entries)))
	for i, e := range entries {
		o := b[8+i*cpuidEntrySize:]
		putU32(o[0:], e.Function)
		putU32(o[4:], e.Index)
		putU32(o[8:], e.Flags)
		putU32(o[12:], e.EAX)
		putU32(o[16:], e.EBX)
		putU32(o[20:], e.ECX)
		putU32(o[24:], e.EDX)
	}
	if err := ioctlBytes(c.fd, kvmSetCPUID2, b); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_CPUID2(vcpu %d)", c.id), err)
	}
	return nil
}

// CPUID bits the VMM sets or clears.
const (
	cpuid1ECXHypervisor  = 1 << 31 // CPUID.1:ECX[31], "running on a hypervisor"
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1EDXHTT         = 1 << 28 // CPUID.1:EDX[28], more than one logical CPU
)

// VCPUCPUID adapts the supported CPUID to vCPU id of a machine with n vCPUs:
// one core per vCPU, one thread per core, each with its own APIC ID.
// The topology leaves follow the Intel SDM (leaves 1, 4, 0xB, 0x1F) and the
// AMD APM (0x80000008, 0x8000001E) so that either vendor's view agrees.
func VCPUCPUID(supported []CPUIDEntry, id, n int) []CPUIDEntry {
	out := make([]CPUIDEntry, len(supported))
	copy(out, supported)
	for i := range out {
		e := &out[i]
		switch e.Function {
		case 1:
			// EBX[31:24] initial APIC ID, EBX[23:16] logical processors
			// per package, EBX[15:8] CLFLUSH line size (keep).
			e.EBX = e.EBX&0x0000ffff | uint32(id)<<24 | uint32(n&0xff)<<16
			e.ECX |= cpuid1ECXHypervisor
			if n > 1 {
				e.EDX |= cpuid1EDXHTT
			} else {
				e.EDX &^= cpuid1EDXHTT
			}
		case 4:
			// EAX[31:26] cores per package - 1; EAX[25:14] threads
			// sharing this cache - 1 (one thread per core).
			e.EAX = e.EAX&0x3fff | uint32(n-1)<<26
		case 0xb, 0x1f:
			// x2APIC topology: subleaf 0 the SMT level (1 thread),
			// subleaf 1 the core level (n cores); EDX the x2APIC ID.
			switch e.Index {
			case 0:
				e.EAX, e.EBX, e.ECX = 0, 1, 1<<8|0
			case 1:
				e.EAX, e.EBX, e.ECX = uint32(bitsFor(n)), uint32(n), 2<<8|1
			default:
				e.EAX, e.EBX, e.ECX = 0, 0, e.Index
			}
			e.EDX = uint32(id)
		case 0x80000008:
			// ECX[7:0] NC: number of physical cores - 1;
			// ECX[15:12] ApicIdSize.
			e.ECX = e.ECX&^0xf0ff | uint32(n-1)&0xff | uint32(bitsFor(n))<<12
		case 0x8000001e:
			// EAX extended APIC ID; EBX[15:8] threads per core - 1,
			// EBX[7:0] core ID; ECX node ID 0.
			e.EAX = uint32(id)
			e.EBX = uint32(id) & 0xff
			e.ECX = 0
		}
	}
	return out
}

// bitsFor returns how many bits an ID below n needs.
func bitsFor(n int) int {
	b := 0
	for (1 << b) < n {
		b++
	}
	return b
}
