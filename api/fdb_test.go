package api

import (
	"net/http"
	"testing"
)

func TestFDB(t *testing.T) {
	e := newEnv(t)
	e.send("a", mac(1), mac(2), 1)
	e.send("b", mac(2), mac(1), 1)
	all, err := e.c.FDB(ctx(t), "", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].MAC != "02:00:00:00:00:01" || all[0].Port != "a" || all[0].VLAN != 10 || all[0].Static {
		t.Fatalf("fdb = %+v", all)
	}
	for _, q := range []struct {
		port string
		vlan int
		mac  string
		want int
	}{{"b", 0, "", 1}, {"", 10, "", 2}, {"", 20, "", 0}, {"", 0, "02:00:00:00:00:02", 1}, {"a", 10, "02:00:00:00:00:02", 0}} {
		got, err := e.c.FDB(ctx(t), q.port, q.vlan, q.mac)
		if err != nil || len(got) != q.want {
			t.Fatalf("FDB(%q, %d, %q) = %+v, %v; want %d entries", q.port, q.vlan, q.mac, got, err, q.want)
		}
	}
	for _, tc := range []struct {
		path   string
		status int
		field  string
	}{
		{"/v1/fdb?vlan=0", 400, "vlan"}, {"/v1/fdb?vlan=4095", 400, "vlan"}, {"/v1/fdb?vlan=x", 400, "vlan"},
		{"/v1/fdb?mac=nope", 400, "mac"}, {"/v1/fdb?port=zz", 404, "port"}, {"/v1/fdb?colour=red", 400, "colour"},
	} {
		if status, ae := e.raw(http.MethodGet, tc.path, ""); status != tc.status || ae.Field != tc.field {
			t.Errorf("GET %s = %d field %q, want %d %q", tc.path, status, ae.Field, tc.status, tc.field)
		}
	}

	// Static entries.
	if err := e.c.AddStatic(ctx(t), StaticEntry{Port: "t", VLAN: 20, MAC: "02:00:00:00:00:33"}); err != nil {
		t.Fatal(err)
	}
	got, _ := e.c.FDB(ctx(t), "t", 20, "")
	if len(got) != 1 || !got[0].Static {
		t.Fatalf("after POST /v1/fdb: %+v", got)
	}
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"port": "t", "vlan": 0, "mac": "02:00:00:00:00:34"}`, 400, "vlan"},
		{`{"port": "t", "vlan": 20, "mac": "01:00:00:00:00:34"}`, 400, "mac"},
		{`{"port": "t", "vlan": 20, "mac": "02:00:00:00:00"}`, 400, "mac"},
		{`{"port": "zz", "vlan": 20, "mac": "02:00:00:00:00:34"}`, 404, "port"},
		{`{"port": "t", "vlan": 20, "mac": "02:00:00:00:00:34", "ttl": 3}`, 400, "ttl"},
		{`{"port": "t",`, 400, ""},
	} {
		if status, ae := e.raw(http.MethodPost, "/v1/fdb", tc.body); status != tc.status || ae.Field != tc.field {
			t.Errorf("POST /v1/fdb %s = %d field %q, want %d %q", tc.body, status, ae.Field, tc.status, tc.field)
		}
	}
	if n := len(e.sw.FDB()); n != 3 {
		t.Fatalf("bad POSTs changed the FDB: %d entries, want 3", n)
	}
	wantError(t, e.c.DeleteStatic(ctx(t), 4095, "02:00:00:00:00:33"), 400, "vlan")
	wantError(t, e.c.DeleteStatic(ctx(t), 20, "02:00:00:00:00:99"), 404, "")
	if err := e.c.DeleteStatic(ctx(t), 20, "02:00:00:00:00:33"); err != nil {
		t.Fatal(err)
	}

	// Flush.
	if status, ae := e.raw(http.MethodDelete, "/v1/fdb?vlan=9999", ""); status != 400 || ae.Field != "vlan" {
		t.Fatalf("flush vlan 9999 = %d %q", status, ae.Field)
	}
	if n, err := e.c.FlushFDB(ctx(t), "a", 0); err != nil || n != 1 {
		t.Fatalf("flush port a = %d, %v; want 1", n, err)
	}
	if n, err := e.c.FlushFDB(ctx(t), "", 10); err != nil || n != 1 {
		t.Fatalf("flush vlan 10 = %d, %v; want 1", n, err)
	}
	if n := len(e.sw.FDB()); n != 0 {
		t.Fatalf("FDB after flush has %d entries", n)
	}
}
