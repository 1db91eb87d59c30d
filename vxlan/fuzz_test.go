package vxlan

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// FuzzReceive feeds the receive path what a remote VTEP (or anyone who
// can reach the port) may send: any datagram, or any run of them coalesced
// by UDP GRO with any segment size. Whatever comes, every inner frame
// handed on lies inside its own segment of the buffer, carries the VLAN
// of its VNI and no tag of its own, and each packet is either handed on
// or counted as one drop.
func FuzzReceive(f *testing.F) {
	pkt := func(vni uint32, ethertype uint16, n int) []byte {
		b := make([]byte, HdrLen+n)
		putHeader(b, vni)
		copy(b[HdrLen:], []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2})
		binary.BigEndian.PutUint16(b[HdrLen+12:], ethertype)
		return b
	}
	f.Add(pkt(100, 0x0800, 60), uint16(0), false)
	f.Add(append(pkt(100, 0x0800, 64), pkt(100, 0x0800, 64)...), uint16(HdrLen+64), false)
	f.Add(append(pkt(100, 0x0800, 64), pkt(200, 0x0800, 30)...), uint16(HdrLen+64), true)
	f.Add(append(pkt(100, 0x8100, 64), pkt(7, 0x0800, 64)...), uint16(HdrLen+64), false)
	f.Add(pkt(100, 0x0800, 1500), uint16(3), false)
	f.Fuzz(func(t *testing.T, data []byte, gso uint16, native bool) {
		if len(data) >= groBufLen {
			return
		}
		p := &Port{cfg: Config{UnderlayMTU: 1500, Learning: true, MaxRemoteMACs: 4, Logger: hclog.NewNullLogger()},
			log: hclog.NewNullLogger(), ipLen: ipv4Len, vniVLAN: map[uint32]uint16{100: 10, 200: 20},
			remote: map[macKey]*remoteMAC{}, known: map[vtepAddr]int{}}
		if native {
			p.cfg.NativeVLAN = 10
		}
		src := vtepAddr{10: 0xff, 11: 0xff, 12: 10, 15: 2}
		p.known[src] = 1
		b := newRxBatch(1, groBufLen)
		copy(b.bufs[0], data)
		b.msgs[0].Len = uint32(len(data))
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.names[0]))
		sa.Family, sa.Addr = unix.AF_INET, [4]byte{10, 0, 0, 2}
		if gso > 0 {
			c := (*unix.Cmsghdr)(unsafe.Pointer(&b.ctl[0]))
			c.Level, c.Type = unix.SOL_UDP, udpGRO
			c.SetLen(unix.CmsgLen(4))
			binary.NativeEndian.PutUint32(b.ctl[unix.SizeofCmsghdr:], uint32(gso))
			b.msgs[0].Hdr.SetControllen(unix.CmsgSpace(4))
		}
		p.receive(b, 0, nil, 1)

		n := len(data)
		seg := n
		if g := int(gso); g > 0 && g < n {
			seg = g
		}
		segs := 1
		if n > 0 {
			segs = (n + seg - 1) / seg
		}
		st := p.Stats()
		handed, dropped := st.RxPackets, st.RxDropShort+st.RxDropFlags+st.RxDropUnknownVNI+st.RxDropInnerTag+st.RxDropOversize
		if int(handed) != len(b.frames) || handed+dropped != uint64(segs) && !(st.RxDropOversize > 0 && handed == 0) {
			t.Fatalf("%d bytes in segments of %d: %d frames, stats %+v", n, seg, len(b.frames), st)
		}
		base := uintptr(unsafe.Pointer(&b.bufs[0][0]))
		for _, fr := range b.frames {
			d := fr.Data
			off := int(uintptr(unsafe.Pointer(&d[0])) - base)
			s := (off + tagLen) / seg // the segment it came from (untagged: off is HdrLen into it)
			if off < 0 || off+len(d) > min((s+1)*seg, n) || off < s*seg {
				t.Fatalf("frame at %d+%d outside its segment %d (of %d bytes)", off, len(d), s, seg)
			}
			et := binary.BigEndian.Uint16(d[12:])
			switch {
			case et == 0x8100:
				if vlan := binary.BigEndian.Uint16(d[14:]); vlan != 20 && (vlan != 10 || native) {
					t.Fatalf("frame tagged VLAN %d", vlan)
				}
				switch binary.BigEndian.Uint16(d[16:]) {
				case 0x8100, 0x88a8, 0x9100, 0x9200, 0x9300:
					t.Fatalf("an inner tag went through: % x", d[:20])
				}
			case !native:
				t.Fatalf("an untagged frame without a native VLAN: % x", d[:14])
			case et == 0x88a8 || et == 0x9100 || et == 0x9200 || et == 0x9300:
				t.Fatalf("an inner tag went through: % x", d[:14])
			}
		}
	})
}
