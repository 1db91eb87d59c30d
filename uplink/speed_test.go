package uplink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LinkSpeed reads the kernel's speed of an interface; one without (down,
// virtual) is an error naming it.
func TestLinkSpeed(t *testing.T) {
	dir := t.TempDir()
	for ifc, speed := range map[string]string{"eth1": "10000\n", "eth2": "-1\n"} {
		if err := os.MkdirAll(filepath.Join(dir, ifc), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ifc, "speed"), []byte(speed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := sysClassNet
	sysClassNet = dir
	defer func() { sysClassNet = old }()
	if bps, err := LinkSpeed("eth1"); err != nil || bps != 10_000_000_000 {
		t.Errorf("LinkSpeed(eth1) = %d, %v; want 10 Gbit/s", bps, err)
	}
	for ifc, want := range map[string]string{
		"eth2": `the speed of eth2 is not known (` + dir + `/eth2/speed says "-1"): give rate=BITS/s`,
		"eth3": `the speed of eth3 is not known (`,
	} {
		if _, err := LinkSpeed(ifc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LinkSpeed(%s) = %v; want %q", ifc, err, want)
		}
	}
}
