// Package kinds registers every port kind hvnet ships with the daemon:
// import it for its side effect where a daemon runs.
package kinds

import (
	_ "github.com/hvnet/hvnet/daemon/bondkind"   // bonds of uplinks
	_ "github.com/hvnet/hvnet/daemon/labkind"    // lab guests
	_ "github.com/hvnet/hvnet/daemon/uplinkkind" // AF_PACKET uplinks
	_ "github.com/hvnet/hvnet/daemon/vhostkind"  // vhost-user sockets
	_ "github.com/hvnet/hvnet/daemon/vxlankind"  // VXLAN tunnels
)
