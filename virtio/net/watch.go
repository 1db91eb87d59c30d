package vnet

import "github.com/hvnet/hvnet/virtio"

// Lost notifications. A notification lost between driver and device, in
// either direction, can stop a queue for good: with VIRTIO_F_EVENT_IDX the
// driver kicks only when its available index passes avail_event, and the
// device signals only when the used index passes used_event (§2.7.7.2,
// §2.7.10), so after one lost notification neither side sends another.
// Real hardware does not lose them; an emulated platform can (the nested
// test host, RELIABILITY.md). Watch lets a transport's watchdog see both
// cases; it acts with HandleKick and Resignal.

// QueueState is what a transport's watchdog reads of one queue.
type QueueState struct {
	OK        bool   // the queue is ready and not broken
	Avail     uint16 // the driver's available index
	Taken     uint16 // chains the device has taken: Avail != Taken means chains wait
	UsedEvent uint16 // the driver's used_event (EVENT_IDX)
	Published uint16 // the used index the device published
	IRQWanted bool   // used_event is behind Published: the driver waits for a notification
}

// Watch reads queue i's state under its lock. An unknown queue reads as
// not OK.
func (d *Device) Watch(i int) QueueState {
	v, err := d.vqAt(i)
	if err != nil {
		return QueueState{}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	defer d.guard(v, virtio.TrapFaults())
	var s QueueState
	s.Avail, s.Taken, s.OK = v.q.Position()
	if s.OK {
		s.UsedEvent, s.Published, s.IRQWanted = v.q.InterruptWanted()
	}
	return s
}

// Resignal sends queue i's used-buffer notification again (the watchdog
// found it wanted and not acted upon).
func (d *Device) Resignal(i int) error {
	v, err := d.vqAt(i)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	defer d.guard(v, virtio.TrapFaults())
	return v.q.Signal()
}
