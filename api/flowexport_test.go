package api

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestFlowExportAPI: set, read and list through the API; bad values
// refused naming the field; the metrics.
func TestFlowExportAPI(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	st, err := e.c.FlowExport(c)
	if err != nil || *st.Enabled || st.ActiveTimeout != "1m0s" || st.IdleTimeout != "15s" || st.TemplateRefresh != "10m0s" ||
		st.MaxFlows != 65536 || st.Sampling != 1 || len(st.Interfaces) != 3 || st.Interfaces[0] != (FlowInterface{Index: 1, Port: "a"}) {
		t.Fatalf("defaults: %+v %v", st, err)
	}
	if _, err := e.c.Flows(c, 0, ""); err == nil {
		t.Fatal("flows listed while export is off")
	} else {
		wantError(t, err, http.StatusConflict, "")
	}
	for _, bad := range []struct {
		f     FlowExport
		field string
	}{
		{FlowExport{Collectors: []string{"127.0.0.1"}}, "collectors[0]"},
		{FlowExport{Collectors: []string{"127.0.0.1:4739", "no-such-host.invalid:4739"}}, "collectors[1]"},
		{FlowExport{IdleTimeout: "soon"}, "idle_timeout"},
		{FlowExport{ActiveTimeout: "1ms"}, "active_timeout"},
		{FlowExport{Sampling: 1 << 30}, "sampling"},
		{FlowExport{MaxFlows: 1 << 30}, "max_flows"},
	} {
		_, err := e.c.SetFlowExport(c, bad.f)
		wantError(t, err, http.StatusBadRequest, bad.field)
	}
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err = e.c.SetFlowExport(c, FlowExport{Collectors: []string{l.LocalAddr().String()}, MaxFlows: 2, IdleTimeout: "30s"})
	if err != nil || !*st.Enabled || st.IdleTimeout != "30s" || st.MaxFlows != 2 {
		t.Fatalf("set: %+v %v", st, err)
	}
	defer e.srv.flows.Close()
	e.send("a", mac(1), mac(2), 1) // flooded: mac(2) is not known yet
	e.send("b", mac(2), mac(1), 5)
	e.send("a", mac(1), mac(2), 3) // a third flow (to b now): the cache holds 2
	e.send("a", mac(3), mac(2), 4) // a fourth
	fl, err := e.c.Flows(c, 1, "packets")
	if err != nil || fl.Total != 2 || len(fl.Flows) != 1 || fl.Flows[0].In != "b" || fl.Flows[0].Out != "a" || fl.Flows[0].Packets != 5 ||
		fl.Flows[0].SrcMAC != "02:00:00:00:00:02" || fl.Flows[0].VLAN != 10 || fl.Flows[0].InIndex != 2 || fl.Flows[0].OutIndex != 1 {
		t.Fatalf("flows: %+v %v", fl, err)
	}
	if _, err := e.c.Flows(c, 5000, ""); err == nil {
		t.Fatal("limit 5000 accepted")
	}
	m, err := e.c.Metrics(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hvnet_flow_export_enabled 1", "hvnet_flow_export_flows_active 2", "hvnet_flow_export_max_flows 2",
		"hvnet_flow_export_cache_full_total 7", "hvnet_flow_export_template_messages_total 1",
		`hvnet_flow_export_messages_total{collector="` + l.LocalAddr().String() + `"} 1`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	ps, _ := e.c.Ports(c)
	if len(ps) != 3 || ps[0].IfIndex != 1 || ps[2].IfIndex != 3 {
		t.Errorf("ports' if_index: %+v", ps)
	}
	// Off: the flows are exported first.
	st, err = e.c.SetFlowExport(c, FlowExport{Enabled: new(bool)})
	if err != nil || *st.Enabled || st.Stats.Records != 2 || st.Stats.FlowsActive != 0 {
		t.Fatalf("off: %+v %v", st, err)
	}
}
