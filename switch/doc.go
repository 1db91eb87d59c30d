// Package vswitch is hvnet's built-in L2 switch. It knows nothing of virtio
// or KVM: it moves Ethernet frames, with their virtio-net offload metadata,
// between Ports.
//
// # Model
//
// A Switch holds Ports. Each is added with AddPort(PortConfig, Port), which
// returns a *PortHandle. The port's owner (a virtio-net device, a vhost-user
// backend, an uplink) calls PortHandle.Input from its own goroutine with a
// batch of frames received from its side. Forwarding runs synchronously in
// that goroutine: classification into a VLAN (IEEE 802.1Q §6.9, §8.6.1),
// ingress filtering, port security, ingress policing, learning in the
// filtering database (§8.8), lookup, storm control and flooding, egress
// tagging, software GSO / checksum completion for destinations that lack the
// offload, and finally Port.Send on each destination, once per batch.
//
// Many ports call Input concurrently. Hot-path state is read through atomic
// snapshots (port configuration, topology) and a sharded open-addressing
// filtering database whose lookups take no lock (seqlock, copy-on-grow);
// refreshing an entry that did not move is a single atomic store.
//
// # Bounds and port security
//
// Nothing a port sends can grow the FDB without bound or take another
// port's MACs (fdb.go): learned entries are capped switch-wide
// (Config.FDBMaxEntries, 64 Ki) and per port (PortConfig.MACLimit, 1024 by
// default), and frames from new MACs past either are dropped and counted
// (DropFDBFull, DropMACLimit) without evicting anything. A learned MAC
// moves to another port only after Config.MACMoveHoldDown (1 s) of
// silence on its own (DropMACMove before). A port whose Port has a MAC of
// its own (AddressedPort) accepts only that source MAC, plus AllowedMACs,
// unless PortConfig.PortSecurity is off, and its entry for that MAC never
// moves while it lives.
//
// # Ownership
//
// A Frame's Data belongs to whoever made the call it is passed in. Input does
// not keep the caller's frames after it returns; Port.Send and MirrorSink.Mirror
// must copy whatever they keep, because the switch reuses its per-port scratch
// buffers as soon as they return.
//
// # Shaping
//
// A port with an egress RateLimit queues frames in bounded per-class queues
// (three classes by 802.1p PCP, strict priority) and sends them as tokens
// allow. Tokens are counted in integer nanotokens with the injected Clock.
// Queued frames drain when more frames arrive for the port and whenever the
// owner calls Switch.Poll(now) (or PortHandle.Poll); Poll returns the next
// time it needs to be called. Switch.Run(ctx, tick) does that (and FDB aging)
// on a real ticker for programs that want a goroutine.
//
// # ACLs and trace
//
// SetACL gives a port an ingress ACL (acl.go): ordered allow/deny rules on
// EtherType, MACs, IPv4/IPv6 prefixes, IP protocol and TCP/UDP port ranges,
// first match wins, else the default action. L3/L4 are parsed once per
// frame (flow.go), after every VLAN tag, only when the port has an ACL.
// Denied frames are dropped before policing and learning and counted as
// DropACL; each rule has a hit counter. The compiled list is swapped
// atomically; each batch uses the list it loaded at its start. Verdicts are
// cached per port (aclcache.go: a 4-way exact-match flow cache keyed by the
// fields the rules read, invalidated by a generation bump when the list
// changes), so a flow seen before costs the same with 10 or 100 rules.
// SetEgressACL gives a port a second list checked for frames about to
// leave by it (aclegress.go), per destination after the forwarding
// decision, with its own verdict cache in the ingress port's scratch.
//
// Trace (trace.go) answers what the switch would do now with a described
// frame on a port, step by step, through the forwarding path's own decision
// functions, without learning, taking tokens or counting.
//
// # Flow cache
//
// EnableFlows turns on a flow cache (flowcache.go) for flow export
// (package ipfix): every frame forwarded is counted in a flow keyed by its
// ports, MACs, VLAN and IP 5-tuple, in its ingress port's shard, under
// the input lock Input holds anyway; bounded by FlowConfig.MaxFlows (new
// flows past it are counted as CacheFull, never dropped), optionally 1-in-N
// sampled. ExpireFlows hands the exporter the flows due at their active or
// idle timeout. Off, it costs each frame one predictable branch.
//
// # Mirroring
//
// Ports flagged MirrorIngress / MirrorEgress copy their traffic to the
// switch's MirrorSink (SetMirror); PcapWriter is a sink that writes classic
// libpcap files readable by tcpdump and tshark.
package vswitch
