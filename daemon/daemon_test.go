package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/conntrack"
	vswitch "github.com/hvnet/hvnet/switch"
)

// sinkKind is a port kind of this test alone, registered as any kind's
// package does: its backend is a port that counts what it is sent. That
// it works through every surface (text, config, API) without a change
// elsewhere is what the registry promises a new kind.
type sinkKind struct{}

func init() { Register(sinkKind{}, "sink-alias") }

func (sinkKind) Name() string    { return "test-sink" }
func (sinkKind) Summary() string { return "a port that counts frames (tests)" }
func (sinkKind) Options() []Option {
	return []Option{
		{Key: "socket", Value: "PATH", Help: "claimed, never opened"},
		{Key: "tag", Value: "WORD", Help: "repeatable", Repeat: true},
		{Key: "need", Value: "WORD", Help: "required", Required: true},
		{Key: "fail", Value: "attach|after", Help: "fail Start"},
		{Key: "detach-first", Value: "on", Help: "leave the switch before Close"},
	}
}

type sinkSpec struct {
	v    Values
	port vswitch.PortConfig
}

func (sinkKind) Parse(v Values, port vswitch.PortConfig) (Spec, error) {
	if n := v.Get("need"); n == "bad" {
		return nil, Bad("need", n, "is bad")
	}
	return &sinkSpec{v: v, port: port}, nil
}

func (s *sinkSpec) Claims() []string {
	if p := s.v.Get("socket"); p != "" {
		return []string{ClaimSocket(p)}
	}
	return nil
}

// started records every sink backend started, by name.
var started sync.Map

func (s *sinkSpec) Start(_ context.Context, h *Host, name string, attach vswitch.AttachFunc) (Backend, error) {
	if s.v.Get("fail") == "attach" {
		return nil, errors.New("refused before attaching")
	}
	b := &sinkBackend{spec: s, sw: h.Switch, name: name}
	if _, err := attach(b); err != nil {
		return nil, err
	}
	if s.v.Get("fail") == "after" {
		h.Switch.RemovePort(name) // what a kind undoes itself
		return nil, errors.New("failed after attaching")
	}
	started.Store(name, b)
	return b, nil
}

type sinkBackend struct {
	spec     *sinkSpec
	sw       *vswitch.Switch
	name     string
	mu       sync.Mutex
	closed   bool
	attached bool // whether the switch still had the port at Close
}

func (b *sinkBackend) Send(frames []vswitch.Frame) int { return len(frames) }
func (b *sinkBackend) Caps() vswitch.Caps              { return 0 }
func (b *sinkBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed, b.attached = true, b.sw.Port(b.name) != nil
	return nil
}
func (b *sinkBackend) DetachFirst() bool { return b.spec.v.Get("detach-first") == "on" }

// Reconfigure takes a change of tags alone live.
func (b *sinkBackend) Reconfigure(s Spec) (bool, error) {
	ns := s.(*sinkSpec)
	for k := range ns.v {
		if k != "tag" && !slices.Equal(ns.v[k], b.spec.v[k]) {
			return false, nil
		}
	}
	for k := range b.spec.v {
		if _, ok := ns.v[k]; !ok && k != "tag" {
			return false, nil
		}
	}
	b.mu.Lock()
	b.spec = ns
	b.mu.Unlock()
	return true, nil
}
func (b *sinkBackend) DeviceCounters() *api.DeviceCounters {
	return &api.DeviceCounters{Kind: "test-sink"}
}

func sinkOf(t *testing.T, name string) *sinkBackend {
	t.Helper()
	b, ok := started.Load(name)
	if !ok {
		t.Fatalf("sink %q never started", name)
	}
	return b.(*sinkBackend)
}

func TestRegister(t *testing.T) {
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", what)
			}
		}()
		f()
	}
	mustPanic("a name taken", func() { Register(sinkKind{}) })
	mustPanic("an alias taken", func() { Register(renamed{sinkKind{}, "other"}, "sink-alias") })
	mustPanic("a common key", func() { Register(commonKey{sinkKind{}}) })
	if k, ok := Lookup("sink-alias"); !ok || k.Name() != "test-sink" {
		t.Errorf("Lookup(alias) = %v, %v", k, ok)
	}
	if _, ok := Lookup("other"); ok {
		t.Error("a refused registration is known")
	}
	if got := strings.Join(Kinds(), ","); got != "test-sink" {
		t.Errorf("Kinds() = %q (this package's tests register only test-sink)", got)
	}
}

type renamed struct {
	sinkKind
	name string
}

func (r renamed) Name() string { return r.name }

type commonKey struct{ sinkKind }

func (commonKey) Name() string      { return "common-key" }
func (commonKey) Options() []Option { return []Option{{Key: "vlan"}} }

func TestParsePort(t *testing.T) {
	p, err := ParsePort("sink-alias", strings.Split("name=a,need=x,tag=1,tag=2,trunk=10:20,native=10,rate=1Mbit,police=2M,pps=3k,mtu=9000,mac-limit=-1,port-security=off", ","))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Port
	if p.Kind != "test-sink" || p.Name() != "a" || c.Mode != vswitch.ModeTrunk || len(c.AllowedVLANs) != 2 || c.NativeVLAN != 10 ||
		c.Egress.Bytes.Rate != 125000 || c.Ingress.Bytes.Rate != 250000 || c.Egress.Packets.Rate != 3000 || c.MTU != 9000 ||
		c.MACLimit != vswitch.NoMACLimit || c.PortSecurity != vswitch.PortSecurityOff || len(p.Values["tag"]) != 2 || p.Values.Get("need") != "x" {
		t.Errorf("ParsePort = %+v", p)
	}
	if p, err := ParsePort("test-sink", []string{"name=b", "need=y", ""}); err != nil || p.Port.PVID != 1 || p.Port.Mode != vswitch.ModeAccess {
		t.Errorf("defaults: %+v, %v", p, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"need=x", `field "name": missing`},
		{"name=a", `field "need": missing (a test-sink port needs need=WORD)`},
		{"name=a,need=x,need=y", `field "need": given more than once`},
		{"name=a,need=bad", `field "need": "bad" is bad`},
		{"name=a,need=x,colour=red", `field "colour": unknown for kind test-sink (its keys: socket, tag, need, fail, detach-first; and those every port takes: hvnet switch --kinds)`},
		{"name=a,need=x,vlan=0", `field "vlan"`},
		{"name=a,need=x,rate=fast", `field "rate": rate "fast": want bits per second`},
		{"name=a,need=x,pps=-1", `field "pps": packet rate "-1": want packets per second`},
		{"name=a,need=x,native=3", `field "native": only for trunk ports`},
		{"name=a,need=x,trunk=5,vlan=3", `field "vlan": only for access ports`},
		{"name=a,need=x,mtu", `field "mtu": want KEY=VALUE`},
	} {
		if _, err := ParsePort("test-sink", strings.Split(tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
	if _, err := ParsePort("nosuch", nil); err == nil || err.Error() != `kind "nosuch": unknown (want test-sink)` {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := NewPortSpec("test-sink", vswitch.PortConfig{Name: "x"}, Values{"need": {"x"}, "zzz": {"1"}}); err == nil ||
		!strings.Contains(err.Error(), `field "zzz": unknown for kind test-sink`) {
		t.Errorf("NewPortSpec with an unknown key: %v", err)
	}
}

// startDaemon runs a daemon with its API in a temporary directory and
// the ports of cfg.
func startDaemon(t *testing.T, cfg Config) (*vswitch.Switch, *api.Client, string, *Running) {
	t.Helper()
	dir := t.TempDir()
	cfg.API = filepath.Join(dir, "api.sock")
	sw := vswitch.New(cfg.SwitchConfig()) // as Serve makes it
	r, err := Start(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	return sw, api.NewClient(cfg.API), filepath.Join(dir, "api"), r
}

func wantAPIError(t *testing.T, what string, err error, status int, field, msg string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %v, want an API answer %d", what, err, status)
		return
	}
	if e.Status != status || e.Field != field || !strings.Contains(e.Message, msg) {
		t.Errorf("%s: %d %q (field %q), want %d naming %q and saying %q", what, e.Status, e.Message, e.Field, status, field, msg)
	}
}

// A kind reaches the API with no change there: its options are checked
// and confined, its backend's counters shown, its claims enforced
// against every port's; its backends stop on DELETE and at shutdown.
func TestKindThroughAPI(t *testing.T) {
	own, err := ParsePort("test-sink", []string{"name=own", "need=x", "socket=/elsewhere/own.sock", "detach-first=on"})
	if err != nil {
		t.Fatal(err)
	}
	sw, c, run, r := startDaemon(t, Config{Ports: []PortSpec{own}})
	ctx := context.Background()
	spec := func(name string, opts map[string]api.OptionValue) api.PortSpec {
		return api.PortSpec{Kind: "test-sink", Config: api.PortConfig{Name: name, Mode: "access", PVID: 20}, Options: opts}
	}
	p, err := c.AddPort(ctx, spec("a", map[string]api.OptionValue{"need": {"x"}, "tag": {"1", "2"}, "socket": {"t/a.sock"}}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.PVID != 20 || p.Device == nil || p.Device.Kind != "test-sink" || p.Kind != "test-sink" ||
		len(p.Options["tag"]) != 2 || p.Options["need"][0] != "x" {
		t.Errorf("added port = %+v", p)
	}
	if ps, err := c.Ports(ctx); err != nil || len(ps) != 2 || ps[1].Name != "own" || ps[1].Kind != "test-sink" ||
		ps[1].Options["socket"][0] != "/elsewhere/own.sock" {
		t.Errorf("GET /v1/ports = %+v, %v; want each port's kind and options", ps, err)
	}
	a := sinkOf(t, "a")
	if got := a.spec.v.Get("socket"); got != filepath.Join(run, "t", "a.sock") {
		t.Errorf("options.socket = %q, want it under the run directory %s", got, run)
	}
	if len(a.spec.v["tag"]) != 2 || a.spec.port.PVID != 20 {
		t.Errorf("values %v, port %+v", a.spec.v, a.spec.port)
	}
	for _, tc := range []struct {
		what   string
		spec   api.PortSpec
		status int
		field  string
		msg    string
	}{
		{"unknown option", spec("b", map[string]api.OptionValue{"need": {"x"}, "zzz": {"1"}}), 400, "options.zzz", "unknown for kind test-sink (its keys: socket,"},
		{"missing option", spec("b", map[string]api.OptionValue{"tag": {"1"}}), 400, "options.need", "missing"},
		{"bad value", spec("b", map[string]api.OptionValue{"need": {"bad"}}), 400, "options.need", `"bad" is bad`},
		{"repeated", spec("b", map[string]api.OptionValue{"need": {"x", "y"}}), 400, "options.need", "given more than once"},
		{"socket outside", spec("b", map[string]api.OptionValue{"need": {"x"}, "socket": {"../b.sock"}}), 400, "options.socket", `".." is not allowed`},
		{"socket taken", spec("b", map[string]api.OptionValue{"need": {"x"}, "socket": {"t/a.sock"}}), 422, "", `is port "a"'s`},
		{"API socket", spec("b", map[string]api.OptionValue{"need": {"x"}, "socket": {filepath.Join(filepath.Dir(run), "api.sock")}}), 400, "options.socket", "outside"},
		{"old name", spec("b", map[string]api.OptionValue{"need": {"x"}, "command": {"true"}}), 400, "options.command", "is now called cmd"},
		{"unknown kind", api.PortSpec{Kind: "nosuch", Config: api.PortConfig{Name: "b", PVID: 1}}, 400, "kind", `"nosuch": want test-sink`},
		{"fails before attaching", spec("b", map[string]api.OptionValue{"need": {"x"}, "fail": {"attach"}}), 422, "", "refused before attaching"},
		{"fails after attaching", spec("b", map[string]api.OptionValue{"need": {"x"}, "fail": {"after"}}), 422, "", "failed after attaching"},
	} {
		_, err := c.AddPort(ctx, tc.spec)
		wantAPIError(t, tc.what, err, tc.status, tc.field, tc.msg)
		if sw.Port("b") != nil {
			t.Fatalf("%s: port b left on the switch", tc.what)
		}
	}
	if err := c.DeletePort(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !a.closed || a.attached {
		t.Errorf("after DELETE: closed %v, still attached %v", a.closed, a.attached)
	}
	// The freed socket can be claimed again.
	if _, err := c.AddPort(ctx, spec("b", map[string]api.OptionValue{"need": {"x"}, "socket": {"t/a.sock"}})); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if o, b := sinkOf(t, "own"), sinkOf(t, "b"); !o.closed || o.attached || !b.closed || !b.attached {
		t.Errorf("at shutdown: own closed %v attached %v (detach-first), b closed %v attached %v",
			o.closed, o.attached, b.closed, b.attached)
	}
	if sw.Port("own") != nil || sw.Port("b") != nil {
		t.Error("ports left on the switch after shutdown")
	}
}

// Two ports of one name, or one claim twice, in the configuration.
func TestStartRefuses(t *testing.T) {
	a, _ := ParsePort("test-sink", []string{"name=a", "need=x", "socket=/s"})
	b, _ := ParsePort("test-sink", []string{"name=b", "need=x", "socket=/s"})
	a2, _ := ParsePort("test-sink", []string{"name=a", "need=y"})
	sw := vswitch.New(vswitch.Config{})
	if _, err := Start(context.Background(), hclog.NewNullLogger(), sw, Config{Ports: []PortSpec{a, a2}}, true); err == nil ||
		!strings.Contains(err.Error(), `port "a" defined twice`) {
		t.Errorf("one name twice: %v", err)
	}
	if _, err := Start(context.Background(), hclog.NewNullLogger(), sw, Config{Ports: []PortSpec{a, b}}, true); err == nil ||
		!strings.Contains(err.Error(), `port "b": socket /s is port "a"'s`) {
		t.Errorf("one socket twice: %v", err)
	}
	if sw.Port("a") != nil {
		t.Error("a failed start left port a")
	}
	if err := New(context.Background(), hclog.NewNullLogger(), sw, "").start(context.Background(), PortSpec{Port: vswitch.PortConfig{Name: "x"}},
		func(vswitch.Port) (*vswitch.PortHandle, error) { return nil, nil }); err == nil {
		t.Error("an unparsed PortSpec started")
	}
}

// An API request's option keys are the kinds', "_" standing for "-".
func TestAPIValues(t *testing.T) {
	v := apiValues(api.PortSpec{Options: map[string]api.OptionValue{"socket_mode": {"0660"}, "guest-mtu": {"1400"}, "vif": {"a", "b"}}})
	want := Values{"socket-mode": {"0660"}, "guest-mtu": {"1400"}, "vif": {"a", "b"}}
	if len(v) != len(want) {
		t.Fatalf("apiValues = %v, want %v", v, want)
	}
	for k, w := range want {
		if strings.Join(v[k], ",") != strings.Join(w, ",") {
			t.Errorf("%s = %v, want %v", k, v[k], w)
		}
	}
}

func TestDefaultRunDir(t *testing.T) {
	for _, tc := range []struct{ api, want string }{
		{"/run/hvnet.sock", "/run/hvnet"},
		{"/tmp/x/api.sock", "/tmp/x/api"},
		{"/tmp/x/api", "/tmp/x/api.d"},
		{"/tmp/x/.sock", "/tmp/x/.sock.d"},
		{"rel.sock", "rel"},
	} {
		if got := DefaultRunDir(tc.api); got != tc.want {
			t.Errorf("DefaultRunDir(%q) = %q, want %q", tc.api, got, tc.want)
		}
	}
}

// Reload applies a new configuration: gone ports stop, new ones start,
// changed kind settings restart a port, changed switch settings update it
// live with the same backend, and the API's ports are left alone.
func TestReload(t *testing.T) {
	port := func(fields ...string) PortSpec {
		t.Helper()
		p, err := ParsePort("test-sink", fields)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := port("name=ra", "need=x", "vlan=10")
	sw, c, _, r := startDaemon(t, Config{Ports: []PortSpec{a, port("name=rb", "need=x"), port("name=rc", "need=x", "socket=/s1")}})
	defer r.Shutdown()
	ctx := context.Background()
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: "test-sink", Config: api.PortConfig{Name: "rapi", PVID: 1},
		Options: map[string]api.OptionValue{"need": {"x"}}}); err != nil {
		t.Fatal(err)
	}
	oldA, oldB, oldC, apiPort := sinkOf(t, "ra"), sinkOf(t, "rb"), sinkOf(t, "rc"), sinkOf(t, "rapi")
	res, err := r.Reload(ctx, []PortSpec{port("name=ra", "need=x", "vlan=20", "rate=1M"), port("name=rc", "need=x", "socket=/s2"),
		port("name=rd", "need=x", "socket=/s1")}, []PortACL{{Port: "rd", In: vswitch.ACL{Default: vswitch.ACLDeny}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Updated, ",") != "ra" || strings.Join(res.Removed, ",") != "rb" || strings.Join(res.Restarted, ",") != "rc" ||
		strings.Join(res.Added, ",") != "rd" || len(res.Unchanged) != 0 {
		t.Errorf("Reload = %+v", res)
	}
	if sinkOf(t, "ra") != oldA || oldA.closed || sw.Port("ra").Config().PVID != 20 || sw.Port("ra").Config().Egress.Bytes.Rate != 125000 {
		t.Errorf("ra: not updated live (same backend %v, closed %v, config %+v)", sinkOf(t, "ra") == oldA, oldA.closed, sw.Port("ra").Config())
	}
	if !oldB.closed || sw.Port("rb") != nil {
		t.Errorf("rb: closed %v, still on the switch %v", oldB.closed, sw.Port("rb") != nil)
	}
	if !oldC.closed || sinkOf(t, "rc") == oldC || sinkOf(t, "rc").spec.v.Get("socket") != "/s2" {
		t.Errorf("rc: not restarted with its new socket")
	}
	if in, _ := sw.Port("rd").ACL(); in.Default != vswitch.ACLDeny {
		t.Errorf("rd's ACL = %+v", in)
	}
	if apiPort.closed || sw.Port("rapi") == nil {
		t.Error("the API's port was touched")
	}
	// The same configuration again changes nothing.
	res, err = r.Reload(ctx, []PortSpec{port("name=ra", "need=x", "vlan=20", "rate=1M"), port("name=rc", "need=x", "socket=/s2"),
		port("name=rd", "need=x", "socket=/s1")}, []PortACL{{Port: "rd", In: vswitch.ACL{Default: vswitch.ACLDeny}}}, nil)
	if err != nil || len(res.Unchanged) != 3 || len(res.Added)+len(res.Removed)+len(res.Updated)+len(res.Restarted) != 0 {
		t.Errorf("second Reload = %+v, %v", res, err)
	}
	// A change its backend takes live (tags, for the test kind) keeps the
	// backend; one it does not restarts the port.
	oldD := sinkOf(t, "rd")
	res, err = r.Reload(ctx, []PortSpec{port("name=ra", "need=x", "vlan=20", "rate=1M"), port("name=rc", "need=x", "socket=/s2"),
		port("name=rd", "need=x", "socket=/s1", "tag=live")}, []PortACL{{Port: "rd", In: vswitch.ACL{Default: vswitch.ACLDeny}}}, nil)
	if err != nil || strings.Join(res.Updated, ",") != "rd" || len(res.Restarted) != 0 || oldD.closed || sinkOf(t, "rd") != oldD ||
		oldD.spec.v.Get("tag") != "live" {
		t.Errorf("a live kind-settings change: %+v, %v (closed %v, tag %q)", res, err, oldD.closed, oldD.spec.v.Get("tag"))
	}
	// A configuration port may not take an API port's name.
	if _, err := r.Reload(ctx, []PortSpec{port("name=rapi", "need=x")}, nil, nil); !errors.Is(err, vswitch.ErrPortExists) || sw.Port("ra") == nil {
		t.Errorf("Reload over an API port: %v (and ra %v: a refused reload changes nothing)", err, sw.Port("ra") != nil)
	}
	if _, err := r.Reload(ctx, []PortSpec{port("name=x", "need=x"), port("name=x", "need=y")}, nil, nil); err == nil {
		t.Error("Reload with one name twice succeeded")
	}
}

// Security groups at start and on reload: a changed group replaces the
// old one without a flush (the port keeps its connection table), a group
// gone from the configuration is removed, an unchanged one (or one the
// API set on a port the configuration gives none) is left alone; a
// restarted port gets its group again. The daemon's conntrack settings
// reach GET /v1/switch and GET /v1/conntrack.
func TestReloadSecurityGroups(t *testing.T) {
	port := func(fields ...string) PortSpec {
		t.Helper()
		p, err := ParsePort("test-sink", fields)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ssh := vswitch.SGRule{Proto: 6, Ports: vswitch.PortRange{From: 22, To: 22}}
	group := func(rules ...vswitch.SGRule) vswitch.SecurityGroup {
		g := vswitch.DefaultSecurityGroup()
		g.Inbound = rules
		return g
	}
	ports := []PortSpec{port("name=sa", "need=x"), port("name=sb", "need=x"), port("name=sc", "need=x", "socket=/s1"), port("name=sd", "need=x")}
	sw, c, _, r := startDaemon(t, Config{Ports: ports, Conntrack: conntrack.Config{TableLimit: 5000, ZoneLimit: 100},
		SecurityGroups: []PortSG{{Port: "sa", Group: group(ssh)}, {Port: "sb", Group: group()}, {Port: "sc", Group: group()}}})
	defer r.Shutdown()
	ctx := context.Background()
	if g, ok := sw.Port("sa").SecurityGroup(); !ok || len(g.Inbound) != 1 {
		t.Fatalf("sa's group at start = %+v %v", g, ok)
	}
	info, err := c.Conntrack(ctx)
	if err != nil || info.MaxEntries != 5000 || info.MaxEntriesPerPort != 100 || len(info.Ports) != 3 {
		t.Fatalf("GET /v1/conntrack = %+v, %v", info, err)
	}
	var si api.SwitchInfo
	if err := c.Do(ctx, http.MethodGet, "/v1/switch", nil, &si); err != nil || si.Conntrack == nil || si.Conntrack.MaxEntries != 5000 ||
		si.Conntrack.Timeouts.TCPEstablished != "120h0m0s" {
		t.Fatalf("GET /v1/switch conntrack = %+v, %v", si.Conntrack, err)
	}
	// The API gives sd a group the configuration does not have.
	if _, err := c.SetSecurityGroup(ctx, "sd", api.SecurityGroup{}, false); err != nil {
		t.Fatal(err)
	}
	zoneA, zoneB := sw.Port("sa").Conntrack(), sw.Port("sb").Conntrack()
	ports[2] = port("name=sc", "need=x", "socket=/s2") // restarted
	if _, err := r.Reload(ctx, ports, nil, []PortSG{{Port: "sa", Group: group(ssh, ssh)}, {Port: "sc", Group: group()}}); err != nil {
		t.Fatal(err)
	}
	if g, ok := sw.Port("sa").SecurityGroup(); !ok || len(g.Inbound) != 2 || sw.Port("sa").Conntrack() != zoneA {
		t.Errorf("sa: group %+v (%v), same connection table %v", g, ok, sw.Port("sa").Conntrack() == zoneA)
	}
	if _, ok := sw.Port("sb").SecurityGroup(); ok || zoneB == nil {
		t.Error("sb's group outlived its removal from the configuration")
	}
	if _, ok := sw.Port("sc").SecurityGroup(); !ok {
		t.Error("restarted sc lost its group")
	}
	if _, ok := sw.Port("sd").SecurityGroup(); !ok {
		t.Error("the API's group on sd was removed by a reload that did not touch it")
	}
}

// The metrics listener serves /metrics alone, with the Go, process and
// build metrics beside the switch's, in an exposition promtool (and its
// linter) accept.
func TestMetricsListener(t *testing.T) {
	p, err := ParsePort("test-sink", []string{"name=m", "need=x", "rate=10M"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, r := startDaemon(t, Config{Ports: []PortSpec{p}, MetricsAddr: "127.0.0.1:0",
		BuildInfo: map[string]string{"version": "dev", "revision": "abc", "goversion": "go1"}})
	defer r.Shutdown()
	base := "http://" + r.MetricsAddr().String()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hvnet_build_info{goversion="go1",revision="abc",version="dev"} 1`, "go_goroutines ",
		"process_open_fds ", `hvnet_port_packets_total{direction="ingress",port="m"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	if _, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool is not installed (Debian's prometheus package; run.sh installs it)")
	}
	for _, path := range []string{"/v1/ports", "/v1/fdb"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the metrics listener: %d, want 404 (no control there)", path, resp.StatusCode)
		}
	}
	r.Shutdown()
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("the metrics listener outlived the daemon")
	}
}

// The dashboard listener serves the page and the API's read-only
// requests, nothing that changes the switch, and ends with the daemon.
// (Package dashboard's tests check the page in a browser.)
func TestDashboardListener(t *testing.T) {
	p, err := ParsePort("test-sink", []string{"name=d", "need=x", "vlan=10"})
	if err != nil {
		t.Fatal(err)
	}
	sw, _, _, r := startDaemon(t, Config{Ports: []PortSpec{p}, DashboardAddr: "127.0.0.1:0"})
	defer r.Shutdown()
	if err := sw.AddStatic("d", 10, vswitch.MAC{2, 0, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + r.DashboardAddr().String()
	get := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get("GET", "/", ""); st != 200 || !strings.Contains(body, "app.js") {
		t.Errorf("GET /: %d %.80q", st, body)
	}
	if st, body := get("GET", "/api/v1/ports", ""); st != 200 || !strings.Contains(body, `"name": "d"`) {
		t.Errorf("GET /api/v1/ports: %d %.200q", st, body)
	}
	if st, body := get("POST", "/api/v1/trace", `{"in_port": "d", "src_mac": "02:00:00:00:00:02", "dst_mac": "02:00:00:00:00:01"}`); st != 200 || !strings.Contains(body, `"steps"`) {
		t.Errorf("POST /api/v1/trace: %d %.200q", st, body)
	}
	if st, body := get("GET", "/api/v1/flows", ""); st != 200 || !strings.Contains(body, `"enabled": false`) {
		t.Errorf("GET /api/v1/flows without a flow cache: %d %q", st, body)
	}
	for _, c := range [][3]string{{"DELETE", "/api/v1/fdb", ""}, {"DELETE", "/api/v1/ports/d", ""},
		{"PATCH", "/api/v1/ports/d", `{"vlan": 20}`}, {"POST", "/api/v1/ports", `{"kind": "test-sink"}`}} {
		if st, _ := get(c[0], c[1], c[2]); st != http.StatusNotFound {
			t.Errorf("%s %s on the dashboard: %d, want 404", c[0], c[1], st)
		}
	}
	if len(sw.FDB()) != 1 || sw.Port("d") == nil || sw.Port("d").Config().PVID != 10 {
		t.Error("a request on the dashboard changed the switch")
	}
	if info := (Config{DashboardAddr: "9478"}).SwitchInfo(); info.DashboardAddr != "9478" {
		t.Errorf("SwitchInfo().DashboardAddr = %q", info.DashboardAddr)
	}
	r.Shutdown()
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("the dashboard outlived the daemon")
	}
}

// A dashboard address that cannot be listened on (taken) stops the
// start, and leaves no API socket behind.
func TestDashboardAddrRefused(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := Config{API: filepath.Join(dir, "api.sock"), DashboardAddr: taken.Addr().String()}
	if _, err := Start(context.Background(), hclog.NewNullLogger(), vswitch.New(cfg.SwitchConfig()), cfg, true); err == nil ||
		!strings.Contains(err.Error(), "dashboard") {
		t.Errorf("Start: %v, want a dashboard error", err)
	}
	if _, err := os.Stat(cfg.API); !os.IsNotExist(err) {
		t.Errorf("the API socket is left: %v", err)
	}
}

// rate=link needs a kind on a host interface (a LinkSpeeder).
func TestRateLinkNeedsAnInterface(t *testing.T) {
	if _, err := ParsePort("test-sink", []string{"name=v", "need=x", "rate=link"}); err == nil ||
		!strings.Contains(err.Error(), `field "rate": "link" only a port on a host interface knows its link's speed (not kind test-sink)`) {
		t.Errorf("rate=link on a test-sink port: %v", err)
	}
	if _, err := ParseSwitchPort([]string{"name=v", "rate=fast"}); err == nil || !strings.Contains(err.Error(), `field "rate"`) {
		t.Errorf("rate=fast: %v", err)
	}
}
