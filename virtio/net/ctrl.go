package vnet

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/hvnet/hvnet/virtio"
)

// Control queue classes and commands, virtio 1.2 §5.1.6.5.
const (
	CtrlRx         = 0
	CtrlRxPromisc  = 0
	CtrlRxAllMulti = 1
	CtrlRxAllUni   = 2
	CtrlRxNoMulti  = 3
	CtrlRxNoUni    = 4
	CtrlRxNoBcast  = 5

	CtrlMAC         = 1
	CtrlMACTableSet = 0
	CtrlMACAddrSet  = 1

	CtrlVLAN    = 2
	CtrlVLANAdd = 0
	CtrlVLANDel = 1

	CtrlAnnounce    = 3
	CtrlAnnounceAck = 0

	CtrlMQ           = 4
	CtrlMQVQPairsSet = 0
	CtrlMQVQPairsMin = 1
	CtrlMQVQPairsMax = 0x8000

	CtrlGuestOffloads    = 5
	CtrlGuestOffloadsSet = 0

	// Ack values (virtio_net_ctrl_ack).
	CtrlOK  = 0
	CtrlErr = 1
)

// ctrlMaxCmd caps a command's readable bytes (the MAC tables are the
// largest: 2 × (4 + 6·n)); longer commands are acknowledged with ERR.
const ctrlMaxCmd = 8 << 10

// RXFilter is the receive filtering state the driver set through the control
// queue (§5.1.6.5.1-§5.1.6.5.3). The device itself does not filter: the
// switch may consult it. The initial state (and the state after Reset) is
// promiscuous, as a device without VIRTIO_NET_F_CTRL_RX must be; drivers
// that negotiated it set the modes they want.
type RXFilter struct {
	Promisc, AllMulti, AllUni, NoMulti, NoUni, NoBcast bool
	// MAC is the address set with MAC_ADDR_SET (zero if none).
	MAC [6]byte
	// Unicast and Multicast are the MAC_TABLE_SET tables.
	Unicast, Multicast [][6]byte
	// VLANs is a bitmap of the VLAN IDs added (bit v of word v/64).
	VLANs [4096 / 64]uint64
}

// VLAN reports whether VLAN id vid is in the filter.
func (f *RXFilter) VLAN(vid uint16) bool {
	return vid < 4096 && f.VLANs[vid/64]&(1<<(vid%64)) != 0
}

type ctrlQueue struct {
	vq
	buf    [ctrlMaxCmd]byte
	filter RXFilter
	// uni, multi: MAC_TABLE_SET's tables as parsed, before the command
	// is taken whole (reused: a guest's stream of tables allocates
	// only while they grow, to at most ctrlMaxCmd/6 entries)
	uni, multi [][6]byte
}

// ctrlBudget is the most commands ProcessCtrl executes a call: a guest
// that keeps its control queue full holds the queue's lock (and a VMM's
// watchdog, which calls ProcessCtrl) for at most this many.
const ctrlBudget = 64

// CtrlError is a control command refused, with its class, command and why.
type CtrlError struct {
	Class, Cmd uint8
	Reason     string
}

func (e *CtrlError) Error() string {
	return fmt.Sprintf("vnet: control class %d command %d: %s", e.Class, e.Cmd, e.Reason)
}

// Filter returns a copy of the receive filter state.
func (d *Device) Filter() RXFilter {
	d.ctrl.mu.Lock()
	defer d.ctrl.mu.Unlock()
	f := d.ctrl.filter
	f.Unicast = slices.Clone(f.Unicast)
	f.Multicast = slices.Clone(f.Multicast)
	return f
}

// ProcessCtrl executes the commands on the control queue, writing each ack
// (§5.1.6.5: class, command, data readable; ack writable), and returns how
// many chains it took: at most ctrlBudget (64). When it took that many it
// leaves the queue's notifications off: call it again (HandleKick
// reports it).
func (d *Device) ProcessCtrl() (n int) {
	c := &d.ctrl
	c.mu.Lock()
	defer c.mu.Unlock()
	defer d.guard(&c.vq, virtio.TrapFaults())
	q := c.q
	if !q.Ready() || q.Broken() != nil {
		return 0
	}
	defer d.flush(&c.vq)
	for {
		q.DisableNotification()
		for {
			if n == ctrlBudget {
				return n
			}
			ch, err := q.Pop()
			if ch == nil {
				if err != nil {
					d.fault(&c.vq, err)
					return n
				}
				break
			}
			n++
			if err == nil && (ch.ReadableLen() < 2 || ch.WritableLen() < 1) {
				err = &CtrlError{Reason: "chain without class, command and ack"}
			}
			if err != nil {
				d.drop(&c.vq, d.stats.ctrlErr.Add(1), "control chain", err)
				_ = q.AddUsed(ch.Head, 0)
				continue
			}
			ack := uint8(CtrlErr)
			if ch.ReadableLen() > ctrlMaxCmd {
				err = &CtrlError{Reason: "command too long"}
			} else if n, rerr := ch.ReadAt(q.Memory(), c.buf[:ch.ReadableLen()], 0); rerr != nil {
				err = rerr
			} else {
				err = d.execCtrl(c.buf[0], c.buf[1], c.buf[2:n])
			}
			if err == nil {
				ack = CtrlOK
				d.stats.ctrlOK.Add(1)
				if d.onControl != nil {
					d.onControl(c.buf[0], c.buf[1])
				}
			} else {
				d.drop(&c.vq, d.stats.ctrlErr.Add(1), "control command", err)
			}
			c.buf[0] = ack
			_, _ = ch.WriteAt(q.Memory(), c.buf[:1], 0)
			_ = q.AddUsed(ch.Head, 1)
		}
		if !q.EnableNotification() {
			return n
		}
	}
}

// execCtrl applies one command; the caller holds the control queue lock.
func (d *Device) execCtrl(class, cmd uint8, data []byte) error {
	f := d.features.Load()
	bad := func(reason string) error { return &CtrlError{Class: class, Cmd: cmd, Reason: reason} }
	need := func(bit uint, name string) error {
		if !has(f, bit) {
			return bad(name + " not negotiated")
		}
		return nil
	}
	flt := &d.ctrl.filter
	switch class {
	case CtrlRx: // §5.1.6.5.1
		if err := need(FCtrlRx, "VIRTIO_NET_F_CTRL_RX"); err != nil {
			return err
		}
		if len(data) != 1 {
			return bad("want one byte on/off")
		}
		on := data[0] != 0
		switch cmd {
		case CtrlRxPromisc:
			flt.Promisc = on
		case CtrlRxAllMulti:
			flt.AllMulti = on
		case CtrlRxAllUni, CtrlRxNoMulti, CtrlRxNoUni, CtrlRxNoBcast:
			if err := need(FCtrlRxExtra, "VIRTIO_NET_F_CTRL_RX_EXTRA"); err != nil {
				return err
			}
			switch cmd {
			case CtrlRxAllUni:
				flt.AllUni = on
			case CtrlRxNoMulti:
				flt.NoMulti = on
			case CtrlRxNoUni:
				flt.NoUni = on
			default:
				flt.NoBcast = on
			}
		default:
			return bad("unknown command")
		}
	case CtrlMAC: // §5.1.6.5.2
		switch cmd {
		case CtrlMACAddrSet:
			if err := need(FCtrlMACAddr, "VIRTIO_NET_F_CTRL_MAC_ADDR"); err != nil {
				return err
			}
			if len(data) != 6 {
				return bad("want a 6-byte address")
			}
			copy(flt.MAC[:], data)
		case CtrlMACTableSet:
			if err := need(FCtrlRx, "VIRTIO_NET_F_CTRL_RX"); err != nil {
				return err
			}
			var rest []byte
			var ok bool
			if d.ctrl.uni, rest, ok = macTable(data, d.ctrl.uni[:0]); !ok {
				return bad("malformed unicast table")
			}
			if d.ctrl.multi, rest, ok = macTable(rest, d.ctrl.multi[:0]); !ok || len(rest) != 0 {
				return bad("malformed multicast table")
			}
			flt.Unicast = append(flt.Unicast[:0], d.ctrl.uni...)
			flt.Multicast = append(flt.Multicast[:0], d.ctrl.multi...)
		default:
			return bad("unknown command")
		}
	case CtrlVLAN: // §5.1.6.5.3
		if err := need(FCtrlVLAN, "VIRTIO_NET_F_CTRL_VLAN"); err != nil {
			return err
		}
		if len(data) != 2 {
			return bad("want a 2-byte VLAN id")
		}
		vid := binary.LittleEndian.Uint16(data)
		if vid >= 4096 {
			return bad("VLAN id out of range")
		}
		switch cmd {
		case CtrlVLANAdd:
			flt.VLANs[vid/64] |= 1 << (vid % 64)
		case CtrlVLANDel:
			flt.VLANs[vid/64] &^= 1 << (vid % 64)
		default:
			return bad("unknown command")
		}
	case CtrlAnnounce: // §5.1.6.5.4
		if err := need(FGuestAnnounce, "VIRTIO_NET_F_GUEST_ANNOUNCE"); err != nil {
			return err
		}
		if cmd != CtrlAnnounceAck || len(data) != 0 {
			return bad("unknown command or unexpected data")
		}
	case CtrlMQ: // §5.1.6.5.5
		if err := need(FMQ, "VIRTIO_NET_F_MQ"); err != nil {
			return err
		}
		if cmd != CtrlMQVQPairsSet {
			return bad("unsupported command (no RSS or hash reporting)")
		}
		if len(data) != 2 {
			return bad("want a 2-byte pair count")
		}
		n := binary.LittleEndian.Uint16(data)
		if n < CtrlMQVQPairsMin || int(n) > len(d.pairs) {
			return bad(fmt.Sprintf("%d pairs, device has %d", n, len(d.pairs)))
		}
		d.activePairs.Store(int32(n))
	case CtrlGuestOffloads: // §5.1.6.5.6
		if err := need(FCtrlGuestOffload, "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS"); err != nil {
			return err
		}
		if cmd != CtrlGuestOffloadsSet || len(data) != 8 {
			return bad("want SET with a 64-bit offload mask")
		}
		o := binary.LittleEndian.Uint64(data)
		if o&^(f&guestOffloads) != 0 {
			return bad(fmt.Sprintf("offloads %#x not negotiated", o&^(f&guestOffloads)))
		}
		d.rxOffloads.Store(o)
	default:
		return bad("unknown class")
	}
	return nil
}

// macTable parses struct virtio_net_ctrl_mac: le32 entries, then entries
// 6-byte addresses, appended to table.
func macTable(b []byte, table [][6]byte) ([][6]byte, []byte, bool) {
	if len(b) < 4 {
		return table, nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n)*6 > uint64(len(b)) {
		return table, nil, false
	}
	for i := range int(n) {
		table = append(table, [6]byte(b[6*i:6*i+6]))
	}
	return table, b[6*n:], true
}
