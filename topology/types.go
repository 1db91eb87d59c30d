package topology

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

// Topology is a whole topology file.
type Topology struct {
	Pos
	File   string `yaml:"-"`
	Switch Switch `yaml:"switch"`
	// Conntrack is the security groups' connection tracking (secgroup.go).
	Conntrack *Conntrack `yaml:"conntrack"`
	// FlowExport is IPFIX flow export (package ipfix): on when the
	// section is there, unless enabled: false.
	FlowExport *FlowExport `yaml:"flow_export"`
	Ports      []Port      `yaml:"ports"`
	Uplink     *Uplink     `yaml:"uplink"`
	Guests     []Guest     `yaml:"guests"`
}

// Switch is the switch's own settings.
type Switch struct {
	Pos
	API string `yaml:"api"` // control socket (default /run/hvnet.sock)
	// MetricsAddr is a TCP address serving GET /metrics alone (default
	// none).
	MetricsAddr string `yaml:"metrics_addr"`
	// DashboardAddr is a TCP address serving the read-only web dashboard
	// (default none; a port alone, as 9478, is localhost's: package
	// dashboard's ResolveAddr).
	DashboardAddr string        `yaml:"dashboard_addr"`
	Aging         time.Duration `yaml:"aging"` // FDB aging time, e.g. 300s (default)
	// FDBMaxEntries bounds the learned FDB entries of the whole switch
	// (default 65536; vswitch.Config.FDBMaxEntries).
	FDBMaxEntries int `yaml:"fdb_max_entries"`
	// MACLimit is the MAC limit of ports without one (default 1024, -1
	// none; vswitch.Config.MACLimit).
	MACLimit int `yaml:"mac_limit"`
	// MACMoveHoldDown: a learned MAC moves to another port only after this
	// long without frames on its port (default 1s; negative, as -1s:
	// none; vswitch.Config.MACMoveHoldDown).
	MACMoveHoldDown time.Duration `yaml:"mac_move_hold_down"`
}

// Limit is a rate limit, as the API's RateLimit: a bit rate ("100Mbit",
// "10M": bits per second, as everywhere in hvnet) with its burst in
// bytes, and a packet rate with its burst in packets.
type Limit struct {
	Pos
	RateBPS             Rate       `yaml:"rate_bps"`
	BurstBytes          Bytes      `yaml:"burst_bytes"`
	OneTimeBurstBytes   Bytes      `yaml:"one_time_burst_bytes"`
	RatePPS             PacketRate `yaml:"rate_pps"`
	BurstPackets        int64      `yaml:"burst_packets"`
	OneTimeBurstPackets int64      `yaml:"one_time_burst_packets"`
}

// Storm is broadcast, multicast and unknown-unicast storm control.
type Storm struct {
	Pos
	Broadcast      *Limit `yaml:"broadcast"`
	Multicast      *Limit `yaml:"multicast"`
	UnknownUnicast *Limit `yaml:"unknown_unicast"`
}

// PortSettings are a switch port's settings (vswitch.PortConfig), under
// the names the command line gives them ("_" for "-"; a key written with
// "-" is taken too).
type PortSettings struct {
	Mode         string   `yaml:"vlan_mode"` // access, trunk, dot1q-tunnel (default: trunk with trunk, else access)
	PVID         int      `yaml:"vlan"`      // an access port's VLAN (a dot1q-tunnel port's S-VLAN), default 1
	AllowedVLANs VLANList `yaml:"trunk"`     // a trunk's tagged VLANs: [10, 20] or "10:20"
	NativeVLAN   int      `yaml:"native"`    // a trunk's untagged VLAN
	PCP          int      `yaml:"pcp"`
	MTU          int      `yaml:"mtu"`
	// Rate, Police and PPS are the command line's rate=, police= and
	// pps=: egress.rate_bps, ingress.rate_bps and egress.rate_pps.
	Rate        Rate       `yaml:"rate"`
	Police      Rate       `yaml:"police"`
	PPS         PacketRate `yaml:"pps"`
	Ingress     *Limit     `yaml:"ingress"` // policer
	Egress      *Limit     `yaml:"egress"`  // shaper
	Storm       *Storm     `yaml:"storm"`
	MACLimit    int        `yaml:"mac_limit"` // 0: the switch's; -1: none
	AllowedMACs []string   `yaml:"allowed_macs"`
	// PortSecurity false lets a port with a mac accept any source MAC
	// (default true: only its mac and allowed_macs).
	PortSecurity *bool `yaml:"port_security"`
	// Reservation, Shares and Limit are the port's claim on every shaped
	// egress it sends through (vswitch.Allocation): the command line's
	// reservation=, shares= and limit=, rates in bits per second.
	Reservation Rate `yaml:"reservation"`
	Shares      int  `yaml:"shares"` // 1..10000, default 100
	Limit       Rate `yaml:"limit"`
	// PCPClass and DSCPClass sort the frames of the port's egress, when
	// it is shaped, into its classes (vswitch.ClassMap): the command
	// line's pcp-class= ("0:0:0:0:1:1:2:2" or a list of 8 classes) and
	// dscp-class= (a list of "46:2", "8-15:0").
	PCPClass  PCPClassList `yaml:"pcp_class"`
	DSCPClass []DSCPClass  `yaml:"dscp_class"`
	ACL       *ACL         `yaml:"acl"` // ingress and egress rules (acl.go)
	// SecurityGroup is the port's stateful inbound and outbound rules
	// (secgroup.go).
	SecurityGroup *SecurityGroup `yaml:"security_group"`
}

// Port is a port of the daemon: a vhost-user socket that QEMU, DPDK or
// another frontend connects to (server mode, the default) or that hvnet
// connects to (client mode), or, with Kind, a port of any kind the daemon
// has, configured by its Options under the keys the command line takes
// ("hvnet switch --kinds"). Socket, SocketMode, Queues and MAC are
// vhost-user's socket, mode, queues and mac.
type Port struct {
	Pos
	Name         string  `yaml:"name"`
	Kind         string  `yaml:"kind"` // default vhost-user
	Options      Options `yaml:"options"`
	Socket       string  `yaml:"socket"`
	SocketMode   string  `yaml:"mode"` // server (default) or client
	Queues       int     `yaml:"queues"`
	MAC          string  `yaml:"mac"`
	PortSettings `yaml:",inline"`
}

// Options are a port kind's own settings: KEY: VALUE, a value a scalar
// or, for keys that repeat, a list of them.
type Options struct {
	Values map[string][]string
	Lines  map[string]int // each key's line
}

func (o *Options) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want a mapping of the kind's keys to values")
	}
	o.Values, o.Lines = map[string][]string{}, map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := strings.ReplaceAll(k.Value, "_", "-") // the kinds' keys are the command line's
		if _, dup := o.Lines[key]; dup {
			return fmt.Errorf("line %d: %s: key given twice", k.Line, k.Value)
		}
		o.Lines[key] = k.Line
		switch v.Kind {
		case yaml.ScalarNode:
			o.Values[key] = []string{v.Value}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("line %d: %s: want values, not a nested structure", e.Line, k.Value)
				}
				o.Values[key] = append(o.Values[key], e.Value)
			}
		default:
			return fmt.Errorf("line %d: %s: want a value or a list of values", v.Line, k.Value)
		}
	}
	return nil
}

// Uplink attaches a host interface (AF_PACKET) to the switch: the
// uplink kind's if and tx.
type Uplink struct {
	Pos
	Name         string `yaml:"name"` // switch port name (default "uplink")
	Interface    string `yaml:"if"`
	TXMode       string `yaml:"tx"` // ring (default) or sendmmsg
	PortSettings `yaml:",inline"`
}

// Guest is a lab guest: a VM booted by hvnet's VMM whose NIC is a switch
// port, with the lab kind's keys (hvnet switch --port kind=lab) and the
// switch settings every port has (an access port of VLAN 1 unless they
// say otherwise).
type Guest struct {
	Pos
	Name         string   `yaml:"name"`
	MAC          string   `yaml:"mac"`
	IP           string   `yaml:"ip"` // address/prefix, e.g. 10.0.10.1/24
	Queues       int      `yaml:"queues"`
	Mem          string   `yaml:"mem"`  // RAM: 256M (default), 1G
	CPUs         int      `yaml:"cpus"` // default 1
	GuestMTU     int      `yaml:"guest_mtu"`
	VIFs         []string `yaml:"vif"` // VLAN subinterfaces: eth0.10:10.0.1.1/24
	Cmd          string   `yaml:"cmd"` // the script the guest agent runs
	PortSettings `yaml:",inline"`
}

// VLANList is a list of VLAN IDs: a YAML list, or a string as the
// command line writes it ("10:20", "100-199").
type VLANList []int

func (l *VLANList) decodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		vids, err := vswitch.ParseVIDs(n.Value)
		if err != nil {
			return err
		}
		for _, v := range vids {
			*l = append(*l, int(v))
		}
	case yaml.SequenceNode:
		for _, e := range n.Content {
			var v int
			if e.Kind != yaml.ScalarNode || e.Decode(&v) != nil {
				return fmt.Errorf("%q is not a VLAN ID", e.Value)
			}
			*l = append(*l, v)
		}
	default:
		return fmt.Errorf("want a list of VLAN IDs or a string as 10:20")
	}
	return nil
}

// PCPClassList is the class (0..2) of each PCP 0..7: a YAML list of 8,
// or a string as the command line writes it ("0:0:0:0:1:1:2:2").
type PCPClassList []uint8

func (l *PCPClassList) decodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		cs, err := api.ParsePCPClasses(n.Value)
		if err != nil {
			return err
		}
		*l = cs
	case yaml.SequenceNode:
		vs := make([]int, len(n.Content))
		for i, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.Decode(&vs[i]) != nil {
				return fmt.Errorf("[%d]: %q is not a class (0..%d)", i, e.Value, api.NumClasses-1)
			}
		}
		cs, _, err := api.CheckPCPClasses(vs)
		if err != nil {
			return err
		}
		*l = cs
	default:
		return fmt.Errorf("want a list of 8 classes or a string as 0:0:0:0:1:1:2:2")
	}
	return nil
}

// DSCPClass maps DSCP values to a class, written as the command line's
// dscp-class= ("46:2", "8-15:0").
type DSCPClass vswitch.DSCPClass

func (d *DSCPClass) decodeScalar(s string) error {
	v, err := api.ParseDSCPClass(s)
	*d = DSCPClass(v)
	return err
}

// PacketRate is a rate in packets per second, written as
// units.ParsePacketRate reads it (1000, "10k").
type PacketRate int64

func (r *PacketRate) decodeScalar(s string) error {
	v, err := units.ParsePacketRate(s)
	*r = PacketRate(v)
	return err
}

// Rate is a rate in bits per second, written as units.ParseBitRate reads
// it ("100Mbit", "10M", "1.5G", 1000000).
type Rate int64

func (r *Rate) decodeScalar(s string) error {
	if s == "link" {
		*r = RateLink
		return nil
	}
	v, err := units.ParseBitRate(s)
	*r = Rate(v)
	return err
}

// RateLink is rate: link, an uplink's capacity read from its interface's
// speed (the port's kind finds it when the port is made).
const RateLink Rate = -1

// Bytes is a size in bytes, written as units.ParseBytes reads it ("64k").
type Bytes int64

func (b *Bytes) decodeScalar(s string) error {
	v, err := units.ParseBytes(s)
	*b = Bytes(v)
	return err
}

// Pos records where a mapping and each of its keys are in the file.
type Pos struct {
	Line int `yaml:"-"`
	keys map[string]int
}

// LineOf returns the line of key in the mapping (the mapping's line if
// the key is absent).
func (p Pos) LineOf(key string) int {
	if l, ok := p.keys[key]; ok {
		return l
	}
	return p.Line
}

func (p Pos) has(key string) bool { _, ok := p.keys[key]; return ok }

func (p *Pos) setPos(line int, keys map[string]int) { p.Line, p.keys = line, keys }
