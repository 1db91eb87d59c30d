package vhost

import (
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// vhost-user.rst "Ring states": with VHOST_USER_F_PROTOCOL_FEATURES a ring
// starts disabled and is not processed until SET_VRING_ENABLE; without it,
// a ring runs as soon as it has its kick descriptor. A ring that runs
// processes what is already available when it starts, so GET_VRING_BASE
// (which stops it) tells whether it ran.
func TestRingsStartDisabledWithProtocolFeatures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		want     uint32 // next available index after GET_VRING_BASE
	}{
		{"ProtocolFeatures", 1 << proto.FProtocolFeatures, 0},
		{"Legacy", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := vswitch.New(vswitch.Config{})
			_, sock := testPort(t, sw, "a", 1)
			g := dialGuest(t, sock)
			f := g.f
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(f.SetOwner())
			must(f.SetFeatures(virtio.Feature(virtio.FVersion1) | tc.features))
			must(f.SetMemTable(g.mem.Region()))
			g.tx.Push(g.tx.AddChain(virtiotest.Buf{Data: append(make([]byte, hdrLen), ethFrame(0xff, 1, 1)...)}))
			d := g.tx
			must(f.SetVringNum(1, qSize))
			must(f.SetVringBase(1, 0))
			must(f.SetVringAddr(proto.VringAddr{Index: 1, Desc: g.mem.UVA(d.Desc), Avail: g.mem.UVA(d.Avail), Used: g.mem.UVA(d.Used)}))
			must(f.SetVringKick(1, g.kick[1].FD()))
			base, err := f.GetVringBase(1)
			must(err)
			if base != tc.want {
				t.Fatalf("GET_VRING_BASE = %d, want %d", base, tc.want)
			}
			if tc.want == 0 {
				// Enabled now, the ring runs and takes the chain.
				must(f.SetVringBase(1, 0))
				must(f.SetVringKick(1, g.kick[1].FD()))
				must(f.SetVringEnable(1, true))
				if base, err = f.GetVringBase(1); err != nil || base != 1 {
					t.Fatalf("after SET_VRING_ENABLE: GET_VRING_BASE = %d, %v; want 1", base, err)
				}
			}
		})
	}
}
