package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Config describes a machine.
type Config struct {
	Kernel  string // bzImage path (required)
	Initrd  string // initramfs path (optional)
	Cmdline string // kernel command line; console=ttyS0 is the console
	MemMiB  uint64 // guest RAM in MiB (default 512)
	CPUs    int    // vCPUs (default 1)

	Console io.Writer // guest serial output (default os.Stdout)
	Input   io.Reader // guest serial input (nil: none)
	// Events, when set, receives what the guest writes to its second
	// UART (COM2, /dev/ttyS1): a channel from guest to host kept apart
	// from the console (vmtest's JSON events). Nil: no COM2.
	Events  io.Writer
	Log     hclog.Logger
	KVMPath string // default /dev/kvm
}

// Limits on what a Config may ask for.
const (
	MinMemMiB = 64
	MaxMemMiB = 64 << 10
)

// Machine is a booted-but-not-yet-running (New) or running (Run) VM.
type Machine struct {
	cfg     Config
	log     hclog.Logger
	sys     *System
	vm      *VM
	mem     *Memory
	vcpus   []*VCPU
	pio     pioBus
	mmio    mmioBus
	plat    *kvmPlatform
	nextBAR uint32
	closers []func() error // devices, closed before the VM
	serial  *Serial
	pci     *PCIBus
	con     *lineWriter
	events  *lineWriter // COM2's output; nil without Config.Events
	entry   uint64      // the kernel's 64-bit entry point

	stopping atomic.Bool
	tids     []atomic.Int32
	once     sync.Once
	result   result
}

type result struct {
	status int
	reason string
	err    error
}

// GuestFaultError reports a guest that stopped abnormally (triple fault,
// KVM internal error, failed entry), with its registers.
type GuestFaultError struct {
	VCPU   int
	Reason string
	Regs   Regs
	Sregs  Sregs
}

func (e *GuestFaultError) Error() string {
	return fmt.Sprintf("guest fault on vCPU %d: %s\n%s\n%s", e.VCPU, e.Reason, e.Regs, e.Sregs)
}

// Validate checks a Config and reads the kernel, so that bad files and
// impossible settings are reported before anything starts.
func (c *Config) Validate() (*Kernel, int64, error) {
	if c.MemMiB == 0 {
		c.MemMiB = 512
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.CPUs < 1 || c.CPUs > maxCPUs {
		return nil, 0, fmt.Errorf("config: --cpus %d: want 1..%d", c.CPUs, maxCPUs)
	}
	if c.MemMiB < MinMemMiB || c.MemMiB > MaxMemMiB || c.MemMiB%2 != 0 {
		return nil, 0, fmt.Errorf("config: --mem %d MiB: want an even number of MiB in %d..%d", c.MemMiB, MinMemMiB, MaxMemMiB)
	}
	if c.Kernel == "" {
		return nil, 0, errors.New("config: no kernel given (--kernel)")
	}
	img, err := os.ReadFile(c.Kernel)
	if err != nil {
		return nil, 0, fmt.Errorf("config: kernel: %w", err)
	}
	k, err := ParseKernel(img)
	if err != nil {
		return nil, 0, fmt.Errorf("config: kernel %s: %w", c.Kernel, err)
	}
	var initrdSize int64
	if c.Initrd != "" {
		st, err := os.Stat(c.Initrd)
		if err != nil {
			return nil, 0, fmt.Errorf("config: initrd: %w", err)
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			return nil, 0, fmt.Errorf("config: initrd %s: not a non-empty regular file", c.Initrd)
		}
		initrdSize = st.Size()
	}
	if _, err := planBoot(k, int(initrdSize), c.Cmdline, c.MemMiB<<20); err != nil {
		return nil, 0, fmt.Errorf("config: %w", err)
	}
	return k, initrdSize, nil
}

// New validates cfg, creates the VM, loads the kernel and initrd and sets
// up the vCPUs. It fails with an error wrapping ErrUnusableKVM on hosts
// whose KVM cannot boot Linux.
func New(cfg Config) (_ *Machine, err error) {
	k, initrdSize, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	if err := Probe(cfg.KVMPath); err != nil {
		return nil, err
	}
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	m := &Machine{cfg: cfg, log: cfg.Log}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.sys, err = OpenSystem(cfg.KVMPath); err != nil {
		return nil, err
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, err
	}
	if err = m.vm.SetTSSAddr(tssAddr); err != nil {
		return nil, err
	}
	if err = m.vm.CreateIRQChip(); err != nil {
		return nil, err
	}
	if err = m.vm.CreatePIT2(); err != nil {
		return nil, err
	}
	m.plat = newKVMPlatform(m.vm)
	if m.mem, err = NewMemory(cfg.MemMiB << 20); err != nil {
		return nil, err
	}
	for i, r := range m.mem.Regions() {
		if err = m.vm.SetUserMemoryRegion(uint32(i), r.GPA, r.Size, hostAddr(m.mem.Host(r))); err != nil {
			return nil, err
		}
	}
	if err = m.load(k, initrdSize); err != nil {
		return nil, err
	}
	if err = m.setupDevices(); err != nil {
		return nil, err
	}
	if err = m.setupVCPUs(); err != nil {
		return nil, err
	}
	return m, nil
}

// load writes the kernel, initrd, command line and boot tables into RAM.
func (m *Machine) load(k *Kernel, initrdSize int64) error {
	plan, err := planBoot(k, int(initrdSize), m.cfg.Cmdline, m.cfg.MemMiB<<20)
	if err != nil {
		return err
	}
	if err := k.loadInto(m.mem); err != nil {
		return err
	}
	m.entry = k.Entry
	if initrdSize > 0 {
		dst, err := m.mem.Slice(plan.initrdAddr, plan.initrdSize)
		if err != nil {
			return fmt.Errorf("load initrd: %w", err)
		}
		f, err := os.Open(m.cfg.Initrd)
		if err != nil {
			return fmt.Errorf("load initrd: %w", err)
		}
		_, err = io.ReadFull(f, dst)
		f.Close()
		if err != nil {
			return fmt.Errorf("load initrd %s: %w", m.cfg.Initrd, err)
		}
	}
	zp, err := buildZeroPage(k, plan, e820Map(m.cfg.MemMiB<<20))
	if err != nil {
		return err
	}
	mpt, err := buildMPTable(m.cfg.CPUs, mptableAddr)
	if err != nil {
		return err
	}
	acpi, err := buildACPI(m.cfg.CPUs)
	if err != nil {
		return err
	}
	gdt := make([]byte, 8*len(bootGDT()))
	for i, e := range bootGDT() {
		putU64(gdt[i*8:], e)
	}
	pml4, pdpt, pd := pageTables()
	for _, w := range []struct {
		addr uint64
		b    []byte
	}{
		{gdtAddr, gdt}, {idtAddr, make([]byte, 8)}, {zeroPageAddr, zp},
		{cmdlineAddr, append([]byte(m.cfg.Cmdline), 0)}, {mptableAddr, mpt}, {rsdpAddr, acpi},
		{pml4Addr, pml4}, {pdptAddr, pdpt}, {pdAddr, pd},
	} {
		if err := m.mem.Write(w.addr, w.b); err != nil {
			return fmt.Errorf("load boot tables: %w", err)
		}
	}
	m.log.Debug("loaded", "kernel_end", fmt.Sprintf("%#x", k.end()), "entry", fmt.Sprintf("%#x", k.Entry), "initrd_addr", fmt.Sprintf("%#x", plan.initrdAddr),
		"initrd_bytes", plan.initrdSize, "mem_mib", m.cfg.MemMiB, "cpus", m.cfg.CPUs)
	return nil
}

func (m *Machine) setupDevices() error {
	m.con = &lineWriter{w: m.cfg.Console}
	m.serial = NewSerial(m.con, func() {
		// ISA interrupts are edge triggered: pulse the line.
		if err := m.vm.IRQLine(com1IRQ, true); err != nil {
			m.log.Error("serial interrupt", "error", err)
			return
		}
		_ = m.vm.IRQLine(com1IRQ, false) // lowering a line we just raised cannot fail differently
	})
	if m.cfg.Events != nil {
		m.events = &lineWriter{w: m.cfg.Events}
		com2 := NewSerial(m.events, func() {
			if err := m.vm.IRQLine(com2IRQ, true); err != nil {
				m.log.Error("serial interrupt", "port", "COM2", "error", err)
				return
			}
			_ = m.vm.IRQLine(com2IRQ, false)
		})
		if err := m.pio.register(com2Port, 8, com2); err != nil {
			return err
		}
	}
	m.pci = NewPCIBus()
	ex := &exitDevice{exit: m.exit}
	for _, d := range []struct {
		base, size uint16
		dev        PIODevice
	}{
		{com1Port, 8, m.serial},
		{cmosPort, 2, &CMOS{}},
		{i8042Data, 5, i8042{ex}},
		{ExitPort, 1, exitPort{ex}},
		{pmBase, pmSize, newPMDevice(m.exit)},
		{pciAddrPort, 4, pciAddrPortDev{m.pci}},
		{pciDataPort, 4, pciDataPortDev{m.pci}},
	} {
		if err := m.pio.register(d.base, d.size, d.dev); err != nil {
			return err
		}
	}
	return nil
}

func (m *Machine) setupVCPUs() error {
	mmapSize, err := m.sys.VCPUMmapSize()
	if err != nil {
		return err
	}
	cpuid, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	// KVM emulates the TSC-deadline timer but leaves advertising it to
	// userspace. With it the guest skips calibrating its APIC timer.
	if n, err := m.sys.CheckExtension(capTSCDeadline); err == nil && n > 0 {
		for i := range cpuid {
			if cpuid[i].Function == 1 {
				cpuid[i].ECX |= cpuid1ECXTSCDeadline
			}
		}
	}
	m.tids = make([]atomic.Int32, m.cfg.CPUs)
	for id := 0; id < m.cfg.CPUs; id++ {
		v, err := m.vm.CreateVCPU(id, mmapSize)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, v)
		if err := v.SetCPUID2(VCPUCPUID(cpuid, id, m.cfg.CPUs)); err != nil {
			return err
		}
		if err := v.SetMSRs(bootMSRs()); err != nil {
			return err
		}
		if err := v.SetFPU(); err != nil {
			return err
		}
		if err := v.setupLAPIC(); err != nil {
			return err
		}
		if id != 0 {
			continue // APs wait for INIT/SIPI from the BSP (in-kernel LAPIC)
		}
		s, err := v.GetSregs()
		if err != nil {
			return err
		}
		if err := v.SetSregs(longModeSregs(s)); err != nil {
			return err
		}
		if err := v.SetRegs(bootRegs(m.entry)); err != nil {
			return err
		}
	}
	return nil
}

// setupLAPIC wires LINT0 to ExtINT and LINT1 to NMI, as firmware does
// (Intel SDM vol. 3 §10.5.1, local vector table).
func (c *VCPU) setupLAPIC() error {
	var b [1024]byte
	if err := ioctlBytes(c.fd, kvmGetLAPIC, b[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_GET_LAPIC(vcpu %d)", c.id), err)
	}
	const lvtLINT0, lvtLINT1, modeExtINT, modeNMI = 0x350, 0x360, 7, 4
	putU32(b[lvtLINT0:], getU32(b[lvtLINT0:])&^0x700|modeExtINT<<8)
	putU32(b[lvtLINT1:], getU32(b[lvtLINT1:])&^0x700|modeNMI<<8)
	if err := ioctlBytes(c.fd, kvmSetLAPIC, b[:]); err != nil {
		return ioctlError(fmt.Sprintf("KVM_SET_LAPIC(vcpu %d)", c.id), err)
	}
	return nil
}

// Memory returns guest RAM (for devices and vhost-user backends).
func (m *Machine) Memory() *Memory { return m.mem }

// PCI returns PCI bus 0.
func (m *Machine) PCI() *PCIBus { return m.pci }

// exit ends the machine once with status; later calls are ignored.
func (m *Machine) exit(status int, reason string) {
	m.finish(result{status: status, reason: reason})
}

func (m *Machine) finish(r result) {
	m.once.Do(func() {
		m.result = r
		m.stop()
	})
}

// stop makes every vCPU leave KVM_RUN: immediate_exit for one about to
// enter, a signal for one inside.
func (m *Machine) stop() {
	m.stopping.Store(true)
	for i, v := range m.vcpus {
		if v.run != nil {
			v.run[1] = 1 // kvm_run.immediate_exit
		}
		if tid := m.tids[i].Load(); tid != 0 {
			_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG) // the thread may have exited already
		}
	}
}

// Run runs the vCPUs until the guest exits (exit port, reset), faults, or
// ctx ends. It returns the guest's exit status: the byte written to
// ExitPort, 0 for a reset.
func (m *Machine) Run(ctx context.Context) (int, error) {
	var wg sync.WaitGroup
	for _, v := range m.vcpus {
		wg.Add(1)
		go func(v *VCPU) {
			defer wg.Done()
			if err := m.runVCPU(v); err != nil {
				m.finish(result{status: -1, err: err})
			}
		}(v)
	}
	var input sync.WaitGroup
	done := make(chan struct{})
	if m.cfg.Input != nil {
		input.Add(1)
		go func() { defer input.Done(); m.feedInput(done) }()
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			m.finish(result{status: -1, err: fmt.Errorf("vmm: %w", ctx.Err())})
		case <-done:
		}
	}()
	wg.Wait()
	close(done)
	<-watched // stop() may still be touching kvm_run: Close must wait
	m.con.Flush()
	if m.events != nil {
		m.events.Flush()
	}
	r := m.result
	if r.err == nil {
		m.log.Debug("guest exited", "status", r.status, "reason", r.reason)
	}
	return r.status, r.err
}

func (m *Machine) feedInput(done <-chan struct{}) {
	buf := make([]byte, 64)
	for {
		n, err := m.cfg.Input.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			select {
			case <-done:
				return
			default:
			}
			p = p[m.serial.Input(p):]
			if len(p) > 0 {
				sleepPoll()
			}
		}
		if err != nil {
			return
		}
	}
}

// Close releases the vCPUs, the VM, guest RAM and /dev/kvm.
func (m *Machine) Close() error {
	errs := []error{m.StopDevices()}
	for _, v := range m.vcpus {
		errs = append(errs, v.Close())
	}
	m.vcpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
	}
	return errors.Join(errs...)
}

// lineWriter buffers guest console output by line, so that a log reader
// sees whole lines and the host does one write per line, not per byte.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 || len(l.buf) >= 4096 {
		if i < 0 {
			i = len(l.buf) - 1
		}
		_, err := l.w.Write(l.buf[:i+1])
		l.buf = append(l.buf[:0], l.buf[i+1:]...)
		return len(p), err
	}
	return len(p), nil
}

// Flush writes out a partial last line.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.w.Write(l.buf)
		l.buf = l.buf[:0]
	}
}
