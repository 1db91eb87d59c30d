package uplink

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/frame"
)

// mmsgBatch is a preallocated sendmmsg(2) argument: one message per frame,
// each with two iovecs (the virtio_net_hdr, then the frame).
type mmsgBatch struct {
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	hdrs []byte // frame.VnetHdrLen per message
}

func newMmsgBatch(n int) *mmsgBatch {
	b := &mmsgBatch{
		msgs: make([]unix.Mmsghdr, n),
		iovs: make([]unix.Iovec, 2*n),
		hdrs: make([]byte, frame.VnetHdrLen*n),
	}
	for i := range b.msgs {
		b.iovs[2*i].Base = &b.hdrs[frame.VnetHdrLen*i]
		b.iovs[2*i].SetLen(frame.VnetHdrLen)
		b.msgs[i].Hdr.Iov = &b.iovs[2*i]
		b.msgs[i].Hdr.SetIovlen(2)
	}
	return b
}

// hdr returns message i's virtio_net_hdr buffer.
func (b *mmsgBatch) hdr(i int) []byte { return b.hdrs[frame.VnetHdrLen*i : frame.VnetHdrLen*(i+1)] }

// setData points message i's second iovec at data (len(data) > 0).
func (b *mmsgBatch) setData(i int, data []byte) {
	b.iovs[2*i+1].Base = &data[0]
	b.iovs[2*i+1].SetLen(len(data))
}

// clearData drops the references to callers' frames kept in the iovecs.
func (b *mmsgBatch) clearData(n int) {
	for i := range n {
		b.iovs[2*i+1].Base = nil
	}
}

// send calls sendmmsg(2) on messages [from, to) and returns how many were sent.
func (b *mmsgBatch) send(fd, from, to int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[from])), uintptr(to-from), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
