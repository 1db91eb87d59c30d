package vmm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

func TestProbe(t *testing.T) {
	err := Probe("/nonexistent")
	if !errors.Is(err, ErrUnusableKVM) || !strings.Contains(err.Error(), "/nonexistent") {
		t.Errorf("Probe(/nonexistent) = %v, want ErrUnusableKVM naming the path", err)
	}
	// Not a KVM device: the ioctl fails, Probe says why.
	if _, statErr := os.Stat("/sys/module/kvm_pvm"); statErr != nil {
		if err := Probe("/dev/null"); !errors.Is(err, ErrUnusableKVM) {
			t.Errorf("Probe(/dev/null) = %v, want ErrUnusableKVM", err)
		}
	}

	err = Probe("")
	if _, statErr := os.Stat("/sys/module/kvm_pvm"); statErr == nil {
		// This host's KVM is PVM: software virtualisation that cannot
		// boot a stock kernel, so Probe must refuse and point at the
		// nested test host.
		if !errors.Is(err, ErrUnusableKVM) {
			t.Fatalf("Probe(\"\") with kvm_pvm loaded = %v, want ErrUnusableKVM", err)
		}
		for _, want := range []string{"kvm_pvm", "nested", "/dev/kvm"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Probe(\"\") = %q, want it to mention %q", err, want)
			}
		}
		return
	}
	if _, statErr := os.Stat("/dev/kvm"); statErr != nil {
		if !errors.Is(err, ErrUnusableKVM) {
			t.Errorf("Probe(\"\") without /dev/kvm = %v, want ErrUnusableKVM", err)
		}
		return
	}
	t.Logf("Probe(\"\") = %v", err) // a hardware KVM host: usable, or says why not
}

// openKVM opens /dev/kvm, skipping the test only where there is none.
func openKVM(t *testing.T) *System {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); errors.Is(err, os.ErrNotExist) {
		t.Skip("no /dev/kvm on this host")
	}
	s, err := OpenSystem("")
	if err != nil {
		t.Fatalf("OpenSystem(\"\") = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("System.Close() = %v", err)
		}
	})
	return s
}

// TestKVMAPI drives the ioctls New uses, one by one. PVM answers all of
// them; only a stock kernel fails to boot there.
func TestKVMAPI(t *testing.T) {
	s := openKVM(t)
	for _, c := range []struct {
		cap  int
		name string
	}{{capIRQChip, "IRQCHIP"}, {capUserMemory, "USER_MEMORY"}, {capSetTSSAddr, "SET_TSS_ADDR"},
		{capPIT2, "PIT2"}, {capIRQFD, "IRQFD"}, {capIOEventFD, "IOEVENTFD"}, {capImmediateExit, "IMMEDIATE_EXIT"}} {
		if n, err := s.CheckExtension(c.cap); err != nil || n <= 0 {
			t.Errorf("CheckExtension(KVM_CAP_%s) = %d, %v; want > 0", c.name, n, err)
		}
	}
	if n, err := s.CheckExtension(1 << 30); err != nil || n != 0 {
		t.Errorf("CheckExtension(unknown) = %d, %v; want 0, nil", n, err)
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil || len(cpuid) == 0 {
		t.Fatalf("SupportedCPUID() = %d entries, %v; want some", len(cpuid), err)
	}
	has := map[uint32]bool{}
	for _, e := range cpuid {
		has[e.Function] = true
	}
	if !has[0] || !has[1] {
		t.Errorf("SupportedCPUID() lacks leaf 0 or 1: %+v", cpuid)
	}
	mmapSize, err := s.VCPUMmapSize()
	if err != nil || mmapSize < 4096 {
		t.Fatalf("VCPUMmapSize() = %d, %v; want >= 4096", mmapSize, err)
	}

	vm, err := s.CreateVM()
	if err != nil {
		t.Fatalf("CreateVM() = %v", err)
	}
	defer vm.Close()
	if err := vm.SetTSSAddr(tssAddr); err != nil {
		t.Errorf("SetTSSAddr(%#x) = %v", tssAddr, err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Errorf("CreateIRQChip() = %v", err)
	}
	if err := vm.CreatePIT2(); err != nil {
		t.Errorf("CreatePIT2() = %v", err)
	}
	mem, err := NewMemory(2 << 20)
	if err != nil {
		t.Fatalf("NewMemory(2 MiB) = %v", err)
	}
	defer mem.Close()
	r := mem.Regions()[0]
	if err := vm.SetUserMemoryRegion(0, r.GPA, r.Size, hostAddr(mem.Host(r))); err != nil {
		t.Errorf("SetUserMemoryRegion(0, %#x, %#x) = %v", r.GPA, r.Size, err)
	}
	// A size that is not a multiple of the page size is refused, and the
	// error says what was attempted.
	err = vm.SetUserMemoryRegion(1, 0x10000000, 100, hostAddr(mem.Host(r)))
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "KVM_SET_USER_MEMORY_REGION(slot 1") {
		t.Errorf("SetUserMemoryRegion(size 100) = %v, want EINVAL naming the ioctl and slot", err)
	}
	if err := vm.IRQLine(com1IRQ, true); err != nil {
		t.Errorf("IRQLine(4, true) = %v", err)
	}
	if err := vm.IRQLine(com1IRQ, false); err != nil {
		t.Errorf("IRQLine(4, false) = %v", err)
	}

	v, err := vm.CreateVCPU(0, mmapSize)
	if err != nil {
		t.Fatalf("CreateVCPU(0) = %v", err)
	}
	defer v.Close()
	if _, err := vm.CreateVCPU(0, mmapSize); err == nil || !strings.Contains(err.Error(), "KVM_CREATE_VCPU(0)") {
		t.Errorf("CreateVCPU(0) twice = %v, want an error naming KVM_CREATE_VCPU(0)", err)
	}
	if err := v.SetCPUID2(VCPUCPUID(cpuid, 0, 1)); err != nil {
		t.Errorf("SetCPUID2() = %v", err)
	}
	if err := v.SetMSRs(bootMSRs()); err != nil {
		t.Errorf("SetMSRs(bootMSRs()) = %v", err)
	}
	if err := v.SetMSRs([]MSR{{Index: 0xdeadbeef, Data: 1}}); err == nil || !strings.Contains(err.Error(), "0xdeadbeef") {
		t.Errorf("SetMSRs(unknown MSR) = %v, want an error naming 0xdeadbeef", err)
	}
	if err := v.SetFPU(); err != nil {
		t.Errorf("SetFPU() = %v", err)
	}
	if err := v.setupLAPIC(); err != nil {
		t.Errorf("setupLAPIC() = %v", err)
	}

	sregs, err := v.GetSregs()
	if err != nil {
		t.Fatalf("GetSregs() = %v", err)
	}
	if sregs.CS.Selector != 0xf000 || sregs.CR0&cr0PE != 0 {
		t.Errorf("GetSregs() at reset = %v, want real mode at f000:fff0", sregs)
	}
	want := longModeSregs(sregs)
	if err := v.SetSregs(want); err != nil {
		t.Fatalf("SetSregs(longModeSregs) = %v", err)
	}
	got, err := v.GetSregs()
	if err != nil {
		t.Fatalf("GetSregs() = %v", err)
	}
	if got.CR0&(cr0PE|cr0PG) != cr0PE|cr0PG || got.CR3 != pml4Addr || got.CR4&cr4PAE == 0 ||
		got.EFER&(eferLME|eferLMA) != eferLME|eferLMA || got.CS.Selector != 0x10 || got.CS.L != 1 ||
		got.DS.Selector != 0x18 || got.GDT != want.GDT || got.IDT != want.IDT {
		t.Errorf("GetSregs() after SetSregs(longModeSregs) = %v, want %v", got, want)
	}
	if err := v.SetRegs(bootRegs(kernelAddr + 0x200)); err != nil {
		t.Fatalf("SetRegs(bootRegs(kernelAddr + 0x200)) = %v", err)
	}
	if regs, err := v.GetRegs(); err != nil || regs != bootRegs(kernelAddr+0x200) {
		t.Errorf("GetRegs() = %v, %v; want %v", regs, err, bootRegs(kernelAddr+0x200))
	}
	if err := v.Close(); err != nil {
		t.Errorf("VCPU.Close() = %v", err)
	}
	if err := v.Close(); err != nil {
		t.Errorf("second VCPU.Close() = %v, want nil", err)
	}
}

func TestOpenSystemNotKVM(t *testing.T) {
	if _, err := OpenSystem("/nonexistent/kvm"); err == nil || !strings.Contains(err.Error(), "/nonexistent/kvm") {
		t.Errorf("OpenSystem(/nonexistent/kvm) = %v, want an error naming the path", err)
	}
	_, err := OpenSystem("/dev/null")
	if err == nil || !strings.Contains(err.Error(), "KVM_GET_API_VERSION") {
		t.Errorf("OpenSystem(/dev/null) = %v, want a KVM_GET_API_VERSION error", err)
	}
}

// guestProgram is 64-bit code run at the boot entry point (0x100200) by
// TestMachineRun. Assembled from (GNU as, .intel_syntax noprefix):
//
//	mov dx, 0x3f8; mov al, 'h'; out dx, al; mov al, 'i'; out dx, al
//	lea rsi, [rip+msg]; mov ecx, 2; rep outsb      ; "!\n"
//	mov edi, 0x1000
//	mov al, 0x32; out 0x70, al; in al, 0x71; mov [rdi], al      ; CMOS century
//	mov eax, 0x80000000; mov dx, 0xcf8; out dx, eax
//	mov dx, 0xcfc; in eax, dx; mov [rdi+4], eax                 ; 00:00.0 IDs
//	mov dx, 0xcfe; in ax, dx; mov [rdi+8], ax                   ; device ID
//	mov dx, 0x3fd; in al, dx; mov [rdi+12], al                  ; LSR
//	mov dx, 0x80; in al, dx; mov [rdi+13], al                   ; nothing there
//	mov edi, 0x1010; mov dx, 0x71; mov ecx, 4; rep insb         ; century x4
//	mov al, 42; out 0xf4, al                                    ; exit 42
//	1: jmp 1b
//	msg: .ascii "!\n"
var guestProgram = []byte{
	0x66, 0xba, 0xf8, 0x03, 0xb0, 0x68, 0xee, 0xb0, 0x69, 0xee, 0x48, 0x8d,
	0x35, 0x56, 0x00, 0x00, 0x00, 0xb9, 0x02, 0x00, 0x00, 0x00, 0xf3, 0x6e,
	0xbf, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x32, 0xe6, 0x70, 0xe4, 0x71, 0x88,
	0x07, 0xb8, 0x00, 0x00, 0x00, 0x80, 0x66, 0xba, 0xf8, 0x0c, 0xef, 0x66,
	0xba, 0xfc, 0x0c, 0xed, 0x89, 0x47, 0x04, 0x66, 0xba, 0xfe, 0x0c, 0x66,
	0xed, 0x66, 0x89, 0x47, 0x08, 0x66, 0xba, 0xfd, 0x03, 0xec, 0x88, 0x47,
	0x0c, 0x66, 0xba, 0x80, 0x00, 0xec, 0x88, 0x47, 0x0d, 0xbf, 0x10, 0x10,
	0x00, 0x00, 0x66, 0xba, 0x71, 0x00, 0xb9, 0x04, 0x00, 0x00, 0x00, 0xf3,
	0x6c, 0xb0, 0x2a, 0xe6, 0xf4, 0xeb, 0xfe, 0x21, 0x0a,
}

// newMachineUnprobed is New without the Probe: on a PVM host it still
// runs small 64-bit programs (not a stock kernel), which is enough to
// exercise the vCPU loop, port I/O dispatch and the exit paths.
func newMachineUnprobed(t *testing.T, cfg Config) *Machine {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); errors.Is(err, os.ErrNotExist) {
		t.Skip("no /dev/kvm on this host")
	}
	k, initrdSize, err := cfg.Validate()
	if err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	m := &Machine{cfg: cfg, log: hclog.NewNullLogger()}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Machine.Close() = %v", err)
		}
	})
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	m.sys, err = OpenSystem(cfg.KVMPath)
	must("OpenSystem", err)
	m.vm, err = m.sys.CreateVM()
	must("CreateVM", err)
	must("SetTSSAddr", m.vm.SetTSSAddr(tssAddr))
	must("CreateIRQChip", m.vm.CreateIRQChip())
	must("CreatePIT2", m.vm.CreatePIT2())
	m.mem, err = NewMemory(cfg.MemMiB << 20)
	must("NewMemory", err)
	for i, r := range m.mem.Regions() {
		must("SetUserMemoryRegion", m.vm.SetUserMemoryRegion(uint32(i), r.GPA, r.Size, hostAddr(m.mem.Host(r))))
	}
	must("load", m.load(k, initrdSize))
	must("setupDevices", m.setupDevices())
	must("setupVCPUs", m.setupVCPUs())
	return m
}

// programKernel returns a bzImage whose 64-bit entry point runs code.
func programKernel(t *testing.T, code []byte) string {
	img := synthKernel()
	for i := synthPMOff; i < len(img); i++ {
		img[i] = 0xf4 // hlt
	}
	copy(img[synthPMOff+0x200:], code)
	return writeFile(t, "bzImage-program", img)
}

func TestMachineRun(t *testing.T) {
	var console bytes.Buffer
	m := newMachineUnprobed(t, Config{Kernel: programKernel(t, guestProgram), MemMiB: 64, CPUs: 2, Console: &console})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, err := m.Run(ctx)
	if status != 42 || err != nil {
		t.Fatalf("Run() = %d, %v; want 42, nil (console %q)", status, err, console.String())
	}
	if got, want := console.String(), "hi!\n"; got != want {
		t.Errorf("console = %q, want %q", got, want)
	}
	if m.result.reason != "exit port" {
		t.Errorf("exit reason %q, want \"exit port\"", m.result.reason)
	}
	b, err := m.Memory().Slice(0x1000, 0x14)
	if err != nil {
		t.Fatal(err)
	}
	century := bcd(time.Now().UTC().Year() / 100)
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"CMOS century (in al, 0x71)", uint32(b[0]), uint32(century)},
		{"PCI 00:00.0 dword 0 (in eax, 0xcfc)", getU32(b[4:]), 0x0d578086},
		{"PCI 00:00.0 device ID (in ax, 0xcfe)", uint32(getU16(b[8:])), 0x0d57},
		{"COM1 LSR (in al, 0x3fd)", uint32(b[12]), lsrTHRE | lsrTEMT},
		{"unclaimed port 0x80", uint32(b[13]), 0xff},
		{"rep insb from 0x71", getU32(b[0x10:]), uint32(century) * 0x01010101},
	} {
		if f.got != f.want {
			t.Errorf("guest read %s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
}

func TestMachineRunFault(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		want string
	}{
		// ud2 with an empty IDT: #UD, #GP, #DF, triple fault.
		{"triple fault", []byte{0x0f, 0x0b}, "shutdown (triple fault)"},
		// A non-canonical jump target: #GP, then as above.
		{"non-canonical jump", []byte{0x48, 0xb8, 0, 0, 0, 0, 0, 0x80, 0, 0, 0xff, 0xe0}, "shutdown (triple fault)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachineUnprobed(t, Config{Kernel: programKernel(t, tc.code), MemMiB: 64})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			status, err := m.Run(ctx)
			var gf *GuestFaultError
			if !errors.As(err, &gf) || !strings.Contains(gf.Reason, tc.want) {
				t.Fatalf("Run() = %d, %v; want a GuestFaultError %q", status, err, tc.want)
			}
			if status != -1 || gf.VCPU != 0 || gf.Regs.RIP < kernelAddr+0x200 {
				t.Errorf("Run() = %d, vCPU %d at RIP %#x; want -1, vCPU 0 in the program", status, gf.VCPU, gf.Regs.RIP)
			}
			t.Logf("%v", err)
		})
	}
}

// inputProgram waits for two bytes on COM1 (polling LSR.DR), reads them
// from RBR and exits with their sum:
//
//	mov dx, 0x3fd; 1: in al, dx; test al, 1; jz 1b
//	mov dx, 0x3f8; in al, dx; mov bl, al
//	mov dx, 0x3fd; 2: in al, dx; test al, 1; jz 2b
//	mov dx, 0x3f8; in al, dx; add al, bl; out 0xf4, al
//	3: jmp 3b
var inputProgram = []byte{
	0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0x66, 0xba, 0xf8,
	0x03, 0xec, 0x88, 0xc3, 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74,
	0xfb, 0x66, 0xba, 0xf8, 0x03, 0xec, 0x00, 0xd8, 0xe6, 0xf4, 0xeb, 0xfe,
}

func TestMachineSerialInput(t *testing.T) {
	m := newMachineUnprobed(t, Config{Kernel: programKernel(t, inputProgram), MemMiB: 64,
		Input: strings.NewReader("\x10\x20")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if status, err := m.Run(ctx); status != 0x30 || err != nil {
		t.Errorf("Run() of a guest summing two input bytes = %#x, %v; want 0x30, nil", status, err)
	}
}

func TestMachineRunContext(t *testing.T) {
	m := newMachineUnprobed(t, Config{Kernel: programKernel(t, []byte{0xeb, 0xfe}), MemMiB: 64}) // 1: jmp 1b
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	status, err := m.Run(ctx)
	if status != -1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run() of a spinning guest = %d, %v; want -1, DeadlineExceeded", status, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run() took %v to notice the context", d)
	}
}
