package main

import "golang.org/x/sys/unix"

// outb writes val to an x86 I/O port; the calling thread needs ioperm(2)
// access to it. Implemented in port_amd64.s.
func outb(port uint16, val uint8)

// writePort writes one byte to an I/O port with ioperm(2) and OUT. Debian's
// cloud kernel has no CONFIG_DEVPORT, so /dev/port is not available.
func writePort(port uint16, val byte) error {
	// ioperm applies to the calling thread only; the caller has locked it.
	if err := unix.Ioperm(int(port), 1, 1); err != nil {
		return err
	}
	outb(port, val)
	return nil
}
