package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"hvnet/api"
	vswitch "hvnet/switch"
	"hvnet/vmm"
)

// inProcDaemon runs the daemon (startDaemon) in this process with its
// API on a temporary socket and one existing port, "v" (a vhost-user
// server socket).
func inProcDaemon(t *testing.T, cfg daemonConfig) (*vswitch.Switch, *api.Client) {
	t.Helper()
	dir := t.TempDir()
	cfg.API, cfg.RunDir = filepath.Join(dir, "api.sock"), dir
	sw := vswitch.New(vswitch.Config{})
	r, err := startDaemon(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.shutdown(); err != nil {
			t.Error(err)
		}
	})
	c := api.NewClient(cfg.API)
	if _, err := c.AddPort(context.Background(), api.PortSpec{Kind: api.KindVhostUser, Socket: filepath.Join(dir, "v.sock"),
		Config: api.PortConfig{Name: "v", Mode: "access", PVID: 1}}); err != nil {
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
		old := probeKVM
		probeKVM = func() error {
			return fmt.Errorf("%w: /dev/kvm is backed by kvm_pvm (test stand-in)", vmm.ErrUnusableKVM)
		}
		t.Cleanup(func() { probeKVM = old })
	}
	sw, c := inProcDaemon(t, daemonConfig{Kernel: "/nonexistent/k", Initrd: "/nonexistent/i"})
	ctx := context.Background()
	good := api.PortSpec{Kind: api.KindLab, Config: api.PortConfig{Name: "g", Mode: "access", PVID: 10},
		Guest: &api.GuestSpec{IP: "10.0.0.1/24", Mem: "128M", Script: "exit 0"}}
	_, err := c.AddPort(ctx, good)
	wantAPIError(t, "lab port on PVM", err, http.StatusUnprocessableEntity, "", "kvm_pvm")
	if err != nil && !strings.Contains(err.Error(), "nested test host") {
		t.Errorf("the 422 does not say where guests can boot: %v", err)
	}

	bad := func(mut func(*api.PortSpec)) api.PortSpec {
		s := good
		g := *good.Guest
		s.Guest = &g
		mut(&s)
		return s
	}
	for _, tc := range []struct {
		name   string
		spec   api.PortSpec
		status int
		field  string
	}{
		{"no guest", bad(func(s *api.PortSpec) { s.Guest = nil }), 400, "guest"},
		{"no ip", bad(func(s *api.PortSpec) { s.Guest.IP = "" }), 400, "guest.ip"},
		{"bad ip", bad(func(s *api.PortSpec) { s.Guest.IP = "10.0.0.300/24" }), 400, "guest.ip"},
		{"no name", bad(func(s *api.PortSpec) { s.Config.Name = "" }), 400, "config.name"},
		{"bad mem", bad(func(s *api.PortSpec) { s.Guest.Mem = "lots" }), 400, "guest.mem"},
		{"huge mem", bad(func(s *api.PortSpec) { s.Guest.Mem = "1000G" }), 400, "guest.mem"},
		{"bad cpus", bad(func(s *api.PortSpec) { s.Guest.CPUs = 99 }), 400, "guest.cpus"},
		{"bad mtu", bad(func(s *api.PortSpec) { s.Guest.MTU = 20 }), 400, "guest.mtu"},
		{"bad vif", bad(func(s *api.PortSpec) { s.Guest.VIFs = []string{"eth0:10.0.1.1/24"} }), 400, "guest.vifs[0]"},
		{"bad vlan", bad(func(s *api.PortSpec) { s.Config.PVID = 5000 }), 400, "config.pvid"},
		{"guest on vhost", bad(func(s *api.PortSpec) { s.Kind = api.KindVhostUser; s.Socket = "/tmp/x.sock" }), 400, "guest"},
		{"duplicate", bad(func(s *api.PortSpec) { s.Config.Name = "v" }), 409, "config.name"},
	} {
		_, err := c.AddPort(ctx, tc.spec)
		wantAPIError(t, tc.name, err, tc.status, tc.field, "")
	}
	// Unknown fields, at the top and in guest.
	for body, field := range map[string]string{
		`{"kind":"lab","config":{"name":"g","mode":"access","pvid":1},"guest":{"ip":"10.0.0.1/24","disk":"x"}}`:   "guest.disk",
		`{"kind":"lab","config":{"name":"g","mode":"access","pvid":1},"guest":{"ip":"10.0.0.1/24"},"kernel":"x"}`: "kernel",
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
	old := probeKVM
	probeKVM = func() error { return nil }
	t.Cleanup(func() { probeKVM = old })
	_, c := inProcDaemon(t, daemonConfig{})
	_, err := c.AddPort(context.Background(), api.PortSpec{Kind: api.KindLab,
		Config: api.PortConfig{Name: "g", Mode: "access", PVID: 1}, Guest: &api.GuestSpec{IP: "10.0.0.1/24"}})
	wantAPIError(t, "no images", err, http.StatusUnprocessableEntity, "", "no guest images")
}

// TestCtlAddLab: "hvnet ctl add lab" sends the lab port spec (the 422 of
// a daemon that cannot boot guests comes back as the command's error),
// and bad arguments are usage errors.
func TestCtlAddLab(t *testing.T) {
	spec, err := labAddSpec("g", []string{"ip=10.0.0.1/24", "trunk=10,20", "native=10", "mem=128M", "cpus=2",
		"vif=eth0.20:10.0.20.1/24", "rate=10M", "mac-limit=3", "queues=2", "mtu=1400", "mac=52:54:00:00:00:09", "cmd=ping -c 1 10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	g := spec.Guest
	if spec.Config.Mode != "trunk" || len(spec.Config.AllowedVLANs) != 2 || spec.Config.NativeVLAN != 10 || spec.Config.MACLimit != 3 ||
		spec.Config.Egress.Bytes.Rate != 10e6 || spec.Queues != 2 || spec.MAC != "52:54:00:00:00:09" ||
		g.IP != "10.0.0.1/24" || g.Mem != "128M" || g.CPUs != 2 || g.MTU != 1400 || len(g.VIFs) != 1 || g.Script != "ping -c 1 10.0.0.2" {
		t.Errorf("labAddSpec = %+v, guest %+v", spec, g)
	}
	for _, bad := range [][]string{{"vlan=10"}, {"ip=10.0.0.1/24", "disk=1G"}, {"ip=10.0.0.1/24", "cpus=two"}} {
		if _, err := labAddSpec("g", bad); !errors.Is(err, errUsage) {
			t.Errorf("labAddSpec(%q) = %v, want a usage error", bad, err)
		}
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
		old := probeKVM
		probeKVM = func() error { return fmt.Errorf("%w: kvm_pvm (test stand-in)", vmm.ErrUnusableKVM) }
		t.Cleanup(func() { probeKVM = old })
	}
	dir := t.TempDir()
	cfg := daemonConfig{API: filepath.Join(dir, "api.sock"), Kernel: "k", Initrd: "i"}
	r, err := startDaemon(context.Background(), hclog.NewNullLogger(), vswitch.New(vswitch.Config{}), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.shutdown()
	code, _, stderr := runCtl(t, cfg.API, "add", "lab", "g", "ip=10.0.0.1/24", "vlan=10")
	if code == 0 || !strings.Contains(stderr, "kvm_pvm") {
		t.Errorf("ctl add lab on PVM: status %d, stderr %q", code, stderr)
	}
	if code, out, _ := runCtl(t, cfg.API, "ports"); code != 0 || strings.Contains(out, "g ") {
		t.Errorf("ports after the refused add: %d %q", code, out)
	}
}
