package api

import (
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// addrPort is a memPort with a MAC of its own (vswitch.AddressedPort).
type addrPort struct {
	memPort
	mac vswitch.MAC
}

func (p *addrPort) MAC() (vswitch.MAC, bool) { return p.mac, true }

// Port security and MAC limits through the API: the port's own MAC and
// port_security in answers, PATCH turning it off and back, mac_limit's
// default and -1, pinned FDB entries, the new drop reasons and the FDB's
// bound in the metrics.
func TestPortSecurityAPI(t *testing.T) {
	e := newEnv(t)
	own := vswitch.MAC{0x52, 0x54, 0, 0, 0, 7}
	gp := &addrPort{mac: own}
	h, err := e.sw.AddPort(vswitch.PortConfig{Name: "g", Mode: vswitch.ModeAccess, PVID: 10}, gp)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.c.Port(ctx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	if p.MAC != own.String() || p.Config.PortSecurity == nil || !*p.Config.PortSecurity || p.Config.MACLimit != vswitch.DefaultMACLimit {
		t.Errorf("g = mac %q, port_security %v, mac_limit %d; want %v, true, %d", p.MAC, p.Config.PortSecurity, p.Config.MACLimit, own, vswitch.DefaultMACLimit)
	}
	if _, ok := p.Counters.Drops["fdb_full"]; !ok {
		t.Errorf("drops lack fdb_full: %v", p.Counters.Drops)
	}
	if a, _ := e.c.Port(ctx(t), "a"); a.MAC != "" || a.Config.PortSecurity == nil || !*a.Config.PortSecurity {
		t.Errorf("a (no MAC of its own) = mac %q, port_security %v", a.MAC, a.Config.PortSecurity)
	}
	h.Input([]vswitch.Frame{{Data: eth(mac(1), own, 50)}, {Data: eth(mac(1), mac(9), 50)}})
	if p, _ = e.c.Port(ctx(t), "g"); p.Counters.Drops["spoofed"] != 1 {
		t.Errorf("spoofed drops = %d; want 1", p.Counters.Drops["spoofed"])
	}
	fdb, err := e.c.FDB(ctx(t), "g", 0, "")
	if err != nil || len(fdb) != 1 || !fdb[0].Pinned || fdb[0].MAC != own.String() {
		t.Errorf("g's FDB = %+v, %v; want its own MAC, pinned", fdb, err)
	}

	off, minus1 := false, -1
	if p, err = e.c.PatchPort(ctx(t), "g", PortPatch{PortSecurity: &off, MACLimit: &minus1}); err != nil {
		t.Fatal(err)
	}
	if *p.Config.PortSecurity || p.Config.MACLimit != -1 || h.Config().PortSecurity != vswitch.PortSecurityOff {
		t.Errorf("after PATCH: port_security %v, mac_limit %d", *p.Config.PortSecurity, p.Config.MACLimit)
	}
	h.Input([]vswitch.Frame{{Data: eth(mac(1), mac(9), 50)}})
	if p, _ = e.c.Port(ctx(t), "g"); p.Counters.Drops["spoofed"] != 1 {
		t.Errorf("port security off: spoofed drops = %d; want still 1", p.Counters.Drops["spoofed"])
	}
	zero := 0
	if p, err = e.c.PatchPort(ctx(t), "g", PortPatch{MACLimit: &zero}); err != nil || p.Config.MACLimit != vswitch.DefaultMACLimit {
		t.Errorf("mac_limit 0 = %d, %v; want the default %d", p.Config.MACLimit, err, vswitch.DefaultMACLimit)
	}

	// A port added with port_security false keeps it.
	spec := PortSpec{Kind: KindVhostUser,
		Config: PortConfig{Name: "n", PVID: 10, PortSecurity: &off, MACLimit: 5}, Options: Opts("socket", "x.sock", "mac", "52:54:00:00:00:08")}
	if p, err = e.c.AddPort(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	if *p.Config.PortSecurity || p.Config.MACLimit != 5 || e.sw.Port("n").Config().PortSecurity != vswitch.PortSecurityOff {
		t.Errorf("added port: %+v", p.Config)
	}

	fams := scrape(t, e)
	if v := metricValue(t, fams, "hvnet_fdb_max_entries", nil); v != vswitch.DefaultFDBMaxEntries {
		t.Errorf("hvnet_fdb_max_entries = %v", v)
	}
	// mac(9) on g: turning port security off flushed g's own MAC.
	if v := metricValue(t, fams, "hvnet_fdb_dynamic_entries", nil); v != 1 {
		t.Errorf("hvnet_fdb_dynamic_entries = %v; want 1", v)
	}
	if v := metricValue(t, fams, "hvnet_port_drops_total", map[string]string{"port": "g", "reason": "mac_move"}); v != 0 {
		t.Errorf("mac_move drops = %v", v)
	}
}
