// Package soak holds hvnet's soak test (issue 8): traffic through
// vhost-user ports (driven by the in-process frontend, vhost/frontend) and
// an AF_PACKET uplink on a veth pair whose peer is in a further network
// namespace, for a configurable time, while faults hit at seeded random
// intervals: server-mode frontends are killed and restarted, a client-mode
// port's backend is closed and re-created under traffic (daemon restart;
// the listening frontend reconnects), and the uplink is flapped. As root
// the test binary re-executes itself in a private network namespace first.
// At the end every frame sent is accounted for as delivered or as a
// counted drop with a reason (switch, kernel link or socket counters, or
// lost in a dead session's ring within a per-session bound), and RSS, open
// fds and goroutines are back near their starting values.
//
//	HVNET_SOAK_DURATION=10m HVNET_SOAK_SEED=42 go test -run TestSoak -v ./soak
//
// "./run.sh soak [DURATION]" runs it (10m by default); "./run.sh test"
// runs it for 1m. Without HVNET_SOAK_DURATION it runs for 5 s.
package soak
