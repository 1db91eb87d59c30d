package topology

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"hvnet/units"
)

// Topology is a whole topology file.
type Topology struct {
	Pos
	File   string  `yaml:"-"`
	Switch Switch  `yaml:"switch"`
	Ports  []Port  `yaml:"ports"`
	Uplink *Uplink `yaml:"uplink"`
	Guests []Guest `yaml:"guests"`
}

// Switch is the switch's own settings.
type Switch struct {
	Pos
	API string `yaml:"api"` // control socket (default /run/hvnet.sock)
	// MetricsAddr is a TCP address serving GET /metrics alone (default
	// none).
	MetricsAddr string        `yaml:"metrics_addr"`
	Aging       time.Duration `yaml:"aging"` // FDB aging time, e.g. 300s (default)
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

// Limit is a rate limit: a bit rate ("100Mbit", "10M": bits per second,
// as everywhere in hvnet) with its burst in bytes, and a packet rate with
// its burst in packets.
type Limit struct {
	Pos
	Rate     Rate  `yaml:"rate"`
	Burst    Bytes `yaml:"burst"`
	PPS      int64 `yaml:"pps"`
	PPSBurst int64 `yaml:"pps_burst"`
}

// Storm is broadcast, multicast and unknown-unicast storm control.
type Storm struct {
	Pos
	Broadcast      *Limit `yaml:"broadcast"`
	Multicast      *Limit `yaml:"multicast"`
	UnknownUnicast *Limit `yaml:"unknown_unicast"`
}

// PortSettings are a switch port's settings (vswitch.PortConfig).
type PortSettings struct {
	Mode         string   `yaml:"mode"` // access (default), trunk, dot1q-tunnel
	PVID         int      `yaml:"pvid"`
	AllowedVLANs []int    `yaml:"allowed_vlans"`
	NativeVLAN   int      `yaml:"native_vlan"`
	PCP          int      `yaml:"pcp"`
	MTU          int      `yaml:"mtu"`
	Ingress      *Limit   `yaml:"ingress"` // policer
	Egress       *Limit   `yaml:"egress"`  // shaper
	Storm        *Storm   `yaml:"storm"`
	MACLimit     int      `yaml:"mac_limit"` // 0: the switch's; -1: none
	AllowedMACs  []string `yaml:"allowed_macs"`
	// PortSecurity false lets a port with a mac accept any source MAC
	// (default true: only its mac and allowed_macs).
	PortSecurity *bool `yaml:"port_security"`
	ACL          *ACL  `yaml:"acl"` // ingress and egress rules (acl.go)
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
	SocketMode   string  `yaml:"socket_mode"` // server (default) or client
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
		if _, dup := o.Lines[k.Value]; dup {
			return fmt.Errorf("line %d: %s: key given twice", k.Line, k.Value)
		}
		o.Lines[k.Value] = k.Line
		switch v.Kind {
		case yaml.ScalarNode:
			o.Values[k.Value] = []string{v.Value}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("line %d: %s: want values, not a nested structure", e.Line, k.Value)
				}
				o.Values[k.Value] = append(o.Values[k.Value], e.Value)
			}
		default:
			return fmt.Errorf("line %d: %s: want a value or a list of values", v.Line, k.Value)
		}
	}
	return nil
}

// Uplink attaches a host interface (AF_PACKET) to the switch.
type Uplink struct {
	Pos
	Name         string `yaml:"name"` // switch port name (default "uplink")
	Interface    string `yaml:"interface"`
	TXMode       string `yaml:"tx_mode"` // ring (default) or sendmmsg
	PortSettings `yaml:",inline"`
}

// Guest is a lab guest: a VM booted by hvnet's VMM with one NIC on an
// access port of VLAN, shaped (to the guest) and policed (from it) at Rate.
type Guest struct {
	Pos
	Name    string `yaml:"name"`
	MAC     string `yaml:"mac"`
	IP      string `yaml:"ip"`   // address/prefix, e.g. 10.0.10.1/24
	VLAN    int    `yaml:"vlan"` // default 1
	Queues  int    `yaml:"queues"`
	Rate    Rate   `yaml:"rate"`
	Command string `yaml:"command"` // shell script the guest agent runs
	ACL     *ACL   `yaml:"acl"`     // its port's ingress and egress rules (acl.go)
	// PortSecurity false lets the guest send from any source MAC
	// (default true: only its MAC).
	PortSecurity *bool `yaml:"port_security"`
}

// Rate is a rate in bits per second, written as units.ParseBitRate reads
// it ("100Mbit", "10M", "1.5G", 1000000).
type Rate int64

func (r *Rate) decodeScalar(s string) error {
	v, err := units.ParseBitRate(s)
	*r = Rate(v)
	return err
}

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
