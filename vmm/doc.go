// Package vmm is hvnet's virtual machine monitor: it boots stock Linux
// kernels on KVM (x86-64) with no firmware, following the Linux x86 64-bit
// boot protocol, and emulates the few devices such a guest needs: an 8250
// UART console, a PCI host bridge (configuration mechanism #1), a CMOS clock,
// the i8042 reset line and a paravirtual exit port.
//
// Use it by filling a Config and calling New then Run:
//
//	m, err := vmm.New(vmm.Config{Kernel: "bzImage", Initrd: "initrd", MemMiB: 512, CPUs: 2})
//	if err != nil { ... }
//	defer m.Close()
//	status, err := m.Run(ctx) // the guest's exit status (see ExitPort)
//
// The layers, bottom up: kvm.go holds typed handles for the KVM system, VM
// and vCPU file descriptors (every ioctl result checked and wrapped with what
// was attempted); memory.go guest RAM in a memfd (so vhost-user backends can
// map it); boot.go, layout.go and mptable.go the boot protocol and the tables
// a guest reads; cpuid.go the CPUID a vCPU sees; serial.go, pci.go, cmos.go
// the emulated devices on the port-I/O bus (bus.go); machine.go and vcpu.go
// the machine and its vCPU threads.
//
// Network devices: Machine.AddNet (before Run) adds a virtio-net PCI
// function (netdev.go) whose dataplane is package vnet; join it to a switch
// port with package netport. The modern virtio-pci transport
// (virtiopci.go, commoncfg.go) serves its registers from a memory BAR on the
// MMIO bus (mmio.go); queue kicks are KVM ioeventfds waited on by one
// dataplane goroutine per queue, interrupts are MSI-X vectors (msix.go)
// delivered through irqfds on KVM GSI routes (irq.go). The DSDT describes
// the PCI host bridge (aml.go), which is how an ACPI guest finds the bus.
// Machine.AddVhostNet adds a virtio-net function of its own kind
// (VhostNetDevice, vhostnet.go) whose data queues an external vhost-user
// backend runs in the guest's memory, kicked and signalling through the
// same ioeventfds and irqfds; the VMM keeps its configuration space and
// control queue (package vnet, control only).
//
// KVM backed by software virtualisation (the kvm_pvm module) cannot run a
// stock kernel: New refuses with ErrUnusableKVM, and callers (the hvnet CLI,
// the tests) boot a nested test host instead (package nested).
package vmm
