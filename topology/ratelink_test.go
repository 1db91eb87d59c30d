package topology

import (
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// rate: link asks the uplink's kind for its interface's speed: the
// topology carries it as vswitch.LinkRate, which the daemon resolves.
func TestRateLink(t *testing.T) {
	tp, err := Parse("t.yaml", []byte("uplink:\n  if: eth1\n  rate: link\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := tp.Uplink.Config("uplink").Egress.Bytes.Rate; r != vswitch.LinkRate {
		t.Errorf("rate: link gives egress rate %d, want vswitch.LinkRate", r)
	}
	if _, err := Parse("t.yaml", []byte("uplink:\n  if: eth1\n  rate: fast\n")); err == nil || !strings.Contains(err.Error(), "rate") {
		t.Errorf("rate: fast: %v", err)
	}
}
