// Package topology reads hvnet's declarative topology file: the switch's
// settings (FDB aging, bounds and MAC-move hold-down), its ports (VLAN
// mode, PVID, allowed and native VLANs, rates, MAC limit, allowed MACs,
// port security, ACLs and stateful security groups), vhost-user ports,
// the uplink and the lab guests, and the security groups' connection
// tracking (limits and timeouts), in YAML. "hvnet up FILE" brings such a
// file up.
//
//	t, err := topology.Load("lab.yaml")
//
// Parsing is strict: an unknown key, a value of the wrong type and every
// inconsistency (duplicate names, sockets, MACs or addresses, VLANs outside
// 1..4094, a trunk without allowed VLANs, negative or absurd rates) is
// reported as "FILE:LINE: FIELD: reason", all of them at once (errors.Join
// of *Error). testdata/lab.yaml is a complete example.
package topology
