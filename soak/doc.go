// Package soak holds hvnet's soak test: traffic through
// vhost-user ports (driven by the in-process frontend, vhostuser/frontend), an
// AF_PACKET uplink on a veth pair whose peer is in a further network
// namespace, a real "hvnet switch" process and DPDK's testpmd, for a
// configurable time, while faults hit at seeded random intervals:
// server-mode frontends are killed and restarted, a client-mode port's
// backend is closed and re-created in-process, the hvnet process is
// restarted under traffic (alternately SIGTERM, which must exit 0 within a
// bound, and SIGKILL; its client-mode ports reconnect to the listening
// frontends), testpmd (forwarding between two ports in io mode) is killed
// with SIGKILL and started again, and the uplink is flapped. As root the
// test binary re-executes itself in a private network namespace first.
// At the end every frame sent is accounted for as delivered or as a
// counted drop with a reason (switch, daemon, testpmd, kernel link or
// socket counters), or as lost in a dead session's ring, a dead daemon or
// a dead testpmd within a per-fault bound; and RSS, open fds and
// goroutines of the test, and the daemon's open fds, are back near their
// starting values.
//
//	HVNET_SOAK_DURATION=10m HVNET_SOAK_SEED=42 go test -run '^TestSoak$' -v ./soak
//
// "./run.sh soak [DURATION]" runs it (10m by default); "./run.sh test"
// runs it for 1m. Without HVNET_SOAK_DURATION it runs for 5 s.
package soak
