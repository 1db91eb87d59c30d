package bondkind

import (
	"errors"
	"testing"

	"github.com/hvnet/hvnet/daemon"
)

// rate=link on a bond: the slowest member in active-backup (what is left
// after a failover), the sum in balance-slb and lacp; a member without a
// speed is an error.
func TestLinkSpeed(t *testing.T) {
	speeds := map[string]int64{"eth1": 10e9, "eth2": 1e9}
	speed := func(ifc string) (int64, error) {
		if s, ok := speeds[ifc]; ok {
			return s, nil
		}
		return 0, errors.New("the speed of " + ifc + " is not known")
	}
	for _, tc := range []struct {
		mode string
		want int64
	}{{"", 1e9}, {"active-backup", 1e9}, {"balance-slb", 11e9}, {"lacp", 11e9}} {
		v := daemon.Values{"if": {"eth1", "eth2"}}
		if tc.mode != "" {
			v["mode"] = []string{tc.mode}
		}
		if got, err := linkSpeed(v, speed); err != nil || got != tc.want {
			t.Errorf("mode %q: %d, %v; want %d", tc.mode, got, err, tc.want)
		}
	}
	if _, err := linkSpeed(daemon.Values{"if": {"eth1", "eth9"}}, speed); err == nil {
		t.Error("a member without a speed: no error")
	}
}
