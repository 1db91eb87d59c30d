package api

import (
	"net/http"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// TestEgressACL: rules with direction egress apply to frames leaving the
// port: a broadcast UDP frame to 53 from a still reaches t while b's
// egress ACL drops it (counted on b, with hits on b's rule); GET, port
// info, trace and metrics show it; a bad direction changes nothing.
func TestEgressACL(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	set, err := e.c.SetACL(c, "b", ACL{Rules: []ACLRule{
		{Action: "allow", Protocol: "tcp"}, // ingress: b may send TCP only...
		{Action: "deny", Direction: "egress", Protocol: "udp", DstPorts: "53"},
	}, Default: "deny", EgressDefault: "allow"})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 2 || set.Rules[0].Direction != "" || set.Rules[1].Direction != "egress" || set.EgressDefault != "allow" {
		t.Fatalf("SetACL answered %+v", set)
	}
	e.h["a"].Input([]vswitch.Frame{{Data: udp4(vswitch.Broadcast, mac(1), 53)}, {Data: udp4(vswitch.Broadcast, mac(1), 54)}})
	if b, tr := e.p["b"].count(), e.p["t"].count(); b != 1 || tr != 2 {
		t.Errorf("b got %d, t got %d; want 1 (port 54 only) and 2", b, tr)
	}
	got, err := e.c.ACL(c, "b")
	if err != nil {
		t.Fatal(err)
	}
	if got.Rules[1].Hits != 1 || got.EgressDefaultHits != 1 || got.Rules[0].Hits != 0 {
		t.Errorf("hits: %+v, egress default %d", got.Rules, got.EgressDefaultHits)
	}
	p, err := e.c.Port(c, "b")
	if err != nil || p.ACL == nil || p.Counters.Drops["acl"] != 1 {
		t.Errorf("port b: acl %+v, drops %v, %v", p.ACL, p.Counters.Drops, err)
	}
	if a, _ := e.c.Port(c, "a"); a.Counters.Drops["acl"] != 0 {
		t.Errorf("a's acl drops = %d; want 0 (counted on the egress port)", a.Counters.Drops["acl"])
	}
	tr, err := e.c.Trace(c, TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "ff:ff:ff:ff:ff:ff",
		SrcIP: "10.0.0.1", DstIP: "10.0.0.2", Protocol: "udp", DstPort: 53})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.EgressDenied) != 1 || tr.EgressDenied[0] != (TraceDenied{Port: "b", Reason: "acl", Rule: "0"}) || len(tr.Outputs) != 1 || tr.Outputs[0].Port != "t" {
		t.Errorf("trace: outputs %+v, egress denied %+v", tr.Outputs, tr.EgressDenied)
	}
	fams := scrape(t, e)
	if v := metricValue(t, fams, "hvnet_acl_hits_total", map[string]string{"port": "b", "direction": "egress", "rule": "0"}); v != 1 {
		t.Errorf("hvnet_acl_hits_total{b,egress,0} = %v", v)
	}
	if v := metricValue(t, fams, "hvnet_acl_hits_total", map[string]string{"port": "b", "direction": "ingress", "rule": "default"}); v != 0 {
		t.Errorf("hvnet_acl_hits_total{b,ingress,default} = %v", v)
	}

	// Bad input: nothing changes.
	for _, tc := range []struct {
		a     ACL
		field string
	}{
		{ACL{Rules: []ACLRule{{Action: "deny", Direction: "sideways"}}}, "rules[0].direction"},
		{ACL{EgressDefault: "maybe"}, "egress_default"},
		{ACL{Rules: []ACLRule{{Action: "deny"}, {Action: "deny", Direction: "egress", DstPorts: "53"}}}, "rules[1].dst_ports"},
	} {
		_, err := e.c.SetACL(c, "b", tc.a)
		wantError(t, err, http.StatusBadRequest, tc.field)
	}
	if after, _ := e.c.ACL(c, "b"); len(after.Rules) != 2 || after.Rules[1].Direction != "egress" {
		t.Errorf("a refused PUT changed the ACL: %+v", after)
	}
	// Removing both directions.
	if out, err := e.c.SetACL(c, "b", ACL{}); err != nil || len(out.Rules) != 0 || out.EgressDefault != "" {
		t.Errorf("clear: %+v, %v", out, err)
	}
	e.h["a"].Input([]vswitch.Frame{{Data: udp4(vswitch.Broadcast, mac(1), 53)}})
	if b := e.p["b"].count(); b != 2 {
		t.Errorf("after clearing b got %d frames in all; want 2", b)
	}
}
