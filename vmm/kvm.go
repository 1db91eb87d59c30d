package vmm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// KVM ioctl numbers, from include/uapi/linux/kvm.h (_IO/_IOR/_IOW/_IOWR with
// KVMIO = 0xAE and the size of the argument structure).
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmCheckExtension      = 0xAE03
	kvmGetVCPUMmapSize     = 0xAE04
	kvmGetSupportedCPUID   = 0xC008AE05
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmSetTSSAddr          = 0xAE47
	kvmSetIdentityMapAddr  = 0x4008AE48
	kvmCreateIRQChip       = 0xAE60
	kvmIRQLine             = 0x4008AE61
	kvmSetGSIRouting       = 0x4008AE6A
	kvmIRQFD               = 0x4020AE76
	kvmCreatePIT2          = 0x4040AE77
	kvmIOEventFD           = 0x4040AE79
	kvmRun                 = 0xAE80
	kvmGetRegs             = 0x8090AE81
	kvmSetRegs             = 0x4090AE82
	kvmGetSregs            = 0x8138AE83
	kvmSetSregs            = 0x4138AE84
	kvmSetMSRs             = 0x4008AE89
	kvmSetFPU              = 0x41A0AE8D
	kvmGetLAPIC            = 0x8400AE8E
	kvmSetLAPIC            = 0x4400AE8F
	kvmSetCPUID2           = 0x4008AE90
	kvmSignalMSI           = 0x4020AEA5
)

// KVM capabilities (KVM_CAP_*) the VMM checks for.
const (
	capIRQChip       = 0
	capUserMemory    = 3
	capSetTSSAddr    = 4
	capIRQRouting    = 25
	capIRQFD         = 32
	capPIT2          = 33
	capIOEventFD     = 36
	capTSCDeadline   = 72
	capSignalMSI     = 77
	capImmediateExit = 136
)

// Exit reasons (KVM_EXIT_*), the values of kvm_run.exit_reason.
const (
	exitUnknown       = 0
	exitException     = 1
	exitIO            = 2
	exitHypercall     = 3
	exitDebug         = 4
	exitHLT           = 5
	exitMMIO          = 6
	exitIRQWindowOpen = 7
	exitShutdown      = 8
	exitFailEntry     = 9
	exitIntr          = 10
	exitInternalError = 17
	exitSystemEvent   = 24
)

var exitNames = map[uint32]string{
	exitUnknown: "UNKNOWN", exitException: "EXCEPTION", exitIO: "IO",
	exitHypercall: "HYPERCALL", exitDebug: "DEBUG", exitHLT: "HLT",
	exitMMIO: "MMIO", exitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	exitShutdown: "SHUTDOWN", exitFailEntry: "FAIL_ENTRY", exitIntr: "INTR",
	exitInternalError: "INTERNAL_ERROR", exitSystemEvent: "SYSTEM_EVENT",
}

func exitName(r uint32) string {
	if n, ok := exitNames[r]; ok {
		return n
	}
	return fmt.Sprintf("exit(%d)", r)
}

// ErrUnusableKVM says that /dev/kvm exists but cannot boot a stock Linux
// kernel (or does not exist at all).
var ErrUnusableKVM = errors.New("KVM cannot boot a stock Linux guest on this host")

// ioctlError wraps an ioctl failure with what was attempted.
func ioctlError(what string, err error) error {
	return fmt.Errorf("kvm: %s: %w", what, err)
}

// System is an open /dev/kvm.
type System struct{ fd int }

// VM is a KVM virtual machine file descriptor.
type VM struct{ fd int }

// VCPU is a KVM vCPU file descriptor with its mmapped kvm_run area.
type VCPU struct {
	fd  int
	id  int
	run []byte
}

// OpenSystem opens /dev/kvm (or path) and checks the API version (12).
func OpenSystem(path string) (*System, error) {
	if path == "" {
		path = "/dev/kvm"
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := retryEINTR(func() (int, error) { return unix.IoctlRetInt(fd, kvmGetAPIVersion) })
	if err != nil {
		s.Close()
		return nil, ioctlError("KVM_GET_API_VERSION", err)
	}
	if v != 12 {
		s.Close()
		return nil, fmt.Errorf("kvm: API version %d, want 12", v)
	}
	return s, nil
}

// Close closes /dev/kvm.
func (s *System) Close() error { return closeFD(&s.fd) }

// CheckExtension returns KVM_CHECK_EXTENSION's answer for a capability.
func (s *System) CheckExtension(capability int) (int, error) {
	r, err := ioctlRetArg(s.fd, kvmCheckExtension, uintptr(capability))
	if err != nil {
		return 0, ioctlError(fmt.Sprintf("KVM_CHECK_EXTENSION(%d)", capability), err)
	}
	return r, nil
}

// VCPUMmapSize returns the size of a vCPU's kvm_run area.
func (s *System) VCPUMmapSize() (int, error) {
	n, err := retryEINTR(func() (int, error) { return unix.IoctlRetInt(s.fd, kvmGetVCPUMmapSize) })
	if err != nil {
		return 0, ioctlError("KVM_GET_VCPU_MMAP_SIZE", err)
	}
	return n, nil
}

// CreateVM creates a virtual machine.
func (s *System) CreateVM() (*VM, error) {
	fd, err := retryEINTR(func() (int, error) { return unix.IoctlRetInt(s.fd, kvmCreateVM) })
	if err != nil {
		return nil, ioctlError("KVM_CREATE_VM", err)
	}
	unix.CloseOnExec(fd)
	return &VM{fd: fd}, nil
}

// Close closes the VM file descriptor.
func (vm *VM) Close() error { return closeFD(&vm.fd) }

// SetTSSAddr places the three-page TSS region KVM needs on Intel hosts.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctlRetArg(vm.fd, kvmSetTSSAddr, uintptr(addr)); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_TSS_ADDR(%#x)", addr), err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC, IOAPIC and local APICs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctlRetArg(vm.fd, kvmCreateIRQChip, 0); err != nil {
		return ioctlError("KVM_CREATE_IRQCHIP", err)
	}
	return nil
}

// IRQLine sets the level of an interrupt line of the in-kernel irqchip.
func (vm *VM) IRQLine(irq uint32, level bool) error {
	var arg [8]byte
	putU32(arg[0:], irq)
	if level {
		putU32(arg[4:], 1)
	}
	if err := ioctlBytes(vm.fd, kvmIRQLine, arg[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_IRQ_LINE(%d,%v)", irq, level), err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT (with a dummy speaker port).
func (vm *VM) CreatePIT2() error {
	var cfg [64]byte
	putU32(cfg[0:], 1) // KVM_PIT_SPEAKER_DUMMY
	if err := ioctlBytes(vm.fd, kvmCreatePIT2, cfg[:]); err != nil {
		return ioctlError("KVM_CREATE_PIT2", err)
	}
	return nil
}

// SetUserMemoryRegion maps host memory at hostAddr into the guest.
func (vm *VM) SetUserMemoryRegion(slot uint32, gpa, size uint64, hostAddr uintptr) error {
	var r [32]byte
	putU32(r[0:], slot)
	putU64(r[8:], gpa)
	putU64(r[16:], size)
	putU64(r[24:], uint64(hostAddr))
	if err := ioctlBytes(vm.fd, kvmSetUserMemoryRegion, r[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_USER_MEMORY_REGION(slot %d, gpa %#x, size %#x)", slot, gpa, size), err)
	}
	return nil
}

// IRQFD binds an eventfd to a GSI: a write to the eventfd injects it.
func (vm *VM) IRQFD(eventFD int, gsi uint32) error {
	var r [32]byte
	putU32(r[0:], uint32(eventFD))
	putU32(r[4:], gsi)
	if err := ioctlBytes(vm.fd, kvmIRQFD, r[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_IRQFD(fd %d, gsi %d)", eventFD, gsi), err)
	}
	return nil
}

// IOEventFD binds an eventfd to a guest write at addr (port I/O when pio).
func (vm *VM) IOEventFD(eventFD int, addr uint64, length uint32, pio bool) error {
	var r [64]byte
	putU64(r[8:], addr)
	putU32(r[16:], length)
	putU32(r[20:], uint32(eventFD))
	if pio {
		putU32(r[24:], 1<<1) // KVM_IOEVENTFD_FLAG_PIO
	}
	if err := ioctlBytes(vm.fd, kvmIOEventFD, r[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_IOEVENTFD(fd %d, addr %#x)", eventFD, addr), err)
	}
	return nil
}

// CreateVCPU creates vCPU id and maps its kvm_run area.
func (vm *VM) CreateVCPU(id, mmapSize int) (*VCPU, error) {
	fd, err := ioctlRetArg(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, ioctlError(fmt.Sprintf("KVM_CREATE_VCPU(%d)", id), err)
	}
	unix.CloseOnExec(fd)
	run, err := unix.Mmap(fd, 0, mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kvm: mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{fd: fd, id: id, run: run}, nil
}

// Close unmaps kvm_run and closes the vCPU.
func (c *VCPU) Close() error {
	var err error
	if c.run != nil {
		err = unix.Munmap(c.run)
		c.run = nil
	}
	if cerr := closeFD(&c.fd); err == nil {
		err = cerr
	}
	return err
}

// Run enters the guest until the next exit. EINTR is returned as is.
func (c *VCPU) Run() error {
	_, err := ioctlRetArg(c.fd, kvmRun, 0)
	return err
}

func closeFD(fd *int) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Probe reports whether the KVM at path can boot a stock Linux guest. It
// returns an error wrapping ErrUnusableKVM that names the cause when not.
func Probe(path string) error {
	if path == "" {
		path = "/dev/kvm"
	}
	const nest = "boot inside the nested test host instead (hvnet run --nested, or HVNET_NESTED=always)"
	_, pvmErr := os.Stat("/sys/module/kvm_pvm")
	if _, err := os.Stat(path); err != nil {
		if pvmErr == nil {
			return fmt.Errorf("%w: %s: %v (the host's KVM module is kvm_pvm, software virtualisation that cannot run a stock Linux kernel anyway); %s",
				ErrUnusableKVM, path, err, nest)
		}
		return fmt.Errorf("%w: %s: %v; %s", ErrUnusableKVM, path, err, nest)
	}
	// PVM (kvm_pvm) is page-table based software virtualisation; measured
	// here, a stock kernel stops with "emulation failure" on cmpxchg16b.
	if pvmErr == nil {
		return fmt.Errorf("%w: %s is backed by kvm_pvm (software virtualisation, no VT-x/AMD-V), "+
			"which cannot run a stock Linux kernel; %s", ErrUnusableKVM, path, nest)
	}
	s, err := OpenSystem(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnusableKVM, err)
	}
	defer s.Close()
	for _, c := range []struct {
		cap  int
		name string
	}{{capIRQChip, "IRQCHIP"}, {capUserMemory, "USER_MEMORY"}, {capPIT2, "PIT2"}, {capIRQFD, "IRQFD"}, {capIOEventFD, "IOEVENTFD"}} {
		if n, err := s.CheckExtension(c.cap); err != nil || n == 0 {
			return fmt.Errorf("%w: KVM lacks KVM_CAP_%s", ErrUnusableKVM, c.name)
		}
	}
	return nil
}
