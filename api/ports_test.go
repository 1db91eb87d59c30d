package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// raw sends body as is and returns the status and the decoded error.
func (e *env) raw(method, path, body string) (int, Error) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://hvnet"+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.c.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ae Error
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(b, &ae); err != nil {
			e.t.Fatalf("%s %s: error body %q is not JSON: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, ae
}

func TestSocketMode(t *testing.T) {
	e := newEnv(t)
	fi, err := os.Stat(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	if _, err := Listen(e.sock); err == nil {
		t.Fatal("Listen on a live socket succeeded, want an error")
	}
}

func TestListAndShowPorts(t *testing.T) {
	e := newEnv(t)
	e.send("a", mac(1), mac(2), 3)
	ps, err := e.c.Ports(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"a", "b", "t"}) {
		t.Fatalf("ports = %v, want [a b t]", names)
	}
	p, err := e.c.Port(ctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.Mode != "access" || p.Config.PVID != 10 || p.Counters.RxPackets != 3 || p.Counters.LearnedMACs != 1 {
		t.Fatalf("port a = %+v", p)
	}
	if len(p.Counters.Drops) != int(vswitch.NumDropReasons) {
		t.Fatalf("drops = %v, want every reason", p.Counters.Drops)
	}
	tp, err := e.c.Port(ctx(t), "t")
	if err != nil {
		t.Fatal(err)
	}
	if tp.Config.Mode != "trunk" || !reflect.DeepEqual(tp.Config.AllowedVLANs, []int{10, 20}) {
		t.Fatalf("port t = %+v", tp.Config)
	}
	_, err = e.c.Port(ctx(t), "nope")
	wantError(t, err, http.StatusNotFound, "port")
}

func TestPatchPort(t *testing.T) {
	e := newEnv(t)
	mode, vlans, native := "trunk", []int{10, 30}, 1
	p, err := e.c.PatchPort(ctx(t), "b", PortPatch{Mode: &mode, AllowedVLANs: &vlans, NativeVLAN: &native,
		Egress: &RateLimit{RateBPS: 8e6, BurstBytes: 1e5}, MACLimit: ptr(4), AllowedMACs: &[]string{"02:00:00:00:00:09"}})
	if err != nil {
		t.Fatal(err)
	}
	got := e.sw.Port("b").Config()
	if got.Mode != vswitch.ModeTrunk || !reflect.DeepEqual(got.AllowedVLANs, []uint16{10, 30}) || got.NativeVLAN != 1 ||
		got.Egress.Bytes.Rate != 1e6 || got.MACLimit != 4 || len(got.AllowedMACs) != 1 || got.AllowedMACs[0] != mac(9) {
		t.Fatalf("switch config after PATCH = %+v", got)
	}
	if p.Config.Egress.RateBPS != 8e6 || p.Config.Egress.BurstBytes != 1e5 {
		t.Fatalf("PATCH answer = %+v", p.Config)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPatchBadInput: every bad request is a 4xx naming the field, and
// changes nothing.
func TestPatchBadInput(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"malformed", "/v1/ports/a", `{"vlan": `, 400, ""},
		{"not an object", "/v1/ports/a", `[1]`, 400, ""},
		{"empty", "/v1/ports/a", ``, 400, ""},
		{"trailing", "/v1/ports/a", `{} {}`, 400, ""},
		{"unknown field", "/v1/ports/a", `{"pvdi": 3}`, 400, "pvdi"},
		{"former name", "/v1/ports/a", `{"pvid": 3}`, 400, "pvid"},
		{"unknown nested field", "/v1/ports/a", `{"ingress": {"rat_bps": 3}}`, 400, "ingress.rat_bps"},
		{"wrong type", "/v1/ports/a", `{"vlan": "ten"}`, 400, "vlan"},
		{"unknown port", "/v1/ports/zz", `{"vlan": 3}`, 404, "port"},
		{"pvid 0", "/v1/ports/a", `{"vlan": 0}`, 400, "vlan"},
		{"pvid 4095", "/v1/ports/a", `{"vlan": 4095}`, 400, "vlan"},
		{"pvid huge", "/v1/ports/a", `{"vlan": 70000}`, 400, "vlan"},
		{"allowed vlan", "/v1/ports/t", `{"trunk": [10, 5000]}`, 400, "trunk[1]"},
		{"native vlan", "/v1/ports/t", `{"native": -2}`, 400, "native"},
		{"trunk without vlans", "/v1/ports/a", `{"vlan_mode": "trunk"}`, 400, "trunk"},
		{"bad mode", "/v1/ports/a", `{"vlan_mode": "hybrid"}`, 400, "vlan_mode"},
		{"negative rate", "/v1/ports/a", `{"ingress": {"rate_bps": -1}}`, 400, "ingress.rate_bps"},
		{"absurd rate", "/v1/ports/a", `{"egress": {"rate_pps": 1e15}}`, 400, "egress.rate_pps"},
		{"absurd burst", "/v1/ports/a", `{"egress": {"rate_bps": 8000, "burst_bytes": 1e12}}`, 400, "egress.burst_bytes"},
		{"rate in bytes", "/v1/ports/a", `{"egress": {"rate_bps": "10MB"}}`, 400, "egress.rate_bps"},
		{"old rate form", "/v1/ports/a", `{"egress": {"bytes": {"rate": 1000}}}`, 400, "egress.bytes"},
		{"storm", "/v1/ports/a", `{"storm": {"broadcast": {"rate_pps": -5}}}`, 400, "storm.broadcast.rate_pps"},
		{"mac limit", "/v1/ports/a", `{"mac_limit": -2}`, 400, "mac_limit"},
		{"bad mac", "/v1/ports/a", `{"allowed_macs": ["02:00:00:00:00:01", "zz"]}`, 400, "allowed_macs[1]"},
		{"group mac", "/v1/ports/a", `{"allowed_macs": ["01:00:5e:00:00:01"]}`, 400, "allowed_macs[0]"},
		{"mtu", "/v1/ports/a", `{"mtu": 10}`, 400, "mtu"},
		{"pcp", "/v1/ports/a", `{"pcp": 8}`, 400, "pcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]vswitch.PortConfig{}
			for n, h := range e.h {
				before[n] = h.Config()
			}
			status, ae := e.raw(http.MethodPatch, tc.path, tc.body)
			if status != tc.status || ae.Field != tc.field || ae.Message == "" {
				t.Fatalf("PATCH %s %s = %d field %q (%q), want %d field %q", tc.path, tc.body, status, ae.Field, ae.Message, tc.status, tc.field)
			}
			for n, h := range e.h {
				if !reflect.DeepEqual(h.Config(), before[n]) {
					t.Fatalf("port %s changed: %+v, was %+v", n, h.Config(), before[n])
				}
			}
		})
	}
}

func TestAddDeletePort(t *testing.T) {
	e := newEnv(t)
	p, err := e.c.AddPort(ctx(t), PortSpec{Kind: KindVhostUser,
		Config: PortConfig{Name: "v1", Mode: "access", PVID: 20}, Options: Opts("socket", "x.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "v1" || e.sw.Port("v1") == nil || e.sw.Port("v1").Config().PVID != 20 {
		t.Fatalf("added port = %+v", p)
	}
	_, err = e.c.AddPort(ctx(t), PortSpec{Kind: KindLab, Config: PortConfig{Name: "v1", PVID: 20}, Options: Opts("ip", "10.0.0.1/24")})
	wantError(t, err, http.StatusConflict, "config.name")
	// A port without a VLAN is in VLAN 1, as on the command line.
	if p, err := e.c.AddPort(ctx(t), PortSpec{Kind: KindVhostUser, Config: PortConfig{Name: "dflt"}, Options: Opts("socket", "d.sock")}); err != nil ||
		p.Config.Mode != "access" || p.Config.PVID != 1 {
		t.Errorf("port without a VLAN: %+v, %v", p.Config, err)
	}
	for _, tc := range []struct {
		spec  PortSpec
		field string
	}{
		{PortSpec{Kind: "tap", Config: PortConfig{Name: "x", PVID: 1}}, "kind"},
		{PortSpec{Kind: KindLab, Config: PortConfig{Name: "x", PVID: 5000}}, "config.vlan"},
		{PortSpec{Kind: KindLab, Config: PortConfig{Name: "x", Mode: "trunk"}}, "config.trunk"},
		{PortSpec{Kind: KindLab, Config: PortConfig{Name: "", PVID: 1}}, "config.name"},
		{PortSpec{Kind: KindLab, Config: PortConfig{Name: "x", PVID: 1, Ingress: RateLimit{RateBPS: -3}}}, "config.ingress.rate_bps"},
	} {
		_, err := e.c.AddPort(ctx(t), tc.spec)
		wantError(t, err, http.StatusBadRequest, tc.field)
		if e.sw.Port("x") != nil {
			t.Fatalf("bad spec %+v added a port", tc.spec)
		}
	}
	if err := e.c.DeletePort(ctx(t), "v1"); err != nil {
		t.Fatal(err)
	}
	if e.sw.Port("v1") != nil || !reflect.DeepEqual(e.factory.removed, []string{"v1"}) {
		t.Fatalf("after DELETE: port %v, factory removed %v", e.sw.Port("v1"), e.factory.removed)
	}
	wantError(t, e.c.DeletePort(ctx(t), "v1"), http.StatusNotFound, "port")

	e.factory.fail = os.ErrPermission
	_, err = e.c.AddPort(ctx(t), PortSpec{Kind: KindLab, Config: PortConfig{Name: "y", PVID: 1}, Options: Opts("ip", "10.0.0.1/24")})
	wantError(t, err, http.StatusUnprocessableEntity, "")
	if e.sw.Port("y") != nil {
		t.Fatal("failed factory left a port")
	}
}

func TestAddPortWithoutFactory(t *testing.T) {
	e := newEnv(t)
	e.srv.ports = nil
	_, err := e.c.AddPort(ctx(t), PortSpec{Kind: KindLab, Config: PortConfig{Name: "y", PVID: 1}, Options: Opts("ip", "10.0.0.1/24")})
	wantError(t, err, http.StatusNotImplemented, "")
}

func TestUnknownEndpoint(t *testing.T) {
	e := newEnv(t)
	if status, _ := e.raw(http.MethodGet, "/v2/nothing", ""); status != http.StatusNotFound {
		t.Fatalf("GET /v2/nothing = %d, want 404", status)
	}
	if status, _ := e.raw(http.MethodPut, "/v1/ports/a", "{}"); status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /v1/ports/a = %d, want 405", status)
	}
}

// TestServeLifecycle: Serve replaces a stale socket, answers, and removes
// the socket when its context ends.
func TestServeLifecycle(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	srv := NewServer(vswitch.New(vswitch.Config{}), Options{})
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(c, sock) }()
	cl := NewClient(sock)
	waitFor(t, "the server to answer", func() bool { _, err := cl.Ports(ctx(t)); return err == nil })
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v", fi, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket still there after Serve returned: %v", err)
	}
	if _, err := cl.Ports(ctx(t)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("client after shutdown: %v, want ErrNotRunning", err)
	}
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sock); err == nil {
		t.Fatal("Listen over a regular file succeeded")
	}
}

// A field by its former name is told the one name it has now.
func TestFormerFieldNames(t *testing.T) {
	e := newEnv(t)
	for body, want := range map[string]string{
		`{"pvid": 3}`:            "now called vlan",
		`{"allowed_vlans": [3]}`: "now called trunk",
		`{"ingress": {"rate_bps": 1}, "mode": "trunk"}`: "now called vlan_mode",
	} {
		status, ae := e.raw(http.MethodPatch, "/v1/ports/a", body)
		if status != 400 || !strings.Contains(ae.Message, want) {
			t.Errorf("PATCH %s = %d %q, want 400 and %q", body, status, ae.Message, want)
		}
	}
	status, ae := e.raw(http.MethodPost, "/v1/ports", `{"kind": "uplink", "config": {"name": "u"}, "interface": "eth1"}`)
	if status != 400 || ae.Field != "interface" || !strings.Contains(ae.Message, "now called options.if") {
		t.Errorf("POST with interface = %d %+v", status, ae)
	}
}
