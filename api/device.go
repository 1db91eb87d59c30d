package api

// Device counters: what a port's backend counts itself, beside the
// switch's counters. For a vhost-user port or a lab guest that is what its
// tenant did wrong (chains, headers and frames the virtio-net dataplane
// refused, queues it faulted, requests, memory and notification
// descriptors the vhost-user backend refused or found stuck); for an
// uplink, what the host interface lost. The switch never sees these
// frames, so its counters cannot show them.

// DeviceReporter is implemented by a PortFactory whose backends keep
// counters of their own: port answers then carry them as "device", and
// /metrics exports them (hvnet_port_device_drops_total,
// hvnet_port_device_faults_total). DeviceCounters is called on every GET
// of a port and every scrape: it must be cheap and must not wait on a
// tenant.
type DeviceReporter interface {
	// DeviceCounters returns the named port's device counters, nil when
	// its backend keeps none (or the port is not the factory's).
	DeviceCounters(name string) *DeviceCounters
}

// DeviceCounters are a port backend's own counters, totals over the
// port's life (a vhost-user port's: every session's, the current one's
// so far). Which groups of fields are present depends on Kind: Virtio for
// vhost-user and lab ports, Vhost for vhost-user ports, Uplink for
// uplinks; within a group every field is present. Counts of frames or
// events; no field has another unit.
type DeviceCounters struct {
	Kind string `json:"kind"` // vhost-user, lab or uplink
	*VirtioCounters
	*VMMCounters
	*VhostCounters
	*UplinkCounters
	*VXLANCounters
	*BondCounters
}

// VXLANCounters are a VXLAN tunnel port's (vxlan.Stats): packets to and
// from remote VTEPs, and what it dropped of each, by reason.
type VXLANCounters struct {
	RxPackets         uint64 `json:"vxlan_rx_packets"`           // VXLAN packets received and handed to the switch
	TxPackets         uint64 `json:"vxlan_tx_packets"`           // VXLAN packets sent, each flooded copy one
	FloodCopies       uint64 `json:"vxlan_flood_copies"`         // packets sent as copies of flooded frames
	RemoteMACs        int    `json:"vxlan_remote_macs"`          // now: MACs known behind remote VTEPs
	RxDropShort       uint64 `json:"vxlan_rx_drop_short"`        // shorter than a VXLAN and an Ethernet header
	RxDropFlags       uint64 `json:"vxlan_rx_drop_flags"`        // flags other than I, or reserved fields set
	RxDropUnknownVNI  uint64 `json:"vxlan_rx_drop_unknown_vni"`  // a VNI not mapped to a VLAN
	RxDropUnknownVTEP uint64 `json:"vxlan_rx_drop_unknown_vtep"` // from an address that is not a known VTEP
	RxDropInnerTag    uint64 `json:"vxlan_rx_drop_inner_tag"`    // inner frames with a VLAN tag of their own
	RxDropOversize    uint64 `json:"vxlan_rx_drop_oversize"`     // longer than the underlay MTU
	RxErrors          uint64 `json:"vxlan_rx_errors"`            // receive system call failures
	TxDropNoVNI       uint64 `json:"vxlan_tx_drop_no_vni"`       // frames of a VLAN no VNI carries
	TxDropOversize    uint64 `json:"vxlan_tx_drop_oversize"`     // outer packet over the underlay MTU
	TxDropNoRemote    uint64 `json:"vxlan_tx_drop_no_remote"`    // no VTEP to send to (empty flood list)
	TxDropInnerTag    uint64 `json:"vxlan_tx_drop_inner_tag"`    // frames that would carry a VLAN tag inside the VNI (a dot1q-tunnel customer's C-tag)
	TxErrors          uint64 `json:"vxlan_tx_errors"`            // packets the kernel refused
	RemoteMACsFull    uint64 `json:"vxlan_remote_macs_full"`     // MACs not learned: the table was full
	FloodVTEPsFull    uint64 `json:"vxlan_flood_vteps_full"`     // VTEPs of type-3 routes not added: the VNI's flood list had max-flood-vteps
	ARPSuppressed     uint64 `json:"vxlan_arp_suppressed"`       // ARP requests answered by the port, not flooded
	NDSuppressed      uint64 `json:"vxlan_nd_suppressed"`        // neighbor solicitations answered by the port, not flooded
	SuppressReplies   uint64 `json:"vxlan_suppress_replies"`     // answers handed to the switch
	SuppressFull      uint64 `json:"vxlan_suppress_full"`        // requests flooded: the queue of answers was full
	SnoopIgnored      uint64 `json:"vxlan_snoop_ignored"`        // ARP/ND packets nothing was learned from: malformed or claiming a remote MAC
	LocalIPs          int    `json:"vxlan_local_ips"`            // now: local MAC/IP bindings learned
	LocalIPsFull      uint64 `json:"vxlan_local_ips_full"`       // bindings not learned: the MAC had its share of IPs or the table was full
	RemoteIPs         int    `json:"vxlan_remote_ips"`           // now: remote MAC/IP bindings (from MAC/IP routes)
	RemoteIPsFull     uint64 `json:"vxlan_remote_ips_full"`      // remote bindings not set: the table was full
	WrongFamily       uint64 `json:"vxlan_wrong_family"`         // remote VTEPs of the other address family (a control plane's): refused
	TxGSOPackets      uint64 `json:"vxlan_tx_gso_packets"`       // UDP GSO super-packets sent (their packets counted in vxlan_tx_packets)
	TxGSOFallbacks    uint64 `json:"vxlan_tx_gso_fallbacks"`     // super-packets and single packets the underlay device refused: sent through the raw socket
	TxDirect          uint64 `json:"vxlan_tx_direct"`            // packets written to the underlay device (AF_PACKET), in super-packets or alone
	RxGROPackets      uint64 `json:"vxlan_rx_gro_packets"`       // datagrams the kernel coalesced (UDP GRO), cut into their packets
}

// VMMCounters are a lab guest NIC's virtio-pci transport's, in hvnet's
// VMM (vmm.VirtioPCIStats): notifications it found lost and recovered in
// either direction, resets the device asked for, guest accesses it
// ignored.
type VMMCounters struct {
	LostKicks      uint64 `json:"lost_kicks"`       // chains found waiting without a kick (recovered by polling)
	LostIRQs       uint64 `json:"lost_irqs"`        // used-buffer interrupts sent again: the driver still waited
	NeedsReset     uint64 `json:"needs_reset"`      // times the device entered DEVICE_NEEDS_RESET
	BadBARAccesses uint64 `json:"bad_bar_accesses"` // guest BAR accesses ignored: bad offset, width or value
	// FeaturesRefused: FEATURES_OK writes refused for the features the
	// driver chose
	FeaturesRefused uint64 `json:"features_refused"`
}

// VirtioCounters are the virtio-net dataplane's (vnet.Stats): frames
// the device dropped before the switch (tx: from the guest) or after it
// (rx: to the guest), and faults of the guest's queues.
type VirtioCounters struct {
	TxDropBadChain    uint64 `json:"tx_drop_bad_chain"`    // TX chain unusable: bad address, writable buffer, too long
	TxDropBadHeader   uint64 `json:"tx_drop_bad_header"`   // virtio_net_hdr refused: flags, offloads not negotiated, offsets outside the frame
	TxDropRunt        uint64 `json:"tx_drop_runt"`         // frame shorter than an Ethernet header
	TxDropOversize    uint64 `json:"tx_drop_oversize"`     // frame longer than the device's maximum
	RxDropNoBuffer    uint64 `json:"rx_drop_no_buffer"`    // no guest receive buffer available
	RxDropBadChain    uint64 `json:"rx_drop_bad_chain"`    // RX chain unusable: read-only, too small, bad address
	RxDropOversize    uint64 `json:"rx_drop_oversize"`     // frame too long for the device or the guest's buffer
	RxDropOffload     uint64 `json:"rx_drop_offload"`      // offload (GSO, partial checksum) the guest did not negotiate
	RxDropSourceFault uint64 `json:"rx_drop_source_fault"` // payload unreadable: the sending tenant's memory vanished under the copy
	CtrlErrors        uint64 `json:"ctrl_errors"`          // control-queue commands answered ERR
	Faults            uint64 `json:"faults"`               // queues found malformed (device needs reset)
	MemoryFaults      uint64 `json:"memory_faults"`        // queues ended by a fault on guest memory (shrunk, unmapped)
	SignalErrors      uint64 `json:"signal_errors"`        // used-buffer notifications that failed
}

// VhostCounters are a vhost-user port's sessions and what its backend
// refused or found wrong with the frontend's requests, memory and
// notification descriptors (backend.Counters).
type VhostCounters struct {
	Sessions           uint64 `json:"sessions"`            // frontends served, the current one included
	Connected          bool   `json:"connected"`           // a frontend is attached now
	RefusedFDs         uint64 `json:"refused_fds"`         // SET_VRING_CALL/ERR/KICK descriptors refused: not eventfds
	RefusedMemFDs      uint64 `json:"refused_mem_fds"`     // memory and log descriptors refused: not a file on tmpfs (memfd, /dev/shm) or hugetlbfs
	RefusedMappings    uint64 `json:"refused_mappings"`    // memory regions and dirty logs refused for their size (per-session or per-process bound)
	RejectedRequests   uint64 `json:"rejected_requests"`   // vhost-user requests refused (NACKed or ending the session), the refusals above included
	NotifyStalls       uint64 `json:"notify_stalls"`       // call or error eventfd writes that blocked
	NotifyErrors       uint64 `json:"notify_errors"`       // call or error eventfd writes that failed
	NotifiersAbandoned uint64 `json:"notifiers_abandoned"` // notifiers still blocked in a write after their session ended
	WorkersAbandoned   uint64 `json:"workers_abandoned"`   // ring workers that did not stop in time
	KickHangups        uint64 `json:"kick_hangups"`        // sessions ended by a kick descriptor that hung up or failed
	SessionsRefused    uint64 `json:"sessions_refused"`    // frontends refused while Stuck was at the port's limit
	Stuck              int64  `json:"stuck"`               // now: abandoned notifiers and workers still blocked (a gauge)
	// The current session's negotiated virtio features (by their spec
	// names) and active queue pairs; absent without a session.
	Features    []string `json:"features,omitempty"`
	ActivePairs int      `json:"active_pairs,omitempty"`
}

// UplinkCounters are an AF_PACKET uplink's own losses (uplink.Stats).
type UplinkCounters struct {
	RxDropBad      uint64 `json:"rx_drop_bad"`      // truncated or malformed ring entries
	RxDropKernel   uint64 `json:"rx_drop_kernel"`   // dropped by the kernel: ring full
	RxSocketErrors uint64 `json:"rx_socket_errors"` // socket errors: link down, interface gone
	TxErrors       uint64 `json:"tx_errors"`        // frames not sent: link down, ring full, refused
	Attaches       uint64 `json:"attaches"`         // times the sockets were opened (1 + re-attachments)
}

// DeviceCount is one counter of a DeviceCounters: exactly one of Drop
// and Fault is set.
type DeviceCount struct {
	Field string // the JSON field, tx_drop_bad_header
	Drop  string // the reason of a frame drop (hvnet_port_device_drops_total's reason)
	Fault string // the kind of another event (hvnet_port_device_faults_total's kind)
	Value uint64
}

// Counts lists d's counters, in the order of its JSON fields (Sessions,
// Connected, Stuck and Attaches, which are neither drops nor faults, aside).
func (d *DeviceCounters) Counts() []DeviceCount {
	var out []DeviceCount
	drop := func(field, reason string, v uint64) {
		out = append(out, DeviceCount{Field: field, Drop: reason, Value: v})
	}
	fault := func(field, kind string, v uint64) {
		out = append(out, DeviceCount{Field: field, Fault: kind, Value: v})
	}
	if v := d.VirtioCounters; v != nil {
		drop("tx_drop_bad_chain", "tx_bad_chain", v.TxDropBadChain)
		drop("tx_drop_bad_header", "tx_bad_header", v.TxDropBadHeader)
		drop("tx_drop_runt", "tx_runt", v.TxDropRunt)
		drop("tx_drop_oversize", "tx_oversize", v.TxDropOversize)
		drop("rx_drop_no_buffer", "rx_no_buffer", v.RxDropNoBuffer)
		drop("rx_drop_bad_chain", "rx_bad_chain", v.RxDropBadChain)
		drop("rx_drop_oversize", "rx_oversize", v.RxDropOversize)
		drop("rx_drop_offload", "rx_offload", v.RxDropOffload)
		drop("rx_drop_source_fault", "rx_source_fault", v.RxDropSourceFault)
		fault("ctrl_errors", "ctrl_error", v.CtrlErrors)
		fault("faults", "queue", v.Faults)
		fault("memory_faults", "memory", v.MemoryFaults)
		fault("signal_errors", "signal_error", v.SignalErrors)
	}
	if v := d.VMMCounters; v != nil {
		fault("lost_kicks", "lost_kick", v.LostKicks)
		fault("lost_irqs", "lost_irq", v.LostIRQs)
		fault("needs_reset", "needs_reset", v.NeedsReset)
		fault("bad_bar_accesses", "bad_bar_access", v.BadBARAccesses)
		fault("features_refused", "features_refused", v.FeaturesRefused)
	}
	if v := d.VhostCounters; v != nil {
		fault("refused_fds", "refused_fd", v.RefusedFDs)
		fault("refused_mem_fds", "refused_mem_fd", v.RefusedMemFDs)
		fault("refused_mappings", "refused_mapping", v.RefusedMappings)
		fault("rejected_requests", "rejected_request", v.RejectedRequests)
		fault("notify_stalls", "notify_stall", v.NotifyStalls)
		fault("notify_errors", "notify_error", v.NotifyErrors)
		fault("notifiers_abandoned", "notifier_abandoned", v.NotifiersAbandoned)
		fault("workers_abandoned", "worker_abandoned", v.WorkersAbandoned)
		fault("kick_hangups", "kick_hangup", v.KickHangups)
		fault("sessions_refused", "session_refused", v.SessionsRefused)
	}
	if v := d.VXLANCounters; v != nil {
		drop("vxlan_rx_drop_short", "vxlan_rx_short", v.RxDropShort)
		drop("vxlan_rx_drop_flags", "vxlan_rx_flags", v.RxDropFlags)
		drop("vxlan_rx_drop_unknown_vni", "vxlan_rx_unknown_vni", v.RxDropUnknownVNI)
		drop("vxlan_rx_drop_unknown_vtep", "vxlan_rx_unknown_vtep", v.RxDropUnknownVTEP)
		drop("vxlan_rx_drop_inner_tag", "vxlan_rx_inner_tag", v.RxDropInnerTag)
		drop("vxlan_rx_drop_oversize", "vxlan_rx_oversize", v.RxDropOversize)
		drop("vxlan_tx_drop_no_vni", "vxlan_tx_no_vni", v.TxDropNoVNI)
		drop("vxlan_tx_drop_oversize", "vxlan_tx_oversize", v.TxDropOversize)
		drop("vxlan_tx_drop_no_remote", "vxlan_tx_no_remote", v.TxDropNoRemote)
		drop("vxlan_tx_drop_inner_tag", "vxlan_tx_inner_tag", v.TxDropInnerTag)
		drop("vxlan_tx_errors", "vxlan_tx_error", v.TxErrors)
		fault("vxlan_rx_errors", "vxlan_rx_error", v.RxErrors)
		fault("vxlan_remote_macs_full", "vxlan_remote_macs_full", v.RemoteMACsFull)
		fault("vxlan_flood_vteps_full", "vxlan_flood_vteps_full", v.FloodVTEPsFull)
		fault("vxlan_suppress_full", "vxlan_suppress_full", v.SuppressFull)
		fault("vxlan_snoop_ignored", "vxlan_snoop_ignored", v.SnoopIgnored)
		fault("vxlan_local_ips_full", "vxlan_local_ips_full", v.LocalIPsFull)
		fault("vxlan_remote_ips_full", "vxlan_remote_ips_full", v.RemoteIPsFull)
		fault("vxlan_wrong_family", "vxlan_wrong_family", v.WrongFamily)
	}
	if v := d.BondCounters; v != nil {
		drop("bond_rx_drop_inactive", "bond_rx_inactive", v.RxInactive)
		drop("bond_rx_drop_reflected", "bond_rx_reflected", v.RxReflected)
		drop("bond_tx_drop_no_member", "bond_tx_no_member", v.TxNoMember)
		fault("bond_lacp_bad", "bond_lacp_bad", v.LACPBad)
		fault("bond_lacp_queue_full", "bond_lacp_queue_full", v.LACPQueueFull)
	}
	if v := d.UplinkCounters; v != nil {
		drop("rx_drop_bad", "rx_bad", v.RxDropBad)
		drop("rx_drop_kernel", "rx_kernel", v.RxDropKernel)
		drop("tx_errors", "tx_error", v.TxErrors)
		fault("rx_socket_errors", "rx_socket_error", v.RxSocketErrors)
	}
	return out
}

// deviceCounters returns the named port's device counters, if the
// factory keeps any.
// SpecReporter factories say what each of their ports was made as
// (GET /v1/ports shows it as kind and options).
type SpecReporter interface {
	PortSpec(name string) (kind string, options map[string][]string)
}

// portSpec fills in a port's kind and options from the factory.
func (s *Server) portSpec(p *Port) {
	sr, ok := s.ports.(SpecReporter)
	if !ok {
		return
	}
	kind, opts := sr.PortSpec(p.Name)
	p.Kind = kind
	if len(opts) > 0 {
		p.Options = make(map[string]OptionValue, len(opts))
		for k, v := range opts {
			p.Options[k] = OptionValue(v)
		}
	}
}

func (s *Server) deviceCounters(name string) *DeviceCounters {
	if dr, ok := s.ports.(DeviceReporter); ok {
		return dr.DeviceCounters(name)
	}
	return nil
}
