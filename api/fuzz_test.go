package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// fuzzRoutes are the endpoints that decode a JSON body. Files and
// sockets they name land in the fuzz server's temporary directories.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPatch, "/v1/ports/a"},
	{http.MethodPatch, "/v1/ports/t"},
	{http.MethodPost, "/v1/ports"},
	{http.MethodPut, "/v1/ports/a/acl"},
	{http.MethodPost, "/v1/trace"},
	{http.MethodPost, "/v1/fdb"},
	{http.MethodPost, "/v1/mirrors"},
}

// fuzzServer is a switch with ports a, b (access VLAN 10) and t (trunk 10,
// 20) behind a Server whose port factory makes in-memory ports.
func fuzzServer(t testing.TB) *Server {
	sw := vswitch.New(vswitch.Config{Clock: vswitch.NewManualClock(1)})
	for _, c := range []vswitch.PortConfig{
		{Name: "a", Mode: vswitch.ModeAccess, PVID: 10},
		{Name: "b", Mode: vswitch.ModeAccess, PVID: 10},
		{Name: "t", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}},
	} {
		if _, err := sw.AddPort(c, &memPort{}); err != nil {
			t.Fatal(err)
		}
	}
	return NewServer(sw, Options{Ports: &fakeFactory{handles: map[string]*vswitch.PortHandle{}},
		CaptureDir: t.TempDir(), SocketDir: t.TempDir()})
}

// FuzzAPIBody sends arbitrary bodies to every endpoint that decodes JSON,
// through the real handlers on an in-memory switch. The API must never
// answer 5xx or panic; every 4xx is a JSON Error, and one about a body
// that is JSON names the field at fault (only a body that is not JSON at
// all, or one too large, may be answered without a field). Seeds are in
// testdata/fuzz/FuzzAPIBody.
func FuzzAPIBody(f *testing.F) {
	for i, b := range []string{
		`{"vlan": 20}`,
		`{"vlan_mode": "trunk", "trunk": [10, 4094], "native": 10}`,
		`{"ingress": {"bytes": {"rate": 1000000, "burst": 10}}, "mac_limit": 3, "allowed_macs": ["02:00:00:00:00:01"]}`,
		`{"storm": {"broadcast": {"packets": {"rate": 100}}}, "mtu": 9000}`,
		`{"kind": "vhost-user", "options": {"socket": "x.sock"}, "config": {"name": "n", "vlan_mode": "access", "vlan": 3}}`,
		`{"default_action": "deny", "rules": [{"action": "allow", "ether_type": 2048, "dst_ports": "80-90"}]}`,
		`{"port": "a", "dst_mac": "02:00:00:00:00:02", "src_mac": "02:00:00:00:00:01"}`,
		`{"port": "a", "vlan": 10, "mac": "02:00:00:00:00:09"}`,
		`{"vlan": -1}`, `{"vlan": 1e99}`, `[]`, `null`, `{"vlan_mode": {}}`, `{} {}`,
	} {
		f.Add(uint8(i), []byte(b))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		s := fuzzServer(t)
		defer s.Close()
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		checkAnswer(t, rt.method+" "+rt.path, body, rec)
	})
}

// checkAnswer holds one answer to FuzzAPIBody's rules.
func checkAnswer(t *testing.T, what string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s %q: status %d: %s", what, body, rec.Code, rec.Body)
	}
	if rec.Code < 400 {
		return
	}
	var e Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
		t.Fatalf("%s %q: status %d with a body that is not an Error (%v): %s", what, body, rec.Code, err, rec.Body)
	}
	// A body that is not JSON, too large, or of the wrong JSON type as a
	// whole ("want api.X, got JSON array") has no field to name.
	notJSON := strings.HasPrefix(e.Message, "malformed JSON") || rec.Code == http.StatusRequestEntityTooLarge ||
		strings.HasPrefix(e.Message, "want api.") ||
		// An unknown key that is the empty string ({"": 0}) is named "".
		(e.Message == "unknown field" && bytes.Contains(body, []byte(`""`)))
	if e.Field == "" && !notJSON {
		t.Fatalf("%s %q: status %d names no field: %q", what, body, rec.Code, e.Message)
	}
}
