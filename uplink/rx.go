package uplink

import (
	"encoding/binary"
	"errors"

	"github.com/hvnet/hvnet/frame"
	vswitch "github.com/hvnet/hvnet/switch"

	"golang.org/x/sys/unix"
)

// Ring headers are in the host's byte order.
var ne = binary.NativeEndian

func putU32(b []byte, v uint32) { ne.PutUint32(b, v) }

// TPACKET_V3 layouts (linux/if_packet.h).
//
// struct tpacket_block_desc: version u32, offset_to_priv u32, then
// struct tpacket_hdr_v1: block_status u32 (8), num_pkts u32 (12),
// offset_to_first_pkt u32 (16), blk_len u32 (20), seq_num u64, timestamps.
//
// struct tpacket3_hdr (48 bytes): tp_next_offset u32 (0), tp_sec, tp_nsec,
// tp_snaplen u32 (12), tp_len u32 (16), tp_status u32 (20), tp_mac u16 (24),
// tp_net u16 (26), hv1 {tp_rxhash u32 (28), tp_vlan_tci u32 (32),
// tp_vlan_tpid u16 (36)}, padding; then struct sockaddr_ll at
// TPACKET_ALIGN(48) = 48, whose sll_pkttype is at byte 10.
const (
	bdStatus   = 8
	bdNumPkts  = 12
	bdFirstPkt = 16

	h3Next     = 0
	h3Snaplen  = 12
	h3Len      = 16
	h3Status   = 20
	h3Mac      = 24
	h3VlanTCI  = 32
	h3VlanTPID = 36
	h3Size     = 48
	sllPkttype = h3Size + 10
	sllSize    = 20
	// The smallest tp_mac that leaves room for the virtio_net_hdr after
	// the headers (the kernel uses at least TPACKET_ALIGN(68+16)+10-14 = 92).
	minMacOff = h3Size + sllSize + frame.VnetHdrLen

	tpidCTag = 0x8100
)

// rxCounts are one block's worth of RX statistics.
type rxCounts struct {
	frames, bytes, gso, vlan, bad uint64
}

// walkBlock hands the frames of one ring block to the switch in batches of
// at most cap(frames). The frames point into the ring; the caller returns
// the block to the kernel after walkBlock returns. Values read from the
// ring are bounds-checked: a bad offset ends the walk of that block.
func walkBlock(blk []byte, frames []vswitch.Frame, h Receiver, c *rxCounts) {
	num := ne.Uint32(blk[bdNumPkts:])
	off := uint64(ne.Uint32(blk[bdFirstPkt:]))
	frames = frames[:0]
	for range num {
		if off+minMacOff > uint64(len(blk)) {
			c.bad++
			break
		}
		hdr := blk[off:]
		next := uint64(ne.Uint32(hdr[h3Next:]))
		snap := uint64(ne.Uint32(hdr[h3Snaplen:]))
		wire := uint64(ne.Uint32(hdr[h3Len:]))
		status := ne.Uint32(hdr[h3Status:])
		mac := uint64(ne.Uint16(hdr[h3Mac:]))
		switch {
		case mac < minMacOff || mac+snap > uint64(len(hdr)):
			c.bad++
		case snap < wire || status&unix.TP_STATUS_COPY != 0 || snap < 14:
			c.bad++ // truncated: larger than a block
		case hdr[sllPkttype] == unix.PACKET_OUTGOING:
			// our own or the host's transmissions (PACKET_IGNORE_OUTGOING
			// should have kept them out)
		default:
			f := rxFrame(hdr, mac, snap, status)
			c.frames++
			c.bytes += uint64(len(f.Data))
			if f.Off.GSOType != frame.GSONone {
				c.gso++
			}
			if status&unix.TP_STATUS_VLAN_VALID != 0 {
				c.vlan++
			}
			frames = append(frames, f)
			if len(frames) == cap(frames) {
				input(h, frames)
				frames = frames[:0]
			}
		}
		if next == 0 {
			break
		}
		off += next
	}
	input(h, frames)
}

func input(h Receiver, frames []vswitch.Frame) {
	if h != nil && len(frames) > 0 {
		h.Input(frames)
		clear(frames) // keep no references into the ring
	}
}

// rxFrame builds the switch frame of one ring slot: the virtio_net_hdr at
// mac-10 becomes the Offload, and a VLAN tag the kernel stripped is put
// back. IEEE 802.1Q-2018 §9.3: the tag (TPID, then PCP/DEI/VID) follows the
// source MAC, so the 12 MAC bytes move 4 bytes toward the header, over the
// virtio_net_hdr that was just read. Offsets in the header count from the
// untagged frame's start, so csum_start and hdr_len grow by 4.
func rxFrame(hdr []byte, mac, snap uint64, status uint32) vswitch.Frame {
	off := frame.DecodeOffload(hdr[mac-frame.VnetHdrLen : mac])
	data := hdr[mac : mac+snap]
	if status&unix.TP_STATUS_VLAN_VALID != 0 {
		tpid := uint16(tpidCTag)
		if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			if t := ne.Uint16(hdr[h3VlanTPID:]); t != 0 {
				tpid = t
			}
		}
		tci := uint16(ne.Uint32(hdr[h3VlanTCI:]))
		start := mac - 4
		copy(hdr[start:start+12], hdr[mac:mac+12])
		binary.BigEndian.PutUint16(hdr[start+12:], tpid)
		binary.BigEndian.PutUint16(hdr[start+14:], tci)
		data = hdr[start : mac+snap]
		if off.Flags&frame.NeedsCsum != 0 {
			off.CsumStart += 4
		}
		if off.HdrLen != 0 {
			off.HdrLen += 4
		}
	}
	return vswitch.Frame{Data: data, Off: off}
}

// errStopped ends an RX worker.
var errStopped = errors.New("stopped")
