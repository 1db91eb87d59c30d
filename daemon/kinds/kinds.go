// Package kinds registers every port kind hvnet ships with the daemon:
// import it for its side effect where a daemon runs.
package kinds

import (
	_ "hvnet/daemon/bondkind"   // bonds of uplinks
	_ "hvnet/daemon/labkind"    // lab guests
	_ "hvnet/daemon/uplinkkind" // AF_PACKET uplinks
	_ "hvnet/daemon/vhostkind"  // vhost-user sockets
	_ "hvnet/daemon/vxlankind"  // VXLAN tunnels
)
