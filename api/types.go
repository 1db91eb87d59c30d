package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/hvnet/hvnet/units"
)

// RateLimit is a bit-rate bucket and a packet-rate bucket
// (vswitch.RateLimit): a frame passes when both have tokens. Every field
// carries its unit; 0 (absent) is unlimited, a burst of 0 is a hundredth
// of a second at the rate.
type RateLimit struct {
	RateBPS             BitRate `json:"rate_bps,omitempty"` // bits per second
	BurstBytes          int64   `json:"burst_bytes,omitempty"`
	OneTimeBurstBytes   int64   `json:"one_time_burst_bytes,omitempty"`
	RatePPS             int64   `json:"rate_pps,omitempty"` // packets per second
	BurstPackets        int64   `json:"burst_packets,omitempty"`
	OneTimeBurstPackets int64   `json:"one_time_burst_packets,omitempty"`
}

// BitRate is a rate in bits per second. JSON gives a number or a string
// the command line takes ("100M", "1.5Gbit": units.ParseBitRate); answers
// give a number.
type BitRate int64

// UnmarshalJSON takes a number or a rate string.
func (r *BitRate) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*r = BitRate(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return bitRateError(fmt.Sprintf("rate %s: want bits per second, a number or a string as \"100M\"", b))
	}
	v, err := units.ParseBitRate(s)
	if err != nil {
		return bitRateError(err.Error())
	}
	*r = BitRate(v)
	return nil
}

// bitRateError is a bad rate as encoding/json reports it with the field's
// path filled in (decode answers it as that field).
func bitRateError(msg string) error {
	return &json.UnmarshalTypeError{Value: msg, Type: reflect.TypeFor[BitRate]()}
}

// StormControl limits flooded traffic entering a port.
type StormControl struct {
	Broadcast      RateLimit `json:"broadcast"`
	Multicast      RateLimit `json:"multicast"`
	UnknownUnicast RateLimit `json:"unknown_unicast"`
}

// PortConfig is a port's configuration as the API shows it
// (vswitch.PortConfig). VLAN IDs are ints so that out-of-range values
// are reported by field rather than as JSON type errors.
type PortConfig struct {
	Name         string       `json:"name"`
	Mode         string       `json:"vlan_mode"`        // access, trunk or dot1q-tunnel
	PVID         int          `json:"vlan,omitempty"`   // an access port's VLAN, a dot1q-tunnel port's S-VLAN
	AllowedVLANs []int        `json:"trunk,omitempty"`  // the VLANs a trunk carries tagged
	NativeVLAN   int          `json:"native,omitempty"` // a trunk's untagged VLAN
	DefaultPCP   int          `json:"pcp,omitempty"`    // 802.1p priority of untagged frames
	MTU          int          `json:"mtu,omitempty"`
	Ingress      RateLimit    `json:"ingress"`
	Egress       RateLimit    `json:"egress"`
	Storm        StormControl `json:"storm"`
	// MACLimit: learned MACs at most; 0 (absent) takes the switch's
	// default (answers show the limit in force), -1 none.
	MACLimit    int      `json:"mac_limit,omitempty"`
	AllowedMACs []string `json:"allowed_macs,omitempty"`
	// PortSecurity: a port with a MAC of its own (Port.MAC) accepts only
	// that source MAC and AllowedMACs unless false. Absent means true;
	// answers always give it.
	PortSecurity  *bool `json:"port_security,omitempty"`
	MirrorIngress bool  `json:"mirror_ingress,omitempty"`
	MirrorEgress  bool  `json:"mirror_egress,omitempty"`
	// ReservationBPS, Shares and LimitBPS are the port's claim on every
	// shaped egress it sends through (vswitch.Allocation): bits per
	// second guaranteed while it has frames queued, its weight in the
	// capacity left over (1..10000; 0 or absent: 100, answers show the
	// shares in force) and the most it may send; 0: none.
	ReservationBPS BitRate `json:"reservation_bps,omitempty"`
	Shares         int     `json:"shares,omitempty"`
	LimitBPS       BitRate `json:"limit_bps,omitempty"`
	// PCPClass and DSCPClass sort the frames of this port's egress, when
	// it is shaped, into its classes (vswitch.ClassMap): the class 0..2
	// of each PCP 0..7 (absent: 0,0,0,0,1,1,2,2), and DSCP ranges as the
	// command line's dscp-class= writes them ("46:2", "8-15:0").
	PCPClass  []int    `json:"pcp_class,omitempty"`
	DSCPClass []string `json:"dscp_class,omitempty"`
}

// Queue is one queue of a shaped egress (vswitch.QueueStats): a strict
// class's (Port "") or a sending port's class-0 queue with that port's
// allocation.
type Queue struct {
	Port         string `json:"port"` // the sending port; "" for a class queue
	Class        int    `json:"class"`
	QueuedFrames int    `json:"queued_frames"`
	QueuedBytes  int    `json:"queued_bytes"`
	SentPackets  uint64 `json:"sent_packets"`
	SentBytes    uint64 `json:"sent_bytes"`
	Drops        uint64 `json:"drops"` // tail drops: the queue was full
	// RateBPS is what the queue achieved over the last whole second it
	// was busy, bits per second.
	RateBPS        BitRate `json:"rate_bps"`
	ReservationBPS BitRate `json:"reservation_bps"`
	Shares         int     `json:"shares"` // 0 for a class queue
	LimitBPS       BitRate `json:"limit_bps"`
}

// Counters are a port's counters (vswitch.PortCounters). Drops are keyed
// by reason (vswitch.DropReason's names: vlan, policer, shaper_queue,
// storm, mac_limit, spoofed, malformed, no_buffer, reserved, acl,
// fdb_full, mac_move, source_fault, security_group, ct_invalid,
// ct_full); every reason is present.
type Counters struct {
	RxPackets    uint64            `json:"rx_packets"`
	RxBytes      uint64            `json:"rx_bytes"`
	TxPackets    uint64            `json:"tx_packets"`
	TxBytes      uint64            `json:"tx_bytes"`
	Drops        map[string]uint64 `json:"drops"`
	LearnedMACs  int64             `json:"learned_macs"`
	ShaperQueued int               `json:"shaper_queued"`
}

// Port is one port: its configuration and counters.
type Port struct {
	Name string `json:"name"`
	// IfIndex is the port's number in exported flows (IPFIX
	// ingressInterface and egressInterface): ports are numbered in the
	// order they were added, from 1, never reused while the daemon runs.
	IfIndex uint32 `json:"if_index,omitempty"`
	// Kind and Options are the port's backend and its settings as it was
	// added (PortSpec's options, under the command line's keys), when
	// the daemon made it; absent for ports it did not.
	Kind    string                 `json:"kind,omitempty"`
	Options map[string]OptionValue `json:"options,omitempty"`
	// MAC is the port's own MAC (a lab guest's NIC, a vhost-user port's
	// mac), which port security enforces; absent: none.
	MAC      string     `json:"mac,omitempty"`
	Config   PortConfig `json:"config"`
	Counters Counters   `json:"counters"`
	ACL      *ACL       `json:"acl,omitempty"` // the ACL with hit counters, if any
	// SecurityGroup sums up the port's security group, if it has one.
	SecurityGroup *SecurityGroupSummary `json:"security_group,omitempty"`
	Guest         *GuestInfo            `json:"guest,omitempty"` // a lab guest port's guest
	// Device: the port backend's own counters (DeviceReporter), absent
	// when it keeps none.
	Device *DeviceCounters `json:"device,omitempty"`
	// Tunnel: a tunnel port's state (TunnelReporter).
	Tunnel *TunnelInfo `json:"tunnel,omitempty"`
	// Bond: a bond port's members (BondReporter).
	Bond *BondInfo `json:"bond,omitempty"`
}

// TunnelInfo is a tunnel port's state: its local VTEP, its VNIs with the
// VLANs they carry and the VTEPs they flood to, the MACs it knows behind
// remote VTEPs, and its BGP EVPN neighbours when a control plane runs.
type TunnelInfo struct {
	Local      string            `json:"local"`
	VNIs       []TunnelVNI       `json:"vnis"`
	RemoteMACs []TunnelRemoteMAC `json:"remote_macs"`
	Neighbors  []BGPNeighbor     `json:"bgp_neighbors,omitempty"`
}

// TunnelVNI is one VNI of a tunnel.
type TunnelVNI struct {
	VNI   uint32   `json:"vni"`
	VLAN  int      `json:"vlan"`
	VTEPs []string `json:"vteps"` // the flood list
}

// TunnelRemoteMAC is a MAC behind a remote VTEP.
type TunnelRemoteMAC struct {
	VNI     uint32 `json:"vni"`
	MAC     string `json:"mac"`
	VTEP    string `json:"vtep"`
	Learned bool   `json:"learned"` // from a received packet, else from the control plane
	// IPs are the MAC's addresses from MAC/IP routes (ARP/ND suppression
	// answers requests for them).
	IPs []string `json:"ips,omitempty"`
}

// BGPNeighbor is a BGP session of a tunnel's EVPN control plane.
type BGPNeighbor struct {
	Address        string `json:"address"`
	ASN            uint32 `json:"asn"`
	State          string `json:"state"`            // idle, connect, active, opensent, openconfirm, established
	Uptime         string `json:"uptime,omitempty"` // established for this long
	RoutesReceived int    `json:"routes_received"`
	RoutesAccepted int    `json:"routes_accepted"`
}

// Guest states (GuestInfo.State).
const (
	GuestBooting = "booting" // the VM runs, its agent has not started yet
	GuestRunning = "running" // the guest's agent started
	GuestExited  = "exited"  // the VM ended: Status, and Error if it failed
)

// GuestInfo is the state of the lab guest behind a port.
type GuestInfo struct {
	State  string `json:"state"`            // booting, running or exited
	Status *int   `json:"status,omitempty"` // the agent's exit status, once exited
	Error  string `json:"error,omitempty"`  // why the VM ended, if it failed
}

// PortPatch changes some of a port's settings (PATCH /v1/ports/{name}).
// Absent fields keep their value; a present rate limit replaces the whole
// limit. Mirroring flags are not here: they follow /v1/mirrors and captures.
type PortPatch struct {
	Mode         *string       `json:"vlan_mode,omitempty"`
	PVID         *int          `json:"vlan,omitempty"`
	AllowedVLANs *[]int        `json:"trunk,omitempty"`
	NativeVLAN   *int          `json:"native,omitempty"`
	DefaultPCP   *int          `json:"pcp,omitempty"`
	MTU          *int          `json:"mtu,omitempty"`
	Ingress      *RateLimit    `json:"ingress,omitempty"`
	Egress       *RateLimit    `json:"egress,omitempty"`
	Storm        *StormControl `json:"storm,omitempty"`
	MACLimit     *int          `json:"mac_limit,omitempty"`
	AllowedMACs  *[]string     `json:"allowed_macs,omitempty"`
	PortSecurity *bool         `json:"port_security,omitempty"`
	// The allocation and class map (PortConfig's), each replaced whole
	// when present: shares 0 is the default (100), an empty pcp_class the
	// default map, an empty dscp_class no DSCP mapping.
	ReservationBPS *BitRate  `json:"reservation_bps,omitempty"`
	Shares         *int      `json:"shares,omitempty"`
	LimitBPS       *BitRate  `json:"limit_bps,omitempty"`
	PCPClass       *[]int    `json:"pcp_class,omitempty"`
	DSCPClass      *[]string `json:"dscp_class,omitempty"`
	// Options replaces the port's kind settings (all of them, as POST
	// takes them), applied live where the kind can (a bond's members and
	// mode); absent: unchanged.
	Options map[string]OptionValue `json:"options,omitempty"`
}

// Port kinds a PortFactory makes.
const (
	KindVhostUser = "vhost-user"
	KindLab       = "lab"
	KindUplink    = "uplink"
)

// PortSpec asks the daemon for a new port (POST /v1/ports): a backend of
// Kind, attached to the switch with Config.
type PortSpec struct {
	Kind   string     `json:"kind"` // vhost-user, lab, uplink, vxlan or another registered kind
	Config PortConfig `json:"config"`
	// Options are the kind's own settings, under the keys the command
	// line and "hvnet ctl add" take ("hvnet switch --kinds" lists them),
	// "-" or "_" alike (socket-mode, socket_mode): vhost-user's socket,
	// mode, queues, mac; an uplink's if, tx; a lab guest's ip, mac,
	// guest-mtu, mem, cpus, vif, cmd. A value is a string, a number, a
	// boolean or, for options that repeat, a list of them. An option
	// named socket is a unix socket path confined to the run directory.
	Options map[string]OptionValue `json:"options,omitempty"`
}

// OptionValue is one option's values (PortSpec.Options): JSON gives a
// string, a number, a boolean or a list of them.
type OptionValue []string

// UnmarshalJSON takes a scalar or a list of scalars.
func (o *OptionValue) UnmarshalJSON(b []byte) error {
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		list = []json.RawMessage{b}
	}
	out := make(OptionValue, 0, len(list))
	for _, r := range list {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		var n json.Number
		if err := json.Unmarshal(r, &n); err == nil {
			out = append(out, n.String())
			continue
		}
		var t bool
		if err := json.Unmarshal(r, &t); err == nil {
			out = append(out, map[bool]string{true: "on", false: "off"}[t])
			continue
		}
		return fmt.Errorf("option value %s: want a string, a number, a boolean or a list of them", r)
	}
	*o = out
	return nil
}

// MarshalJSON writes one value as a scalar, several as a list.
func (o OptionValue) MarshalJSON() ([]byte, error) {
	if len(o) == 1 {
		return json.Marshal(o[0])
	}
	return json.Marshal([]string(o))
}

// FDBEntry is one filtering-database entry.
type FDBEntry struct {
	Port   string        `json:"port"`
	VLAN   int           `json:"vlan"`
	MAC    string        `json:"mac"`
	Age    time.Duration `json:"age_ns"`
	Static bool          `json:"static"`
	Pinned bool          `json:"pinned,omitempty"` // the port's own MAC under port security: it does not move
	// VTEP: for an entry on a tunnel port, the remote VTEP the tunnel
	// sends the MAC to (absent: none known, the tunnel floods it).
	VTEP string `json:"vtep,omitempty"`
}

// StaticEntry is a static FDB entry to install (POST /v1/fdb).
type StaticEntry struct {
	Port string `json:"port"`
	VLAN int    `json:"vlan"`
	MAC  string `json:"mac"`
}

// Flushed answers DELETE /v1/fdb.
type Flushed struct {
	Flushed int `json:"flushed"`
}

// Mirror directions.
const (
	DirIngress = "ingress"
	DirEgress  = "egress"
	DirBoth    = "both"
)

// MirrorSpec starts mirroring a port into a pcap file (POST /v1/mirrors).
type MirrorSpec struct {
	Port      string `json:"port"`
	Direction string `json:"direction,omitempty"` // ingress, egress or both (default)
	// File is a name under the daemon's capture directory (a relative
	// one is taken under it; answers give the absolute path). It is
	// created with mode 0600; symlinks are never followed, and an
	// existing file is refused unless Overwrite is set.
	File      string `json:"file"`
	Overwrite bool   `json:"overwrite,omitempty"` // truncate an existing regular file
}

// MirrorInfo describes a running file mirror (GET /v1/mirrors).
type MirrorInfo struct {
	MirrorSpec
	Frames  uint64 `json:"frames"`
	Dropped uint64 `json:"dropped"`
}

// Error is every error answer's body. Field names the request field at
// fault (JSON name, dotted path), when there is one.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Opts builds a PortSpec's Options from KEY, VALUE pairs, a repeated key
// giving several values: Opts("socket", "vm1.sock", "queues", "2").
func Opts(kv ...string) map[string]OptionValue {
	o := map[string]OptionValue{}
	for i := 0; i+1 < len(kv); i += 2 {
		o[kv[i]] = append(o[kv[i]], kv[i+1])
	}
	return o
}

// SwitchInfo is the switch-wide settings the daemon runs with and its
// build (GET /v1/switch), under the topology file's switch keys:
// durations as Go writes them ("5m0s"), defaults resolved.
type SwitchInfo struct {
	Aging           string `json:"aging,omitempty"`              // FDB aging time
	FDBMaxEntries   int    `json:"fdb_max_entries,omitempty"`    // learned MACs in the whole switch
	MACLimit        int    `json:"mac_limit,omitempty"`          // learned MACs per port without its own; -1: none
	MACMoveHoldDown string `json:"mac_move_hold_down,omitempty"` // negative: none
	MetricsAddr     string `json:"metrics_addr,omitempty"`       // the /metrics listener, if any
	DashboardAddr   string `json:"dashboard_addr,omitempty"`     // the web dashboard's listener, if any
	// Conntrack is the security groups' connection tracking: the
	// topology file's conntrack section.
	Conntrack *ConntrackSettings `json:"conntrack,omitempty"`
	Version   string             `json:"version,omitempty"`
	Revision  string             `json:"revision,omitempty"`
}
