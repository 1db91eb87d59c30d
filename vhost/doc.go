// Package vhost runs vhost-user-net ports on hvnet's switch: each Port is a
// unix socket that a frontend (QEMU's virtio-net, DPDK's virtio-user,
// hvnet's own VMM through vhostuser/frontend) attaches to, and a port of the
// built-in switch (switch/) joined to the session's virtio-net device
// through netport.
//
//	sw := vswitch.New(vswitch.Config{})
//	p, _ := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: "a", PVID: 10},
//		Socket: "/run/hvnet/a.sock", Mode: vhost.Server})
//	go p.Run(ctx) // serves frontends one after the other until ctx ends
//
// In Server mode the port listens and accepts one frontend at a time,
// accepting again after it disconnects. In Client mode it connects to a
// frontend that listens (QEMU's chardev with server=on, DPDK virtio-user
// with server=1) and reconnects with backoff when the frontend restarts:
// that is the mode that survives a backend restart. A frontend that goes
// away, cleanly or killed, detaches the port: its device stops receiving,
// its rings stop, its descriptors and mappings are released and its FDB
// entries are flushed; the switch port itself stays, so counters and
// configuration survive reconnects. A frontend reconnecting in a loop
// gets the lines of its sessions 1, 2, 4, 8, ... logged (attached,
// detached, ended by an error), the others' at Debug.
//
// What a port's sessions map of their frontends' memory is bounded by
// PortConfig.MaxMapped (per session) and PortConfig.MapBudget (shared with
// other ports; the process's by default): see package backend.
//
// Subpackages: proto (the wire format), backend (one connection's
// protocol state and dataplane), frontend (the driver side, for tests and
// the VMM), dpdktest (dpdk-testpmd as a peer, for tests and benchmarks).
package vhost
