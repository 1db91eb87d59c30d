package vnet

import (
	"errors"
	"sync"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
)

const (
	// txBatch is the most frames handed to the Sink in one Deliver.
	txBatch = 64
	// txArenaLen is the per-queue buffer every frame is copied into
	// (single fetch); a batch is delivered early when it is full. It
	// holds a batch of 64 full-size (1514-byte) frames, or three 64 KiB
	// GSO frames.
	txArenaLen = 256 << 10
	// txBudget is the most batches ProcessTX handles before returning.
	txBudget = 16
)

var (
	errTxWritable = errors.New("device-writable buffer in a TX chain")
	errRunt       = errors.New("frame shorter than an Ethernet header")
	errOversize   = errors.New("frame longer than MaxFrameLen")
)

type txQueue struct {
	vq
	frames [txBatch]Frame
	heads  [txBatch]uint16 // the chains popped, in order (frames' and dropped ones')
	tails  bool            // a frame of frames has a tail: its chain is used after delivery
	// inOrder: VIRTIO_F_IN_ORDER negotiated (txUsed writes one entry a batch)
	inOrder bool
	// hdrErr: the last refused header's error, logged from here (a
	// guest's stream of bad headers allocates nothing)
	hdrErr HeaderError
	arena  *txArena // taken from txArenas at the first batch, given back by Release
	hdr    [HdrLen]byte
}

type txArena = [txArenaLen]byte

// txArenas recycles transmit arenas between devices. A vhost-user session
// is a new device: without it a frontend reconnecting in a loop had the
// daemon allocate 256 KiB a queue a session, and the garbage collection
// that drove took CPU time from every other port (BenchmarkNextToHostile).
// An arena holds only frames copied whole (copyTX fills every byte of a
// frame's slice before it is used), so bytes a previous device left in it
// are never read.
var txArenas = sync.Pool{New: func() any { return new(txArena) }}

// Release gives the device's transmit arenas back for other devices: call
// it when the device's queues will not be processed again (a vhost-user
// session's end). A queue processed after all takes an arena again.
func (d *Device) Release() {
	for _, p := range d.pairs {
		t := &p.tx
		t.mu.Lock()
		if t.arena != nil {
			txArenas.Put(t.arena)
			t.arena = nil
		}
		t.mu.Unlock()
	}
}

// ProcessTX moves the frames the guest made available on pair's transmit
// queue to the Sink, in batches, and returns the chains to the guest
// (virtio 1.2 §5.1.6.2). It returns true when it stopped on its budget with
// chains pending: call it again.
//
// Kick suppression follows §2.7.10: notifications are off while the ring is
// drained and re-enabled when it is empty, re-checking for a race.
func (d *Device) ProcessTX(pairIdx int) bool {
	if pairIdx < 0 || pairIdx >= len(d.pairs) || d.controlOnly {
		return false
	}
	t := &d.pairs[pairIdx].tx
	t.mu.Lock()
	defer t.mu.Unlock()
	defer d.guard(&t.vq, virtio.TrapFaults())
	q := t.q
	if !q.Ready() || q.Broken() != nil {
		return false
	}
	features := d.features.Load()
	for range txBudget {
		q.DisableNotification()
		empty, ok := d.txBatch(t, features)
		if !ok {
			return false
		}
		if empty && !q.EnableNotification() {
			return false
		}
	}
	return true
}

// pollTX is ProcessTX for a busy-polling caller: notifications stay off
// (§2.7.10) even when the ring is found empty, and it reports whether any
// chain was taken. The caller re-enables them with armTX before it sleeps.
func (d *Device) pollTX(pairIdx int) bool {
	if pairIdx < 0 || pairIdx >= len(d.pairs) || d.controlOnly {
		return false
	}
	t := &d.pairs[pairIdx].tx
	t.mu.Lock()
	defer t.mu.Unlock()
	defer d.guard(&t.vq, virtio.TrapFaults())
	q := t.q
	if !q.Ready() || q.Broken() != nil {
		return false
	}
	n, err := q.Pending()
	if err != nil {
		// An available index more than a ring ahead broke the queue
		// here, before any Pop: report it like any other fault.
		d.fault(&t.vq, err)
		return false
	}
	if n == 0 {
		return false // the common idle case: one load of the avail index
	}
	q.DisableNotification()
	features := d.features.Load()
	for range txBudget {
		if empty, ok := d.txBatch(t, features); empty || !ok {
			break
		}
	}
	return true
}

// armTX re-enables available-buffer notifications on pair's transmit queue
// and reports whether chains arrived meanwhile (then poll again).
func (d *Device) armTX(pairIdx int) bool {
	if pairIdx < 0 || pairIdx >= len(d.pairs) {
		return false
	}
	t := &d.pairs[pairIdx].tx
	t.mu.Lock()
	defer t.mu.Unlock()
	defer d.guard(&t.vq, virtio.TrapFaults())
	return t.q.EnableNotification()
}

// txBatch handles up to txBatch chains. It reports whether the ring was
// found empty, and false in ok on a fault.
func (d *Device) txBatch(t *txQueue, features uint64) (empty, ok bool) {
	q := t.q
	if t.arena == nil {
		t.arena = txArenas.Get().(*txArena)
	}
	t.inOrder = virtio.HasFeature(features, virtio.FInOrder)
	// n frames to deliver, m chains popped (the n frames' and the
	// dropped ones', in the order popped: their used entries go in that
	// order, as VIRTIO_F_IN_ORDER requires).
	n, m, used := 0, 0, 0
	var bytes uint64
	defer func() {
		bytes += d.txDeliver(t, n, m)
		d.stats.txBytes.Add(bytes)
		d.flush(&t.vq)
	}()

	for popped := 0; popped < txBatch; popped++ {
		c, err := q.Pop()
		if c == nil {
			if err != nil {
				d.fault(&t.vq, err)
				return false, false
			}
			return true, true
		}
		if err == nil && len(c.Writable()) != 0 {
			err = errTxWritable
		}
		if err != nil {
			d.drop(&t.vq, d.stats.txBadChain.Add(1), "tx chain", err)
			t.heads[m] = c.Head
			m++
			continue
		}
		total := c.ReadableLen()
		switch {
		case total < HdrLen+frame.EthHdrLen:
			d.drop(&t.vq, d.stats.txRunt.Add(1), "tx frame", errRunt)
			t.heads[m] = c.Head
			m++
			continue
		case total > HdrLen+MaxFrameLen:
			d.drop(&t.vq, d.stats.txOversize.Add(1), "tx frame", errOversize)
			t.heads[m] = c.Head
			m++
			continue
		}
		frameLen := int(total) - HdrLen
		// Single fetch: the header and the frame's headers are copied
		// once into host memory the guest cannot reach, and everything
		// after this (the header check here, classification, ACLs,
		// learning, GSO in the switch) reads only the copy. The guest may
		// rewrite its buffers from another vCPU at any moment; a length,
		// tag or offset read twice from them could differ between the
		// check and the use. Firecracker's net device copies every TX
		// frame too. For a sink that takes frames in two parts the
		// payload behind the first frame.HeadLen bytes, when it lies in
		// one buffer and holds none of the headers the sink reads,
		// stays in the guest's buffer (Frame.Tail) and is copied once,
		// where it goes (a receiving guest's buffer): one copy of the
		// payload instead of two.
		headLen := frameLen
		if d.tails != nil && frameLen > frame.HeadLen {
			headLen = frame.HeadLen
		}
		if used+frameLen > len(t.arena) {
			bytes += d.txDeliver(t, n, m)
			n, m, used = 0, 0, 0
		}
		data := t.arena[used : used+frameLen : used+frameLen]
		tail, err := copyTX(q, c, t.hdr[:], data, headLen)
		if err != nil {
			d.drop(&t.vq, d.stats.txBadChain.Add(1), "tx chain", err)
			t.heads[m] = c.Head
			m++
			continue
		}
		off := frame.DecodeOffload(t.hdr[:])
		if !off.None() { // no offload: always valid
			h, _ := DecodeHeader(t.hdr[:])
			if reason := checkTX(h, frameLen, features); reason != "" {
				t.hdrErr = HeaderError{Header: h, FrameLen: frameLen, Reason: reason}
				d.drop(&t.vq, d.stats.txBadHeader.Add(1), "tx header", &t.hdrErr)
				t.heads[m] = c.Head
				m++
				continue
			}
		}
		if tail != nil {
			if d.tails.HeadNeed(data[:headLen], off) <= headLen {
				data = data[:headLen:headLen]
			} else {
				// The sink reads further (a long chain of IPv6
				// extension headers): the rest is copied behind the
				// head, each byte still read once.
				copy(data[headLen:], tail)
				tail = nil
			}
		}
		used += len(data)
		f := &t.frames[n]
		f.Data, f.Tail, f.Off = data, tail, off
		t.tails = t.tails || tail != nil
		t.heads[m] = c.Head
		n++
		m++
	}
	return false, true
}

// txDeliver hands the batch's first n frames to the Sink and stages the
// used entries of its m chains (the frames' and the dropped ones', in the
// order popped); it returns the frames' bytes. When no frame of them has a
// tail (each is whole in host memory: the single fetch's copy) the chains
// go back to the guest first, published at once, so that it refills its
// ring while the frames are switched and written to their receivers, as
// DPDK's vhost dequeue returns a burst's buffers before the application
// sees the packets. A frame with a tail still reads the guest's buffer
// during delivery: its chains are used only after.
func (d *Device) txDeliver(t *txQueue, n, m int) (bytes uint64) {
	if m == 0 {
		return 0
	}
	early := !t.tails
	if early {
		d.txUsed(t, m)
		d.flush(&t.vq)
	}
	if n > 0 {
		if d.qsink != nil && d.activePairs.Load() > 1 {
			d.qsink.DeliverQueue(t.index/2, t.frames[:n])
		} else {
			d.sink.Deliver(t.frames[:n])
		}
	}
	for i := range t.frames[:n] {
		f := &t.frames[i]
		bytes += uint64(f.Len())
		f.Data, f.Tail = nil, nil
	}
	if !early {
		d.txUsed(t, m)
	}
	t.tails = false
	d.stats.txPackets.Add(uint64(n))
	return bytes
}

// txUsed stages the used entries of the batch's first m chains, in the
// order popped. With VIRTIO_F_IN_ORDER it writes one entry, the last
// chain's, and moves the used index past all m (§2.7.9: the driver takes
// every chain made available before it as used too; a transmit chain's
// length is 0 whatever happened to it).
func (d *Device) txUsed(t *txQueue, m int) {
	// Cannot fail: the heads came from Pop on this ready queue.
	if t.inOrder {
		_ = t.q.AddUsedInOrder(t.heads[:m])
	} else {
		_ = t.q.AddUsedRead(t.heads[:m])
	}
}

// copyTX copies a TX chain's total readable bytes: the virtio-net header
// into hdr and the frame into data (len(data) == total-HdrLen), in one pass
// over the descriptors, each bounds-checked and sliced once. Whatever the
// layout (DPDK and Linux with ANY_LAYOUT/VERSION_1 put the header in front
// of the frame in one descriptor; others give it a descriptor of its own),
// every byte is read once. A buffer that spans memory regions takes the
// general path.
//
// With headLen < len(data) only the first headLen bytes of the frame are
// copied when everything after them lies in one buffer: that buffer's
// slice of guest memory is returned as the tail (data[headLen:] is then
// not written). Otherwise the whole frame is copied and tail is nil.
func copyTX(q *virtio.Queue, c *virtio.Chain, hdr, data []byte, headLen int) (tail []byte, err error) {
	if b := c.First(); c.Len() == 1 && len(b) == HdrLen+len(data) {
		// The common chain: header and frame in one buffer, in one
		// region (the loop below does the same, in more steps).
		*(*[HdrLen]byte)(hdr) = [HdrLen]byte(b)
		b = b[HdrLen:]
		if headLen < len(data) {
			n := copy(data[:headLen], b)
			return b[n:], nil
		}
		copy(data, b)
		return nil, nil
	}
	off := 0
	for i, d := range c.Readable() {
		b := c.First() // the walk's lookup of the first buffer
		if i > 0 || b == nil {
			var err error
			if b, err = q.Slice(d.Addr, uint64(d.Len)); err != nil {
				return nil, copyTXSlow(q.Memory(), c, hdr, data)
			}
		}
		if off == 0 && len(b) >= HdrLen {
			// The header whole in the first buffer (every driver that
			// pushes it in front of the frame): two loads, no call.
			*(*[HdrLen]byte)(hdr) = [HdrLen]byte(b)
			off, b = HdrLen, b[HdrLen:]
		} else if off < HdrLen {
			n := copy(hdr[off:], b)
			off += n
			if off < HdrLen {
				continue
			}
			b = b[n:]
		}
		at := off - HdrLen
		if at <= headLen && at+len(b) == len(data) && headLen < len(data) {
			// The rest of the frame is in this buffer: copy up to the
			// head's end, and leave the rest where it is.
			n := copy(data[at:headLen], b)
			return b[n:], nil
		}
		off += copy(data[at:], b)
	}
	return nil, nil
}

// copyTXSlow is copyTX for chains with a buffer across memory regions.
func copyTXSlow(mem *virtio.Memory, c *virtio.Chain, hdr, data []byte) error {
	if _, err := c.ReadAt(mem, hdr, 0); err != nil {
		return err
	}
	_, err := c.ReadAt(mem, data, HdrLen)
	return err
}
