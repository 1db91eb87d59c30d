package virtio

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// EventFD is a Linux eventfd: the kick source (ioeventfd in the VMM, vring
// kick fd in vhost-user) and the interrupt sink (irqfd, vring call fd). It
// implements Signaler.
type EventFD struct {
	fd int
}

var _ Signaler = (*EventFD)(nil)

// NewEventFD creates an eventfd (close-on-exec; non-blocking if asked).
func NewEventFD(nonblock bool) (*EventFD, error) {
	flags := unix.EFD_CLOEXEC
	if nonblock {
		flags |= unix.EFD_NONBLOCK
	}
	fd, err := unix.Eventfd(0, flags)
	if err != nil {
		return nil, fmt.Errorf("virtio: eventfd(0, %#x): %w", flags, err)
	}
	return &EventFD{fd: fd}, nil
}

// EventFDFrom wraps an eventfd received from elsewhere (a vhost-user
// message); the EventFD owns it from now on.
func EventFDFrom(fd int) *EventFD { return &EventFD{fd: fd} }

// FD returns the file descriptor, for KVM_IRQFD, KVM_IOEVENTFD or epoll.
func (e *EventFD) FD() int { return e.fd }

// Read waits for (or, if non-blocking, polls) the counter and returns it,
// resetting it to zero. A non-blocking read with nothing pending returns
// unix.EAGAIN (wrapped).
func (e *EventFD) Read() (uint64, error) {
	var b [8]byte
	n, err := unix.Read(e.fd, b[:])
	if err != nil {
		return 0, fmt.Errorf("virtio: read eventfd %d: %w", e.fd, err)
	}
	if n != len(b) {
		return 0, fmt.Errorf("virtio: read eventfd %d: short read of %d bytes", e.fd, n)
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

// Write adds v to the counter.
func (e *EventFD) Write(v uint64) error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], v)
	n, err := unix.Write(e.fd, b[:])
	if err != nil {
		return fmt.Errorf("virtio: write eventfd %d: %w", e.fd, err)
	}
	if n != len(b) {
		return fmt.Errorf("virtio: write eventfd %d: short write of %d bytes", e.fd, n)
	}
	return nil
}

// Signal writes 1: a notification.
func (e *EventFD) Signal() error { return e.Write(1) }

// Close closes the descriptor.
func (e *EventFD) Close() error {
	if err := unix.Close(e.fd); err != nil {
		return fmt.Errorf("virtio: close eventfd %d: %w", e.fd, err)
	}
	e.fd = -1
	return nil
}
