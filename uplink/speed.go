package uplink

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hvnet/hvnet/units"
)

// sysClassNet is where the kernel shows its interfaces (a test's
// directory in tests).
var sysClassNet = "/sys/class/net"

// LinkSpeed is the speed of interface ifname in bits per second, as the
// kernel reports it (/sys/class/net/IF/speed, Mbit/s, what ethtool shows),
// or why it is not known: an interface that is down, lo and some virtual
// links have none.
func LinkSpeed(ifname string) (int64, error) {
	path := filepath.Join(sysClassNet, ifname, "speed")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("the speed of %s is not known (%v; an interface that is down, or virtual, has none): give rate=BITS/s", ifname, err)
	}
	got := strings.TrimSpace(string(b))
	mbit, err := strconv.ParseInt(got, 10, 64)
	if err != nil || mbit <= 0 || mbit > units.MaxBitRate/1_000_000 {
		return 0, fmt.Errorf("the speed of %s is not known (%s says %q): give rate=BITS/s", ifname, path, got)
	}
	return mbit * 1_000_000, nil
}
