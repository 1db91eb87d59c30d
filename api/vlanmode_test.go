package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// TestVLANModeFields: a PATCH that changes vlan_mode drops the old mode's
// VLAN settings, and contradictory ones are refused with 400 naming the
// field, the port unchanged.
func TestVLANModeFields(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "t", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}, NativeVLAN: 10}, &memPort{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "a", PVID: 7}, &memPort{}); err != nil {
		t.Fatal(err)
	}
	h := NewServer(sw, Options{}).Handler()
	patch := func(port, body string) (int, Error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPatch, "/v1/ports/"+port, strings.NewReader(body)))
		var e Error
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, e
	}
	for _, tc := range []struct{ port, body, field, msg string }{
		{"a", `{"trunk":[20,30]}`, "trunk", "only a trunk carries tagged VLANs (vlan_mode is access)"},
		{"a", `{"native":20}`, "native", "only a trunk has a native VLAN"},
		{"a", `{"vlan_mode":"access","trunk":[20]}`, "trunk", "only a trunk"},
		{"a", `{"vlan_mode":"dot1q-tunnel","native":5}`, "native", "vlan_mode is dot1q-tunnel"},
		{"a", `{"vlan_mode":"trunk"}`, "trunk", "a trunk needs the VLANs it carries"},
		{"a", `{"vlan_mode":"trunk","trunk":[20],"vlan":5}`, "vlan", "a trunk has no access VLAN"},
		{"t", `{"vlan":5}`, "vlan", "a trunk has no access VLAN"},
		{"t", `{"trunk":[]}`, "trunk", "a trunk needs"},
		{"t", `{"trunk":[20,30,20]}`, "trunk[2]", "VLAN 20 listed twice"},
	} {
		before := sw.Port(tc.port).Config()
		code, e := patch(tc.port, tc.body)
		if code != http.StatusBadRequest || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("PATCH %s %s = %d %+v, want 400 on %s: %s", tc.port, tc.body, code, e, tc.field, tc.msg)
		}
		if after := sw.Port(tc.port).Config(); after.Mode != before.Mode || after.PVID != before.PVID ||
			!slices.Equal(after.AllowedVLANs, before.AllowedVLANs) || after.NativeVLAN != before.NativeVLAN {
			t.Errorf("PATCH %s %s refused but changed the port: %+v -> %+v", tc.port, tc.body, before, after)
		}
	}
	// trunk -> access: trunk and native go.
	if code, e := patch("t", `{"vlan_mode":"access","vlan":5}`); code != http.StatusOK {
		t.Fatalf("trunk -> access = %d %+v", code, e)
	}
	if c := sw.Port("t").Config(); c.Mode != vswitch.ModeAccess || c.PVID != 5 || len(c.AllowedVLANs) != 0 || c.NativeVLAN != 0 {
		t.Errorf("after trunk -> access: %+v, want access VLAN 5 alone", c)
	}
	// access -> trunk: the access VLAN goes.
	if code, e := patch("a", `{"vlan_mode":"trunk","trunk":[30],"native":30}`); code != http.StatusOK {
		t.Fatalf("access -> trunk = %d %+v", code, e)
	}
	if c := sw.Port("a").Config(); c.Mode != vswitch.ModeTrunk || c.PVID != 0 || !slices.Equal(c.AllowedVLANs, []uint16{30}) || c.NativeVLAN != 30 {
		t.Errorf("after access -> trunk: %+v", c)
	}
	// The same rule for a whole configuration (POST /v1/ports).
	for _, tc := range []struct {
		c     PortConfig
		field string
	}{
		{PortConfig{Name: "x", Mode: "access", PVID: 10, AllowedVLANs: []int{20, 30}}, "config.trunk"},
		{PortConfig{Name: "x", Mode: "access", PVID: 10, NativeVLAN: 20}, "config.native"},
		{PortConfig{Name: "x", Mode: "trunk", AllowedVLANs: []int{20}, PVID: 5}, "config.vlan"},
		{PortConfig{Name: "x", Mode: "trunk", AllowedVLANs: []int{20, 20, 20}}, "config.trunk[1]"},
		{PortConfig{Name: "x", Mode: "trunk"}, "config.trunk"},
	} {
		if _, e := SwitchConfig(tc.c); e == nil || e.Field != tc.field || e.Status != http.StatusBadRequest {
			t.Errorf("SwitchConfig(%+v) = %v, want 400 on %s", tc.c, e, tc.field)
		}
	}
}
