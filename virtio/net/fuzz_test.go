package vnet_test

import (
	"encoding/binary"
	"testing"

	"github.com/hvnet/hvnet/frame"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// FuzzTX sends one driver-built chain (header and frame bytes, split into up
// to four buffers, optionally indirect, under fuzzed features) through the
// TX path. The chain must be delivered or dropped and counted, never panic
// or fault, and whatever is delivered must pass CheckTX.
func FuzzTX(f *testing.F) {
	seed := func(ctl byte, feats uint16, h vnet.Header, n int) []byte {
		b := []byte{ctl, 0, 0}
		binary.LittleEndian.PutUint16(b[1:], feats)
		hb := make([]byte, vnet.HdrLen)
		h.Encode(hb)
		return append(append(b, hb...), ethFrame(n, 1)...)
	}
	f.Add(seed(0, 0, vnet.Header{}, 60))
	f.Add(seed(0x13, 0xffff, vnet.Header{Flags: 1, GSOType: 1, GSOSize: 1448, HdrLen: 54, CsumStart: 34, CsumOffset: 16}, 3000))
	f.Add(seed(0x22, 0x0800, vnet.Header{GSOType: 4, GSOSize: 1000}, 100))
	f.Add(seed(0x07, 0, vnet.Header{}, 0))
	f.Add(seed(0x01, 1, vnet.Header{Flags: 1, CsumStart: 0xffff, CsumOffset: 0xffff}, 20))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		ctl := data[0]
		// Map the fuzzed 16 bits onto the offload feature bits 0..15.
		feats := uint64(baseFeat) | uint64(binary.LittleEndian.Uint16(data[1:]))
		payload := data[3:]
		var got []vnet.Frame
		sink := vnet.SinkFunc(func(fs []vnet.Frame) { got = append(got, fs...) })
		b := newBed(t, 1, feats, 8, 1<<18, sink)
		nseg := int(ctl&3) + 1
		bufs := make([]virtiotest.Buf, 0, nseg)
		rest := payload
		for i := 0; i < nseg; i++ {
			n := len(rest)
			if i < nseg-1 {
				n = min(len(rest), int(ctl>>2&7)*5+i)
			}
			bufs = append(bufs, virtiotest.Buf{Data: append([]byte{}, rest[:n]...)})
			rest = rest[n:]
		}
		for i := range bufs {
			if bufs[i].Data == nil || len(bufs[i].Data) == 0 {
				bufs[i] = virtiotest.Buf{Len: 0, Addr: b.tx(0).Alloc(1)}
			}
		}
		var head uint16
		if ctl&0x20 != 0 {
			head = b.tx(0).AddIndirect(bufs...)
		} else {
			head = b.tx(0).AddChain(bufs...)
		}
		b.tx(0).Push(head)
		b.dev.ProcessTX(0)

		if len(b.faults) != 0 {
			t.Fatalf("well-formed ring faulted: %v", b.faults)
		}
		s := b.dev.Stats()
		if total := s.TxPackets + s.TxDropBadChain + s.TxDropBadHeader + s.TxDropRunt + s.TxDropOversize; total != 1 {
			t.Fatalf("chain accounted %d times: %+v", total, s)
		}
		if u, ok := b.tx(0).PopUsed(); !ok || u.ID != uint32(head) {
			t.Fatalf("chain not returned: %+v %v", u, ok)
		}
		for _, fr := range got {
			h, _ := vnet.DecodeHeader(payload)
			if err := vnet.CheckTX(h, len(fr.Data), feats); err != nil || len(fr.Data) < frame.EthHdrLen {
				t.Fatalf("delivered a frame that fails validation: %v", err)
			}
		}
	})
}

// FuzzCtrl feeds arbitrary commands to the control queue: every chain gets an
// ack, nothing panics.
func FuzzCtrl(f *testing.F) {
	f.Add([]byte{vnet.CtrlRx, vnet.CtrlRxPromisc, 1})
	f.Add([]byte{vnet.CtrlMAC, vnet.CtrlMACTableSet, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0})
	f.Add([]byte{vnet.CtrlMQ, vnet.CtrlMQVQPairsSet, 2, 0})
	f.Add([]byte{vnet.CtrlVLAN, vnet.CtrlVLANDel, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, cmd []byte) {
		if len(cmd) < 2 || len(cmd) > 1<<14 {
			return
		}
		all := baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx, vnet.FCtrlRxExtra, vnet.FCtrlVLAN,
			vnet.FGuestAnnounce, vnet.FMQ, vnet.FCtrlMACAddr, vnet.FCtrlGuestOffload, vnet.FGuestCsum)
		b := newBed(t, 2, all, 8, 1<<16, &recSink{})
		ack := sendCtrl(t, b, cmd[0], cmd[1], cmd[2:])
		if ack != vnet.CtrlOK && ack != vnet.CtrlErr {
			t.Fatalf("ack %d", ack)
		}
	})
}
