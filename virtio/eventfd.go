package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

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

// ReadNoWait is Read that never blocks, whatever the descriptor's
// O_NONBLOCK flag says now: a vhost-user frontend shares the file
// description and may clear the flag, or drain the counter between a
// poll and the read. It reads with preadv2(RWF_NOWAIT) (eventfds support
// it since Linux 5.12); on an older kernel it falls back to read(2), which
// is non-blocking only while O_NONBLOCK is set. Nothing pending: unix.EAGAIN
// (wrapped).
func (e *EventFD) ReadNoWait() (uint64, error) {
	var b [8]byte
	if !noWaitUnsupported.Load() {
		n, err := unix.Preadv2(e.fd, [][]byte{b[:]}, -1, unix.RWF_NOWAIT)
		switch {
		case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
			noWaitUnsupported.Store(true)
		case err != nil:
			return 0, fmt.Errorf("virtio: read eventfd %d: %w", e.fd, err)
		case n != len(b):
			return 0, fmt.Errorf("virtio: read eventfd %d: short read of %d bytes", e.fd, n)
		default:
			return binary.NativeEndian.Uint64(b[:]), nil
		}
	}
	return e.Read()
}

// noWaitUnsupported is set once preadv2(RWF_NOWAIT) was refused.
var noWaitUnsupported atomic.Bool

// SetNonblock sets O_NONBLOCK on the descriptor (and so on every
// descriptor sharing its file description).
func (e *EventFD) SetNonblock() error {
	if err := unix.SetNonblock(e.fd, true); err != nil {
		return fmt.Errorf("virtio: set O_NONBLOCK on eventfd %d: %w", e.fd, err)
	}
	return nil
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

// NotEventFDError is CheckEventFD's refusal: FD is not an eventfd but
// Kind ("a pipe (read end)", "a socket", "a regular file", ...).
type NotEventFDError struct {
	FD   int
	Kind string
}

func (e *NotEventFDError) Error() string {
	return fmt.Sprintf("fd %d is %s, not an eventfd", e.FD, e.Kind)
}

// CheckEventFD returns nil if fd is an eventfd, a *NotEventFDError saying
// what it is otherwise. Only an eventfd can be signalled (written 1) and
// waited on with a bounded, known cost; a pipe, socket or file handed over
// as a notification descriptor could block the writer or never signal.
// The kind comes from the descriptor's /proc/self/fd link
// ("anon_inode:[eventfd]") and fstat(2).
func CheckEventFD(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("virtio: fstat fd %d: %w", fd, err)
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return fmt.Errorf("virtio: identifying fd %d: %w", fd, err)
	}
	if link == "anon_inode:[eventfd]" {
		return nil
	}
	return &NotEventFDError{FD: fd, Kind: fdKind(fd, st.Mode, link)}
}

// fdKind names what a descriptor is, for NotEventFDError.
func fdKind(fd int, mode uint32, link string) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		switch {
		case err != nil:
			return "a pipe"
		case fl&unix.O_ACCMODE == unix.O_RDONLY:
			return "a pipe (read end)"
		case fl&unix.O_ACCMODE == unix.O_WRONLY:
			return "a pipe (write end)"
		}
		return "a pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device (" + link + ")"
	case unix.S_IFBLK:
		return "a block device (" + link + ")"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFREG:
		if strings.HasPrefix(link, "/memfd:") {
			return "a memfd"
		}
		return "a regular file"
	}
	if k, ok := strings.CutPrefix(link, "anon_inode:"); ok {
		return "an anonymous inode (" + strings.Trim(k, "[]") + ")"
	}
	return "an unknown kind of file (" + link + ")"
}
