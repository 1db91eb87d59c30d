package vmm

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// runVCPU is the loop of one vCPU on its own locked OS thread: enter the
// guest, handle the exit, repeat until the machine stops.
func (m *Machine) runVCPU(v *VCPU) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m.tids[v.id].Store(int32(unix.Gettid()))
	defer m.tids[v.id].Store(0)
	for !m.stopping.Load() {
		err := v.Run()
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // a signal (Go's preemption, or stop)
		}
		if err != nil {
			return m.fault(v, fmt.Sprintf("KVM_RUN: %v", err))
		}
		reason := getU32(v.run[8:])
		switch reason {
		case exitIO:
			if err := m.handleIO(v); err != nil {
				return m.fault(v, err.Error())
			}
		case exitMMIO:
			m.handleMMIO(v)
		case exitIntr, exitIRQWindowOpen:
		case exitHLT:
			// With the in-kernel LAPIC, HLT is handled by KVM; an exit
			// here means all vCPUs halted with interrupts off.
			return m.fault(v, "HLT with no way to wake up")
		case exitShutdown:
			return m.fault(v, "shutdown (triple fault)")
		case exitFailEntry:
			return m.fault(v, fmt.Sprintf("entry failed, hardware reason %#x", getU64(v.run[32:])))
		case exitInternalError:
			sub, n := getU32(v.run[32:]), getU32(v.run[36:])
			detail := fmt.Sprintf("KVM internal error, suberror %d", sub)
			if sub == 1 {
				detail += " (emulation failure)"
			}
			for i := uint32(0); i < n && i < 16; i++ {
				detail += fmt.Sprintf(" %#x", getU64(v.run[40+8*i:]))
			}
			return m.fault(v, detail)
		case exitSystemEvent:
			// KVM_SYSTEM_EVENT_SHUTDOWN 1, RESET 2, CRASH 3.
			switch t := getU32(v.run[32:]); t {
			case 1:
				m.exit(0, "system event: shutdown")
			case 2:
				m.exit(0, "system event: reset")
			default:
				return m.fault(v, fmt.Sprintf("system event %d", t))
			}
		default:
			return m.fault(v, "unexpected exit "+exitName(reason))
		}
	}
	return nil
}

// handleIO dispatches a port I/O exit (struct kvm_run.io), string I/O
// included, after checking that the data lies inside kvm_run.
func (m *Machine) handleIO(v *VCPU) error {
	out := v.run[32] == 1
	size := int(v.run[33])
	port := getU16(v.run[34:])
	count := int(getU32(v.run[36:]))
	off := getU64(v.run[40:])
	if size != 1 && size != 2 && size != 4 {
		return fmt.Errorf("port I/O of size %d at %#x", size, port)
	}
	if off > uint64(len(v.run)) || uint64(size*count) > uint64(len(v.run))-off {
		return fmt.Errorf("port I/O data %d x %d at offset %d outside kvm_run", count, size, off)
	}
	for i := 0; i < count; i++ {
		data := v.run[int(off)+i*size : int(off)+(i+1)*size]
		m.pio.access(port, data, out)
	}
	return nil
}

// handleMMIO dispatches a KVM_EXIT_MMIO (struct kvm_run.mmio: phys_addr at
// 32, data[8] at 40, len at 48, is_write at 52) to the MMIO bus.
func (m *Machine) handleMMIO(v *VCPU) {
	addr := getU64(v.run[32:])
	n := getU32(v.run[48:])
	if n == 0 || n > 8 {
		return
	}
	m.mmio.access(addr, v.run[40:40+n], v.run[52] != 0)
}

// fault builds a GuestFaultError with the vCPU's registers.
func (m *Machine) fault(v *VCPU, reason string) error {
	e := &GuestFaultError{VCPU: v.id, Reason: reason}
	if r, err := v.GetRegs(); err == nil {
		e.Regs = r
	}
	if s, err := v.GetSregs(); err == nil {
		e.Sregs = s
	}
	m.log.Error("guest fault", "vcpu", v.id, "reason", reason, "rip", fmt.Sprintf("%#x", e.Regs.RIP))
	return e
}

func sleepPoll() { time.Sleep(time.Millisecond) }
