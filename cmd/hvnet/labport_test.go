package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/daemon/labkind"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vmm"
)

// inProcDaemon runs the daemon (daemon.Start) in this process with its
// API on a temporary socket and one existing port, "v" (a vhost-user
// server socket).
func inProcDaemon(t *testing.T, cfg daemon.Config) (*vswitch.Switch, *api.Client) {
	t.Helper()
	dir := t.TempDir()
	cfg.API, cfg.RunDir = filepath.Join(dir, "api.sock"), dir
	sw := vswitch.New(vswitch.Config{})
	r, err := daemon.Start(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	c := api.NewClient(cfg.API)
	if _, err := c.AddPort(context.Background(), api.PortSpec{Kind: api.KindVhostUser,
		Config: api.PortConfig{Name: "v", Mode: "access", PVID: 1}, Options: api.Opts("socket", filepath.Join(dir, "v.sock"))}); err != nil {
		t.Fatal(err)
	}
	return sw, c
}

// wantAPIError checks that err is an API answer of status class 4xx
// naming field (when field is not "") and whose message contains msg.
func wantAPIError(t *testing.T, what string, err error, status int, field, msg string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %v, want an API answer %d", what, err, status)
		return
	}
	if e.Status != status || field != "" && e.Field != field || !strings.Contains(e.Message, msg) {
		t.Errorf("%s: %d %q (field %q), want %d naming %q and saying %q", what, e.Status, e.Message, e.Field, status, field, msg)
	}
}

// TestLabPortRefused: where KVM cannot boot Linux (this build host's
// /dev/kvm is PVM), POST /v1/ports kind lab answers 422 saying why, and
// nothing changes; bad lab specs are refused naming the field first.
func TestLabPortRefused(t *testing.T) {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
		// A host with real KVM: make the probe answer as on PVM.
		old := labkind.Probe
		labkind.Probe = func() error {
			return fmt.Errorf("%w: /dev/kvm is backed by kvm_pvm (test stand-in)", vmm.ErrUnusableKVM)
		}
		t.Cleanup(func() { labkind.Probe = old })
	}
	sw, c := inProcDaemon(t, daemon.Config{Images: guestImages{kernel: "/nonexistent/k", initrd: "/nonexistent/i"}.resolve})
	ctx := context.Background()
	good := api.PortSpec{Kind: api.KindLab, Config: api.PortConfig{Name: "g", Mode: "access", PVID: 10}, Options: api.Opts("ip", "10.0.0.1/24", "mem", "128M", "cmd", "exit 0")}
	_, err := c.AddPort(ctx, good)
	wantAPIError(t, "lab port on PVM", err, http.StatusUnprocessableEntity, "", "kvm_pvm")
	if err != nil && !strings.Contains(err.Error(), "nested test host") {
		t.Errorf("the 422 does not say where guests can boot: %v", err)
	}

	bad := func(mut func(*api.PortSpec)) api.PortSpec {
		s := good
		s.Options = maps.Clone(good.Options)
		mut(&s)
		return s
	}
	opt := func(k, v string) func(*api.PortSpec) {
		return func(s *api.PortSpec) {
			if v == "" {
				delete(s.Options, k)
			} else {
				s.Options[k] = api.OptionValue{v}
			}
		}
	}
	for _, tc := range []struct {
		name   string
		spec   api.PortSpec
		status int
		field  string
	}{
		{"bad ip", bad(opt("ip", "10.0.0.300/24")), 400, "options.ip"},
		{"no name", bad(func(s *api.PortSpec) { s.Config.Name = "" }), 400, "config.name"},
		{"bad mem", bad(opt("mem", "lots")), 400, "options.mem"},
		{"huge mem", bad(opt("mem", "1000G")), 400, "options.mem"},
		{"bad cpus", bad(opt("cpus", "99")), 400, "options.cpus"},
		{"bad mtu", bad(opt("guest_mtu", "20")), 400, "options.guest-mtu"},
		{"bad vif", bad(opt("vif", "eth0:10.0.1.1/24")), 400, "options.vif"},
		{"old name", bad(opt("script", "true")), 400, "options.script"},
		{"bad vlan", bad(func(s *api.PortSpec) { s.Config.PVID = 5000 }), 400, "config.vlan"},
		{"guest on vhost", bad(func(s *api.PortSpec) { s.Kind = api.KindVhostUser; s.Options["socket"] = api.OptionValue{"x.sock"} }), 400, "options.cmd"},
		{"duplicate", bad(func(s *api.PortSpec) { s.Config.Name = "v" }), 409, "config.name"},
	} {
		_, err := c.AddPort(ctx, tc.spec)
		wantAPIError(t, tc.name, err, tc.status, tc.field, "")
	}
	// Unknown fields.
	for body, field := range map[string]string{
		`{"kind":"lab","config":{"name":"g","vlan_mode":"access","vlan":1},"guest":{"ip":"10.0.0.1/24"}}`:                "guest",
		`{"kind":"lab","config":{"name":"g","vlan_mode":"access","vlan":1},"options":{"ip":"10.0.0.1/24"},"kernel":"x"}`: "kernel",
		`{"kind":"lab","config":{"name":"g","mode":"access","vlan":1},"options":{"ip":"10.0.0.1/24"}}`:                   "config.mode",
	} {
		_, err := c.Raw(ctx, http.MethodPost, "/v1/ports", jsonRaw(body))
		wantAPIError(t, "unknown "+field, err, 400, field, "unknown")
	}
	if ps, err := c.Ports(ctx); err != nil || len(ps) != 1 || ps[0].Name != "v" || ps[0].Guest != nil {
		t.Errorf("ports after the refusals = %+v, %v; want only v", ps, err)
	}
	if len(sw.Counters()) != 1 {
		t.Errorf("switch has %d ports, want 1", len(sw.Counters()))
	}
}

// jsonRaw is a request body sent as is.
type jsonRaw string

func (j jsonRaw) MarshalJSON() ([]byte, error) { return []byte(j), nil }

// TestLabPortNoImages: with KVM able to boot guests but no images, the
// 422 says so.
func TestLabPortNoImages(t *testing.T) {
	old := labkind.Probe
	labkind.Probe = func() error { return nil }
	t.Cleanup(func() { labkind.Probe = old })
	_, c := inProcDaemon(t, daemon.Config{Images: guestImages{}.resolve})
	_, err := c.AddPort(context.Background(), api.PortSpec{Kind: api.KindLab,
		Config: api.PortConfig{Name: "g", Mode: "access", PVID: 1}, Options: api.Opts("ip", "10.0.0.1/24")})
	wantAPIError(t, "no images", err, http.StatusUnprocessableEntity, "", "no guest images")
}

// TestCtlAdd: "hvnet ctl add KIND NAME KEY=VALUE..." sends the keys every
// port takes as the port's config and the rest as the kind's options,
// which the daemon checks (its 4xx comes back as the command's error);
// a lab port on a daemon that cannot boot guests is refused (422).
func TestCtlAdd(t *testing.T) {
	spec, err := addSpec(api.KindLab, "g", []string{"ip=10.0.0.1/24", "trunk=10,20", "native=10", "mem=128M", "cpus=2",
		"vif=eth0.20:10.0.20.1/24", "vif=eth0.30", "rate=10M", "police=1Mbit", "mac-limit=3", "queues=2", "mtu=1400",
		"mac=52:54:00:00:00:09", "cmd=ping -c 1 10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	o := spec.Options
	if spec.Config.Name != "g" || spec.Config.Mode != "trunk" || len(spec.Config.AllowedVLANs) != 2 || spec.Config.NativeVLAN != 10 ||
		spec.Config.MACLimit != 3 || spec.Config.MTU != 1400 || spec.Config.Egress.RateBPS != 10e6 || spec.Config.Ingress.RateBPS != 1e6 ||
		o["ip"][0] != "10.0.0.1/24" || o["mem"][0] != "128M" || o["cpus"][0] != "2" || len(o["vif"]) != 2 || o["queues"][0] != "2" ||
		o["mac"][0] != "52:54:00:00:00:09" || o["cmd"][0] != "ping -c 1 10.0.0.2" || len(o) != 7 {
		t.Errorf("addSpec = %+v", spec)
	}
	for _, bad := range [][]string{{"vlan=5000"}, {"name=x"}, {"ip"}, {"trunk=10,x"}, {"rate=fast"}} {
		if _, err := addSpec(api.KindLab, "g", bad); !errors.Is(err, errUsage) {
			t.Errorf("addSpec(%q) = %v, want a usage error", bad, err)
		}
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
		old := labkind.Probe
		labkind.Probe = func() error { return fmt.Errorf("%w: kvm_pvm (test stand-in)", vmm.ErrUnusableKVM) }
		t.Cleanup(func() { labkind.Probe = old })
	}
	dir := t.TempDir()
	cfg := daemon.Config{API: filepath.Join(dir, "api.sock"), Images: guestImages{kernel: "k", initrd: "i"}.resolve}
	r, err := daemon.Start(context.Background(), hclog.NewNullLogger(), vswitch.New(vswitch.Config{}), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	code, _, stderr := runCtl(t, cfg.API, "add", "lab", "g", "ip=10.0.0.1/24", "vlan=10")
	if code == 0 || !strings.Contains(stderr, "kvm_pvm") {
		t.Errorf("ctl add lab on PVM: status %d, stderr %q", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "g", "ip=10.0.0.1/24", "disk=1G"}, `options.disk: unknown for kind lab (its keys: ip,`},
		{[]string{"lab", "g", "ip=10.0.0.1/24", "cpus=two"}, `options.cpus: "two" is not a number in 1..16`},
		{[]string{"lab", "g", "command=x"}, `options.command: is now called cmd`},
		{[]string{"vhost-user", "v", "socket=../v.sock"}, `options.socket`},
		{[]string{"vhost-user", "v", "socket=v.sock", "queues=99"}, `options.queues: "99" is not a number of queue pairs (1..16)`},
		{[]string{"uplink", "u", "if=hvnet-nosuch0"}, `hvnet-nosuch0`},
		{[]string{"bridge", "b"}, `kind: "bridge": want bond, lab, uplink, vhost-user`},
	} {
		code, _, stderr := runCtl(t, cfg.API, append([]string{"add"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("ctl add %q: status %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
	code, out, stderr := runCtl(t, cfg.API, "add", "vhost-user", "v", "socket=v.sock", "queues=2", "vlan=20")
	if code != 0 || !strings.Contains(out, "port v added: vhost-user") {
		t.Fatalf("ctl add vhost-user: status %d, %q %q", code, out, stderr)
	}
	fe := negotiate(t, filepath.Join(dir, "api", "v.sock")) // features set, the session live
	waitCond(t, "the session", func() bool {
		_, out, _ := runCtl(t, cfg.API, "port", "v")
		return strings.Contains(out, "negotiated:")
	})
	if code, out, _ := runCtl(t, cfg.API, "port", "v"); code != 0 ||
		!regexp.MustCompile(`kind:\s+vhost-user queues=2 socket=/\S+/api/v.sock`).MatchString(out) ||
		!regexp.MustCompile(`negotiated:\s+\d+ queue pairs, .*VERSION_1`).MatchString(out) {
		t.Errorf("ctl port v: %d\n%s\nwant its kind, options and negotiated features", code, out)
	}
	fe.Close()
	if code, _, _ := runCtl(t, cfg.API, "del", "v"); code != 0 {
		t.Errorf("ctl del v: status %d", code)
	}
	if code, out, _ := runCtl(t, cfg.API, "ports"); code != 0 || strings.Contains(out, "g ") {
		t.Errorf("ports after the refused add: %d %q", code, out)
	}
}
