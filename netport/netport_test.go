package netport

import (
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	vnet "github.com/hvnet/hvnet/virtio/net"
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
