package api

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Every request the server accepts is one openapi.yaml accepts, and every
// answer, success or error, is one it describes: the requests below
// touch every route, in good and bad forms, and each exchange is checked
// against the document by kin-openapi.
func TestOpenAPIConformance(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://hvnet"}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	fakeFabric(e.factory)
	e.send("a", mac(1), mac(2), 3)
	h := e.srv.Handler()
	covered := map[string]bool{}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	for _, tc := range []struct {
		method, path, body string
		good               bool // a request the document accepts
	}{
		{"GET", "/v1/switch", "", true},
		{"GET", "/v1/ports", "", true},
		{"GET", "/v1/ports/a", "", true},
		{"GET", "/v1/ports/zz", "", true},
		{"PATCH", "/v1/ports/a", `{"vlan": 20, "egress": {"rate_bps": "100M", "burst_bytes": 1500}}`, true},
		{"PATCH", "/v1/ports/a", `{"egress": {"rate_bps": 1000000, "rate_pps": 10}}`, true},
		{"PATCH", "/v1/ports/a", `{"vlan": 5000}`, false},
		{"PATCH", "/v1/ports/a", `{"colour": "red"}`, false},
		{"POST", "/v1/ports", `{"kind": "vhost-user", "config": {"name": "v1", "vlan": 10}, "options": {"socket": "v1.sock"}}`, true},
		{"POST", "/v1/ports", `{"kind": "vhost-user", "config": {"name": "v2"}, "options": {"socket": "v2.sock", "queues": 2}}`, true},
		{"POST", "/v1/ports", `{"kind": "vhost-user", "config": {"name": "v1"}, "options": {"socket": "v1.sock"}}`, true},
		{"POST", "/v1/ports", `{"config": {"name": "x"}}`, false},
		{"DELETE", "/v1/ports/v2", "", true},
		{"DELETE", "/v1/ports/zz", "", true},
		{"GET", "/v1/fdb", "", true},
		{"GET", "/v1/fdb?port=a&vlan=20", "", true},
		{"POST", "/v1/fdb", `{"port": "a", "vlan": 20, "mac": "02:00:00:00:00:09"}`, true},
		{"POST", "/v1/fdb", `{"port": "a", "vlan": 20, "mac": "nope"}`, true},
		{"DELETE", "/v1/fdb/20/02:00:00:00:00:09", "", true},
		{"DELETE", "/v1/fdb?port=a", "", true},
		{"POST", "/v1/mirrors", `{"port": "a", "file": "a.pcap"}`, true},
		{"GET", "/v1/mirrors", "", true},
		{"DELETE", "/v1/mirrors/a", "", true},
		{"GET", "/v1/ports/a/acl", "", true},
		{"PUT", "/v1/ports/a/acl", `{"default": "deny", "rules": [{"action": "allow", "protocol": "tcp", "dst_ports": "22"},
			{"action": "deny", "direction": "egress", "dst_ip": "10.0.0.0/8"}], "egress_default": "allow"}`, true},
		{"PUT", "/v1/ports/a/acl", `{"rules": [{"action": "maybe"}]}`, false},
		{"GET", "/v1/ports/a/acl", "", true},
		{"GET", "/v1/ports/a/security-group", "", true},
		{"PUT", "/v1/ports/a/security-group", `{"inbound": [{"protocol": "tcp", "ports": "22", "remote": "10.0.0.0/8"},
			{"protocol": "icmpv6", "family": 6}], "outbound": [{"remote": "2001:db8::1"}], "inbound_default": "deny"}`, true},
		{"PUT", "/v1/ports/a/security-group?flush=true", `{"outbound_default": "deny"}`, true},
		{"PUT", "/v1/ports/a/security-group", `{"inbound": [{"ports": "22"}]}`, true},
		{"PUT", "/v1/ports/a/security-group", `{"inbound": [{"family": 5}]}`, false},
		{"PUT", "/v1/ports/a/security-group?flush=maybe", `{}`, false},
		{"GET", "/v1/ports/a/security-group", "", true},
		{"GET", "/v1/ports/a", "", true},
		{"PATCH", "/v1/ports/b", `{"egress": {"rate_bps": "10M"}}`, true},
		{"PATCH", "/v1/ports/a", `{"reservation_bps": "2M", "shares": 200, "limit_bps": 8000000, "pcp_class": [0, 0, 0, 0, 1, 1, 2, 2], "dscp_class": ["46:2", "8-15:0"]}`, true},
		{"PATCH", "/v1/ports/a", `{"shares": 20000}`, false},
		{"PATCH", "/v1/ports/a", `{"reservation_bps": "20M"}`, true},
		{"GET", "/v1/ports/a", "", true},
		{"GET", "/v1/ports/b/queues", "", true},
		{"GET", "/v1/ports/a/queues", "", true},
		{"GET", "/v1/ports/zz/queues", "", true},
		{"GET", "/v1/ports/a/conntrack", "", true},
		{"GET", "/v1/ports/a/conntrack?limit=5", "", true},
		{"GET", "/v1/ports/a/conntrack?limit=0", "", false},
		{"GET", "/v1/ports/b/conntrack", "", true},
		{"DELETE", "/v1/ports/a/conntrack", "", true},
		{"GET", "/v1/conntrack", "", true},
		{"DELETE", "/v1/ports/a/security-group", "", true},
		{"DELETE", "/v1/ports/a/security-group", "", true},
		{"DELETE", "/v1/ports/zz/conntrack", "", true},
		{"GET", "/v1/capture/zz", "", true},
		{"POST", "/v1/trace", `{"in_port": "zz"}`, false},
		{"POST", "/v1/trace", `{"in_port": "a", "src_mac": "02:00:00:00:00:01", "dst_mac": "02:00:00:00:00:02"}`, true},
		{"GET", "/v1/evpn/routes", "", true},
		{"GET", "/v1/evpn/routes?port=t&type=2&vni=100&mac=02:00:00:00:00:05", "", true},
		{"GET", "/v1/evpn/routes?type=4", "", false},
		{"GET", "/v1/evpn/routes?vni=0", "", false},
		{"GET", "/v1/evpn/routes?port=a", "", true},
		{"GET", "/v1/evpn/neighbors", "", true},
		{"GET", "/v1/evpn/neighbors?port=zz", "", true},
		{"POST", "/v1/fdb", `{"port": "t", "vlan": 10, "mac": "02:00:00:00:00:05"}`, true},
		{"GET", "/v1/fdb?port=t", "", true},
		{"GET", "/v1/flows", "", true},
		{"GET", "/v1/flow-export", "", true},
		{"PUT", "/v1/flow-export", `{"collectors": ["127.0.0.1:4739"], "active_timeout": "30s", "sampling": 10}`, true},
		{"PUT", "/v1/flow-export", `{"collectors": ["127.0.0.1:4739"], "idle_timeout": "soon"}`, true},
		{"PUT", "/v1/flow-export", `{"sampling": -1}`, false},
		{"PUT", "/v1/flow-export", `{"colour": "red"}`, false},
		{"GET", "/v1/flows?limit=5&sort=packets", "", true},
		{"GET", "/v1/flows?sort=age", "", false},
		{"PUT", "/v1/flow-export", `{"enabled": false}`, true},
		{"GET", "/metrics", "", true},
	} {
		name := tc.method + " " + tc.path
		req := httptest.NewRequest(tc.method, "http://hvnet"+tc.path, strings.NewReader(tc.body))
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s: not in openapi.yaml: %v", name, err)
			continue
		}
		covered[route.Method+" "+route.Path] = true
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		reqErr := openapi3filter.ValidateRequest(ctx, in)
		if tc.good && reqErr != nil {
			msg, _, _ := strings.Cut(reqErr.Error(), "\nSchema:")
			t.Errorf("%s %s: openapi.yaml refuses it: %s", name, tc.body, msg)
		}
		req2 := httptest.NewRequest(tc.method, "http://hvnet"+tc.path, strings.NewReader(tc.body))
		req2.Header = req.Header
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req2)
		if !tc.good && rec.Code < 400 {
			t.Errorf("%s %s: the server accepted what openapi.yaml refuses (%v): %d", name, tc.body, reqErr, rec.Code)
		}
		body := rec.Body.Bytes()
		err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{RequestValidationInput: in,
			Status: rec.Code, Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(body)), Options: opts})
		if err != nil {
			msg, _, _ := strings.Cut(err.Error(), "\nSchema:")
			t.Errorf("%s %s: answer %d not as openapi.yaml says: %s\n%s", name, tc.body, rec.Code, msg, firstBytes(body, 300))
		}
	}
	checkCovered(t, e.srv, covered)
}

// checkCovered: every route the server serves was exercised above.
func checkCovered(t *testing.T, s *Server, covered map[string]bool) {
	t.Helper()
	for _, r := range s.routeTable() {
		if !covered[r.pattern] {
			t.Errorf("%s: no conformance case", r.pattern)
		}
	}
}

func firstBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
