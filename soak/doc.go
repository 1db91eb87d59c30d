// Package soak holds hvnet's soak test (issue 8): traffic through two
// vhost-user ports (driven by the in-process frontend, vhost/frontend) and
// an AF_PACKET uplink on a veth pair in a private network namespace, for a
// configurable time, while frontends are killed and restarted and the
// uplink is flapped at seeded random intervals. At the end every frame
// sent is accounted for as delivered or as a counted drop with a reason,
// and RSS, open fds and goroutines are back near their starting values.
//
//	HVNET_SOAK_DURATION=10m HVNET_SOAK_SEED=42 go test -run TestSoak -v ./soak
//
// "./run.sh soak [DURATION]" runs it (10m by default); "./run.sh test"
// runs it for 1m. Without HVNET_SOAK_DURATION it runs for 5 s.
package soak
