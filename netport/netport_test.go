package netport

import (
	"testing"

	vswitch "hvnet/switch"
	vnet "hvnet/virtio/net"
)

func TestCapsFromFeatures(t *testing.T) {
	for _, tc := range []struct {
		f    uint64
		want vswitch.Caps
	}{
		{0, 0},
		{vnet.Features(vnet.FGuestTSO4), 0}, // TSO without GUEST_CSUM is not valid
		{vnet.Features(vnet.FGuestCsum), vswitch.CapCsum},
		{vnet.Features(vnet.FGuestCsum, vnet.FGuestTSO4, vnet.FGuestTSO6),
			vswitch.CapCsum | vswitch.CapGSOTCPv4 | vswitch.CapGSOTCPv6},
		{vnet.Features(vnet.FGuestCsum, vnet.FGuestTSO4, vnet.FGuestECN),
			vswitch.CapCsum | vswitch.CapGSOTCPv4 | vswitch.CapGSOECN},
	} {
		if got := CapsFromFeatures(tc.f); got != tc.want {
			t.Errorf("CapsFromFeatures(%#x) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestFrameConversionKeepsFields(t *testing.T) {
	in := []vnet.Frame{{Data: []byte{1, 2, 3}, Off: vnet.Offload{Flags: 1, GSOType: 4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}}}
	out := toSwitch(in)
	want := vswitch.Frame{Data: in[0].Data, Off: vswitch.Offload{Flags: 1, GSOType: 4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}}
	if len(out) != 1 || &out[0].Data[0] != &in[0].Data[0] || out[0].Off != want.Off {
		t.Fatalf("toSwitch = %+v, want %+v (same backing array)", out, want)
	}
	back := toVnet(out)
	if back[0].Off != in[0].Off {
		t.Fatalf("toVnet(toSwitch(x)) = %+v, want %+v", back[0].Off, in[0].Off)
	}
}

func TestDetachedPortDropsNothingSilently(t *testing.T) {
	p := New(nil)
	if n := p.Send([]vswitch.Frame{{Data: make([]byte, 60)}}); n != 0 {
		t.Fatalf("Send without a device accepted %d frames, want 0 (the switch counts them as no-buffer drops)", n)
	}
	p.Deliver([]vnet.Frame{{Data: make([]byte, 60)}}) // no handle: must not panic
	if c := p.Caps(); c != 0 {
		t.Fatalf("Caps without a device = %v, want 0", c)
	}
}
