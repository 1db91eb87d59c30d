package evpn_test

import (
	"context"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/evpn"
)

// fdb is what a VXLAN port would keep: the flood list and the MACs
// behind remote VTEPs, per VNI.
type fdb struct{}

func (fdb) RemoteVTEP(vni uint32, vtep netip.Addr, withdrawn bool) {
	// add vtep to (or remove it from) vni's flood list
}

func (fdb) RemoteMAC(vni uint32, mac [6]byte, ip, vtep netip.Addr, seq uint32, withdrawn bool) {
	// point mac at vtep in vni's forwarding table, or remove it
}

// Advertise VNI 100 and one local MAC/IP to a route reflector, and learn
// the remote VTEPs and MACs through fdb's methods.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp, err := evpn.Start(ctx, evpn.Config{
		ASN:       65000,
		RouterID:  netip.MustParseAddr("192.0.2.1"),
		VTEP:      netip.MustParseAddr("192.0.2.1"),
		Neighbors: []evpn.Neighbor{{Addr: netip.MustParseAddr("192.0.2.254")}},
		Logger:    hclog.Default(),
	}, fdb{})
	if err != nil {
		hclog.Default().Error("start EVPN", "error", err)
		return
	}
	defer sp.Close()
	if err := sp.AddVNI(100); err != nil {
		hclog.Default().Error("add VNI", "error", err)
		return
	}
	mac := [6]byte{0x02, 0, 0, 0, 0, 1}
	if err := sp.AdvertiseMAC(100, mac, netip.MustParseAddr("10.0.0.1"), 0); err != nil {
		hclog.Default().Error("advertise MAC", "error", err)
	}
}
