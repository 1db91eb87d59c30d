package uplink

import (
	"errors"
	"fmt"

	"github.com/hvnet/hvnet/frame"
	vswitch "github.com/hvnet/hvnet/switch"

	"golang.org/x/sys/unix"
)

// txPath is a way of sending frames on the TX socket. Calls are serialised
// by the Port. The frames belong to the caller and are not kept after send
// returns. Implementations allocate nothing per call.
type txPath interface {
	// send transmits frames and returns how many the kernel accepted; err
	// says why the others were not (the first failure).
	send(frames []vswitch.Frame) (int, error)
	// mode names the implementation.
	mode() TXMode
	close() error
}

var (
	_ txPath = (*txRing)(nil)
	_ txPath = (*txMmsg)(nil)
)

// errRingFull: the TX ring had no free slot even after waiting for the kernel.
var errRingFull = errors.New("TX ring full")

// TPACKET_V2 TX slot layout (packet_mmap.rst, "TPACKET_V2 --> TPACKET_V3"
// and linux/if_packet.h): struct tpacket2_hdr (32 bytes: tp_status u32,
// tp_len u32, ...), then the data at TPACKET2_HDRLEN - sizeof(sockaddr_ll)
// = 32, where PACKET_VNET_HDR puts the virtio_net_hdr, then the frame.
// tp_len counts the header too.
const (
	tx2Status = 0
	tx2Len    = 4
	tx2Data   = 32
	tpAvail   = unix.TP_STATUS_AVAILABLE
)

// txRing sends through a PACKET_TX_RING: frames are copied into free slots,
// marked TP_STATUS_SEND_REQUEST, and one send(2) hands them all to the kernel.
type txRing struct {
	fd    int
	ring  []byte
	slots int
	next  int
}

func newTXRing(fd, slots int) (*txRing, error) {
	if err := setInt(fd, unix.PACKET_VERSION, unix.TPACKET_V2, "PACKET_VERSION"); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// PACKET_LOSS: a malformed frame is skipped (its slot freed) instead of
	// stopping the ring at TP_STATUS_WRONG_FORMAT.
	if err := setInt(fd, unix.PACKET_LOSS, 1, "PACKET_LOSS"); err != nil {
		unix.Close(fd)
		return nil, err
	}
	req := unix.TpacketReq{Block_size: txSlotSize, Block_nr: uint32(slots), Frame_size: txSlotSize, Frame_nr: uint32(slots)}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setsockopt PACKET_TX_RING %d x %d: %w", slots, txSlotSize, err)
	}
	ring, err := unix.Mmap(fd, 0, slots*txSlotSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap TX ring: %w", err)
	}
	return &txRing{fd: fd, ring: ring, slots: slots}, nil
}

func (t *txRing) mode() TXMode { return TXRing }

// kick asks the kernel to send the slots marked SEND_REQUEST; with wait it
// blocks until they are sent (SO_SNDTIMEO bounds it).
func (t *txRing) kick(wait bool) error {
	flags := uintptr(unix.MSG_DONTWAIT)
	if wait {
		flags = 0
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(t.fd), 0, 0, flags, 0, 0)
		switch e {
		case 0, unix.EAGAIN:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

func (t *txRing) send(frames []vswitch.Frame) (int, error) {
	queued := 0
	var ferr error
	for i := range frames {
		f := &frames[i]
		if len(f.Data) < 14 || len(f.Data) > txSlotSize-tx2Data-frame.VnetHdrLen {
			ferr = fmt.Errorf("frame of %d bytes", len(f.Data))
			continue
		}
		slot := t.ring[t.next*txSlotSize : (t.next+1)*txSlotSize]
		if loadStatus(slot, tx2Status) != tpAvail {
			// Ring full: let the kernel drain it, then look again.
			if err := t.kick(true); err != nil {
				return t.fail(queued, err)
			}
			if loadStatus(slot, tx2Status) != tpAvail {
				t.kick(false)
				return queued, errRingFull
			}
		}
		f.Off.Encode(slot[tx2Data:])
		copy(slot[tx2Data+frame.VnetHdrLen:], f.Data)
		putU32(slot[tx2Len:], uint32(frame.VnetHdrLen+len(f.Data)))
		storeStatus(slot, tx2Status, unix.TP_STATUS_SEND_REQUEST)
		frames[queued], frames[i] = frames[i], frames[queued] // sent ones first, in order (Port.Send)
		queued++
		if t.next++; t.next == t.slots {
			t.next = 0
		}
	}
	if queued == 0 {
		return 0, ferr
	}
	if err := t.kick(false); err != nil {
		return t.fail(queued, err)
	}
	// A send(2) without waiting stops at the first frame for which the
	// socket's send buffer has no room (sock_alloc_send_skb, tpacket_snd
	// in net/packet/af_packet.c) and returns what it took; the rest stay
	// SEND_REQUEST in the ring until the next send(2), which may be
	// seconds away (a bond's member right after a failover held a ping's
	// requests until the next ping). So when our last frame is still
	// waiting for the kernel, wait for it (SO_SNDTIMEO bounds it).
	last := t.next - 1
	if last < 0 {
		last = t.slots - 1
	}
	if loadStatus(t.ring[last*txSlotSize:], tx2Status) == unix.TP_STATUS_SEND_REQUEST {
		if err := t.kick(true); err != nil {
			return t.fail(queued, err)
		}
	}
	return queued, ferr
}

// fail handles a send(2) error. With the link down (ENETDOWN, ENXIO) the
// kernel leaves our requests in the ring; take them back so that stale
// frames do not burst out when the link returns, and report none sent.
// The kernel walks the ring from its own head and stops at the first slot
// not marked SEND_REQUEST, so the pending slots, a run ending just before
// t.next, are freed backwards and t.next rewinds to the kernel's head.
func (t *txRing) fail(queued int, err error) (int, error) {
	if !errors.Is(err, unix.ENETDOWN) && !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.ENODEV) {
		return queued, fmt.Errorf("send on TX ring: %w", err)
	}
	for range t.slots {
		prev := t.next - 1
		if prev < 0 {
			prev = t.slots - 1
		}
		slot := t.ring[prev*txSlotSize:]
		if loadStatus(slot, tx2Status) != unix.TP_STATUS_SEND_REQUEST {
			break
		}
		storeStatus(slot, tx2Status, tpAvail)
		t.next = prev
	}
	return 0, fmt.Errorf("send on TX ring: %w", err)
}

func (t *txRing) close() error {
	err := unix.Munmap(t.ring)
	if e := unix.Close(t.fd); err == nil {
		err = e
	}
	return err
}

// txMmsg sends with sendmmsg(2): each frame is a message of two iovecs,
// the virtio_net_hdr and the caller's frame, so nothing is copied in user
// space.
type txMmsg struct {
	fd  int
	b   *mmsgBatch
	idx []int // the frame of each message in the batch
}

func newTXMmsg(fd, batch int) (*txMmsg, error) {
	b := newMmsgBatch(batch)
	return &txMmsg{fd: fd, b: b, idx: make([]int, len(b.msgs))}, nil
}

func (t *txMmsg) mode() TXMode { return TXSendmmsg }

func (t *txMmsg) send(frames []vswitch.Frame) (int, error) {
	sent := 0
	var ferr error
	for next := 0; next < len(frames); {
		n := 0
		for ; next < len(frames) && n < len(t.b.msgs); next++ {
			f := &frames[next]
			if len(f.Data) < 14 || len(f.Data) > maxFrame {
				ferr = fmt.Errorf("frame of %d bytes", len(f.Data))
				continue
			}
			f.Off.Encode(t.b.hdr(n))
			t.b.setData(n, f.Data)
			t.idx[n] = next
			n++
		}
		for i := 0; i < n; {
			k, err := t.b.send(t.fd, i, n)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if err == unix.EINVAL || err == unix.EMSGSIZE {
					// The kernel refused this frame (bad offload header):
					// skip it, send the rest.
					ferr = fmt.Errorf("sendmmsg: %w", err)
					i++
					continue
				}
				t.b.clearData(n)
				return sent, fmt.Errorf("sendmmsg: %w", err)
			}
			// Sent ones first, in order (Port.Send): each swaps with a
			// frame before it that was skipped or refused.
			for _, at := range t.idx[i : i+k] {
				frames[sent], frames[at] = frames[at], frames[sent]
				sent++
			}
			i += k
		}
		t.b.clearData(n)
	}
	return sent, ferr
}

func (t *txMmsg) close() error { return unix.Close(t.fd) }
