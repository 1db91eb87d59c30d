package virtio

import "encoding/binary"

// The device writes the used ring only through usedPut16 and usedDirty,
// which mark what was written in the dirty log (after the write).

// usedPut16 writes v at offset off of the used ring.
func (q *Queue) usedPut16(off uint64, v uint16) {
	Store16(q.used[off:], v)
	q.usedDirty(off, 2)
}

// usedDirty marks n bytes of the used ring at off as written.
func (q *Queue) usedDirty(off, n uint64) { q.mem.MarkDirty(q.usedAddr+off, n) }

// AddUsed stages a used ring entry for chain head with len bytes written by
// the device (§2.7.8). Entries become visible to the driver at Flush or
// PublishUsed; add a batch, then publish once.
func (q *Queue) AddUsed(head uint16, n uint32) error {
	if !q.ready {
		return ErrQueueNotReady
	}
	if head >= q.size {
		return &DescIndexError{Index: head, TableLen: uint32(q.size)}
	}
	q.usedDirty(q.putUsed(head, n), usedElem)
	return nil
}

// putUsed writes the next used entry, struct virtq_used_elem {le32 id;
// le32 len;}, in one store, and returns its offset in the ring (for
// usedDirty).
func (q *Queue) putUsed(head uint16, n uint32) uint64 {
	off := ringHdr + usedElem*uint64(q.nextUsed&(q.size-1))
	binary.LittleEndian.PutUint64(q.used[off:], uint64(head)|uint64(n)<<32)
	q.nextUsed++
	return off
}

// AddUsedRead stages used entries, in order, for chains the device only
// read (a transmit queue's: len 0, §5.1.6.2): AddUsed(h, 0) for each of
// heads, in one call. It stops at the first head out of range, with the
// entries before it staged.
func (q *Queue) AddUsedRead(heads []uint16) error {
	if !q.ready {
		return ErrQueueNotReady
	}
	for _, h := range heads {
		if h >= q.size {
			return &DescIndexError{Index: h, TableLen: uint32(q.size)}
		}
		q.usedDirty(q.putUsed(h, 0), usedElem)
	}
	return nil
}

// AddUsedInOrder stages heads as used, in order, for a device that uses
// chains in the order they were made available (VIRTIO_F_IN_ORDER) and
// only read them (len 0): one used entry, for the last of heads, with the
// used index moved past all of them (virtio 1.2 §2.7.9: "the device can
// write out a single used ring entry with the id corresponding to the
// head entry of the descriptor chain describing the last buffer in the
// batch"; the driver takes every chain before it as used). Only with
// VIRTIO_F_IN_ORDER negotiated: a driver without it reads every entry. It
// stages nothing when the last head is out of range.
func (q *Queue) AddUsedInOrder(heads []uint16) error {
	if !q.ready {
		return ErrQueueNotReady
	}
	if len(heads) == 0 {
		return nil
	}
	last := heads[len(heads)-1]
	if last >= q.size {
		return &DescIndexError{Index: last, TableLen: uint32(q.size)}
	}
	q.nextUsed += uint16(len(heads) - 1)
	q.usedDirty(q.putUsed(last, 0), usedElem)
	return nil
}

// PublishUsed makes the staged used entries visible: a barrier, then the used
// index (virtio 1.2 §2.7.8.2: the used elements, len included, are written
// before idx is updated).
func (q *Queue) PublishUsed() {
	if !q.ready || q.nextUsed == q.publishedUsed {
		return
	}
	q.fence()
	q.usedPut16(2, q.nextUsed)
	q.publishedUsed = q.nextUsed
}

// NeedsNotify decides whether the driver wants a used-buffer notification
// for the entries published since the last decision, and records the
// decision.
//
// Virtio 1.2 §2.7.7.2: with VIRTIO_F_EVENT_IDX the device notifies when the
// used index passes used_event (vring_need_event); without it, unless the
// driver set VIRTQ_AVAIL_F_NO_INTERRUPT.
func (q *Queue) NeedsNotify() bool {
	if !q.ready {
		return false
	}
	q.fence() // the used index store must be visible before reading used_event
	newIdx, old := q.publishedUsed, q.signalledUsed
	valid := q.signalledValid
	q.signalledUsed, q.signalledValid = newIdx, true
	if q.eventIdx {
		if !valid {
			return true // first decision since enable: as Linux vhost does
		}
		return NeedEvent(q.usedEvent(), newIdx, old)
	}
	if valid && newIdx == old {
		return false
	}
	return Load16(q.avail[0:])&AvailFNoInterrupt == 0
}

// NeedEvent is vring_need_event of virtio 1.2 §2.7.7.2 (and Linux
// include/uapi/linux/virtio_ring.h): whether moving an index from old to
// newIdx passes event, i.e. event is in [old, newIdx) modulo 2^16.
func NeedEvent(event, newIdx, old uint16) bool {
	return newIdx-event-1 < newIdx-old
}

// Flush publishes the staged used entries and signals the driver if
// NeedsNotify says so. It returns the signaler's error.
func (q *Queue) Flush() error {
	if !q.ready || q.nextUsed == q.publishedUsed {
		return nil
	}
	q.PublishUsed()
	if q.NeedsNotify() && q.signaler != nil {
		return q.signaler.Signal()
	}
	return nil
}

// DisableNotification asks the driver not to send available-buffer
// notifications (kicks) while the device is busy polling the ring
// (§2.7.10: VIRTQ_USED_F_NO_NOTIFY; with EVENT_IDX avail_event is simply left
// behind).
func (q *Queue) DisableNotification() {
	if !q.ready || q.eventIdx {
		return
	}
	q.usedPut16(0, UsedFNoNotify)
}

// EnableNotification asks the driver to kick on its next available buffer
// and reports whether buffers arrived meanwhile, in which case the caller
// must keep processing (otherwise the kick may have been suppressed).
//
// Virtio 1.2 §2.7.10: with VIRTIO_F_EVENT_IDX the device writes avail_event
// (the avail index at which it wants a kick); otherwise it clears
// VIRTQ_USED_F_NO_NOTIFY. A full barrier separates that store from the
// re-read of the available index.
func (q *Queue) EnableNotification() bool {
	if !q.ready || q.broken != nil {
		return false
	}
	if q.eventIdx {
		q.usedPut16(ringHdr+usedElem*uint64(q.size), q.lastAvail) // avail_event
	} else {
		q.usedPut16(0, 0)
	}
	q.fence()
	return q.availIdx() != q.lastAvail
}

// InterruptWanted reports whether the driver asks, by its used_event
// (VIRTIO_F_EVENT_IDX, §2.7.7.2), for a used-buffer notification for
// entries the device has already published: used_event is behind the
// published used index. It also returns both indices. A driver that got
// the notification moves used_event on (or catches up), so a transport
// that reads the same wanted state twice, a while apart, may take the
// notification as lost and signal again (a spurious one is harmless,
// §2.7.7). Without EVENT_IDX, or on a queue not ready or broken: false.
func (q *Queue) InterruptWanted() (usedEvent, published uint16, wanted bool) {
	if !q.ready || q.broken != nil || !q.eventIdx {
		return 0, 0, false
	}
	q.fence()
	ev := q.usedEvent()
	return ev, q.publishedUsed, int16(q.publishedUsed-ev) > 0
}

// usedEvent is the driver's used_event, after the available ring's
// entries (§2.7.6; with EVENT_IDX).
func (q *Queue) usedEvent() uint16 {
	return Load16(q.avail[ringHdr+2*uint64(q.size):])
}

// Signal sends a used-buffer notification through the queue's signaler,
// whatever the suppression state (a transport's re-send; Flush decides
// the ordinary ones).
func (q *Queue) Signal() error {
	if !q.ready || q.signaler == nil {
		return nil
	}
	return q.signaler.Signal()
}
