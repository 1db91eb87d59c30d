package vhost

import (
	"bytes"
	"path/filepath"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// A vhost-user port given a MAC accepts only that source MAC from its
// frontend (port security by default); with PortSecurityOff, any.
func TestPortSecurityMAC(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	own := [6]byte{2, 0, 0, 0, 0, 1} // frame()'s source 1
	dir := t.TempDir()
	pa := startPort(t, sw, PortConfig{Port: vswitch.PortConfig{Name: "a", PVID: 1}, Socket: filepath.Join(dir, "a.sock"), MAC: own})
	po := startPort(t, sw, PortConfig{Port: vswitch.PortConfig{Name: "o", PVID: 1, PortSecurity: vswitch.PortSecurityOff},
		Socket: filepath.Join(dir, "o.sock"), MAC: [6]byte{2, 0, 0, 0, 0, 3}})
	_, sockB := testPort(t, sw, "b", 1)
	if m, ok := pa.Handle().MAC(); !ok || m != own {
		t.Fatalf("a's switch port MAC = %v, %v; want %v", m, ok, vswitch.MAC(own))
	}
	a, o, b := dialGuest(t, filepath.Join(dir, "a.sock")), dialGuest(t, filepath.Join(dir, "o.sock")), dialGuest(t, sockB)
	a.mustNegotiate()
	o.mustNegotiate()
	b.mustNegotiate()
	b.postRx(8)
	a.send(ethFrame(0xff, 9, 1), ethFrame(0xff, 1, 2)) // a spoofed source, then a's own
	o.send(ethFrame(0xff, 9, 3))                       // o: port security off
	got := b.recv(2)
	want := map[string]bool{string(ethFrame(0xff, 1, 2)): true, string(ethFrame(0xff, 9, 3)): true}
	for _, g := range got {
		if !want[string(g)] {
			t.Errorf("b got % x", g)
		}
	}
	if bytes.Equal(got[0], got[1]) {
		t.Error("b got one frame twice")
	}
	waitUntil(t, "a to count its input", func() bool { return pa.Handle().Counters().RxPackets >= 2 })
	if d := pa.Handle().Counters().Drops[vswitch.DropSpoofed]; d != 1 {
		t.Errorf("a spoofed drops = %d; want 1", d)
	}
	if d := po.Handle().Counters().Drops[vswitch.DropSpoofed]; d != 0 {
		t.Errorf("o spoofed drops = %d; want 0", d)
	}
}
