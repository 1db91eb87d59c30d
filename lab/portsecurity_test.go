package lab

import (
	"strings"
	"testing"

	vswitch "hvnet/switch"
)

// A guest's port has port security unless its spec says port-security=off.
func TestGuestPortSecurity(t *testing.T) {
	g, err := ParseGuest("name=a,ip=10.0.0.1/24")
	if err != nil {
		t.Fatal(err)
	}
	if pc := g.PortConfig(); pc.PortSecurity != vswitch.PortSecurityOn {
		t.Errorf("default port security = %v; want on", pc.PortSecurity)
	}
	if g, err = ParseGuest("name=a,port-security=off"); err != nil || g.PortConfig().PortSecurity != vswitch.PortSecurityOff {
		t.Errorf("port-security=off: %+v, %v", g, err)
	}
	if _, err := ParseGuest("name=a,port-security=maybe"); err == nil || !strings.Contains(err.Error(), "want on or off") {
		t.Errorf("port-security=maybe: %v", err)
	}
}
