package main

import (
	"strings"
	"testing"
)

// The fabric commands against a daemon without tunnels: empty tables,
// and bad arguments refused with status 2 (TestEVPNFabric checks them
// against a running fabric).
func TestCtlEVPN(t *testing.T) {
	_, sock := ctlDaemon(t)
	for _, args := range [][]string{{"evpn", "routes"}, {"evpn", "neighbors"}, {"vteps"}} {
		code, out, errs := runCtl(t, sock, args...)
		if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "PORT ") {
			t.Errorf("ctl %s = %d %q %q; want only the heading", strings.Join(args, " "), code, out, errs)
		}
	}
	if code, out, _ := runCtl(t, sock, "--json", "evpn", "routes"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("ctl --json evpn routes = %d %q", code, out)
	}
	if code, out, _ := runCtl(t, sock, "vteps", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("ctl vteps --json = %d %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"evpn"}, 2, "evpn routes|neighbors"},
		{[]string{"evpn", "bogus"}, 2, `unknown command "bogus"`},
		{[]string{"evpn", "routes", "--type", "4"}, 2, "--type is 2 or 3"},
		{[]string{"evpn", "routes", "--vni", "x"}, 2, "vni"},
		{[]string{"evpn", "routes", "--mac", "nope"}, 1, "mac"},
		{[]string{"evpn", "routes", "--port", "a"}, 1, "runs no BGP EVPN control plane"},
		{[]string{"evpn", "neighbors", "--port", "zz"}, 1, `no port "zz"`},
		{[]string{"vteps", "--port", "a"}, 1, "not a tunnel"},
	} {
		if code, _, errs := runCtl(t, sock, tc.args...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("ctl %s = %d %q; want %d and %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
		}
	}
}
