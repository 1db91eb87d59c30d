package vswitch

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/conntrack"
)

// VLANMode is a port's IEEE 802.1Q / 802.1ad VLAN mode.
type VLANMode uint8

const (
	// ModeAccess: one VLAN (PVID), frames untagged on the wire. A tagged
	// frame arriving is dropped, except a priority-tagged one (VID 0).
	ModeAccess VLANMode = iota
	// ModeTrunk: VLANs in AllowedVLANs carried tagged, NativeVLAN untagged.
	ModeTrunk
	// ModeDot1QTunnel: 802.1ad customer port. Every frame, tagged or not, is
	// kept intact and carried in VLAN PVID; toward trunks it gets an S-tag
	// (TPID 0x88a8) that is popped again on the way back.
	ModeDot1QTunnel
)

func (m VLANMode) String() string {
	switch m {
	case ModeAccess:
		return "access"
	case ModeTrunk:
		return "trunk"
	case ModeDot1QTunnel:
		return "dot1q-tunnel"
	}
	return fmt.Sprintf("VLANMode(%d)", m)
}

// LinkRate, as an egress Bucket.Rate, asks for the port's link speed
// (rate=link on the command line and in the topology file): hvnet's daemon
// replaces it with the speed its host interface reports before the port
// is added; the switch refuses it.
const LinkRate = -1

// Bucket is one token bucket. Rate 0 means unlimited.
type Bucket struct {
	Rate         int64 // tokens (bytes or packets) per second
	Burst        int64 // bucket size in tokens; 0 picks max(Rate/100, 1)
	OneTimeBurst int64 // extra tokens available once, spent first, never refilled (as Firecracker)
}

// RateLimit is a pair of token buckets, one counting bytes and one counting
// packets. A frame passes when both have tokens. The zero value is unlimited.
type RateLimit struct {
	Bytes   Bucket
	Packets Bucket
}

func (r RateLimit) enabled() bool { return r.Bytes.Rate > 0 || r.Packets.Rate > 0 }

// StormControl limits flooded traffic entering a port.
type StormControl struct {
	Broadcast      RateLimit
	Multicast      RateLimit
	UnknownUnicast RateLimit
}

// QueueConfig bounds each of a shaped port's egress class queues.
type QueueConfig struct {
	Frames int // frames per class; 0 means 256
	Bytes  int // bytes per class; 0 means 512 KiB (at least one GSO frame)
}

// PortConfig is everything the switch knows about a port. Every field can be
// changed live with UpdatePort.
type PortConfig struct {
	Name string

	Mode VLANMode
	// PVID is the VLAN of an access port, or the S-VLAN of a dot1q-tunnel port. 1..4094.
	PVID uint16
	// AllowedVLANs are the VLANs a trunk carries tagged (NativeVLAN is always allowed).
	AllowedVLANs []uint16
	// NativeVLAN is the trunk's untagged VLAN; 0 means untagged frames are dropped.
	NativeVLAN uint16
	// DefaultPCP is the 802.1p priority given to untagged frames.
	DefaultPCP uint8

	// MTU is the largest L3 payload accepted on ingress (not counting GSO
	// frames, which may be up to 64 KiB plus headers). 0 means 1500.
	MTU int

	Ingress RateLimit // policer: frames without tokens are dropped
	// Egress shapes the port's egress: its capacity, which the ports
	// sending through it share by their Allocation; frames wait in
	// EgressQueue (per class, and per sending port for class 0).
	Egress      RateLimit
	EgressQueue QueueConfig
	// Classes sorts the shaped egress's frames into its classes.
	Classes ClassMap
	// Allocation is this port's claim on every shaped egress it sends
	// through (sched.go).
	Allocation Allocation
	Storm      StormControl

	// MACLimit caps the dynamic FDB entries learned on this port: 0
	// means the switch's default (Config.MACLimit), NoMACLimit none (the
	// switch-wide Config.FDBMaxEntries still bounds it). A frame whose new
	// source MAC would go past it is dropped (DropMACLimit). AddPort and
	// UpdatePort replace 0 with the default, so Config shows the limit
	// in force.
	MACLimit int
	// AllowedMACs, when not empty, are source MACs accepted besides the
	// port's own MAC under PortSecurity: any other source is dropped
	// (DropSpoofed, anti-spoofing).
	AllowedMACs []MAC
	// PortSecurity applies to a port whose Port has a MAC of its own
	// (AddressedPort: a lab guest's NIC, a vhost-user port given mac=).
	// On (the zero value), the port accepts only that source MAC (and
	// AllowedMACs), as cloud port security does, and its FDB entry never
	// moves to another port while it lives. PortSecurityOff accepts any
	// source (AllowedMACs, if set, still applies).
	PortSecurity PortSecurity

	MirrorIngress bool // copy frames received on this port to the mirror sink
	MirrorEgress  bool // copy frames sent by this port to the mirror sink
}

// PortSecurity says whether a port with a MAC of its own accepts only
// that source MAC (PortConfig.PortSecurity).
type PortSecurity uint8

// Port security settings. The zero value is on.
const (
	PortSecurityOn  PortSecurity = iota // only the port's own MAC (and AllowedMACs); its entry is pinned
	PortSecurityOff                     // any source MAC (AllowedMACs, if set, still applies)
)

func (p PortSecurity) String() string {
	switch p {
	case PortSecurityOn:
		return "on"
	case PortSecurityOff:
		return "off"
	}
	return fmt.Sprintf("PortSecurity(%d)", p)
}

// ParsePortSecurity parses "on" or "off", as the command line's
// port-security= takes it.
func ParsePortSecurity(s string) (PortSecurity, error) {
	switch s {
	case "on":
		return PortSecurityOn, nil
	case "off":
		return PortSecurityOff, nil
	}
	return 0, fmt.Errorf("port security %q: want on or off", s)
}

// Config configures a Switch.
type Config struct {
	Logger hclog.Logger // default hclog.NewNullLogger()
	Clock  Clock        // default RealClock{}
	// AgingTime is how long a dynamic FDB entry lives without traffic; 0 means 300 s (IEEE 802.1Q §8.8.3).
	AgingTime time.Duration
	// FDBMaxEntries bounds the learned (dynamic) FDB entries of the whole
	// switch; static entries do not count. 0 means DefaultFDBMaxEntries
	// (at most MaxFDBEntries).
	// When it is reached, entries already learned keep working and a
	// frame whose source MAC is new is dropped (DropFDBFull) until aging,
	// a flush or a port's removal frees room: no port can evict another's
	// entries.
	FDBMaxEntries int
	// MACLimit is the MAC limit of ports whose PortConfig.MACLimit is 0:
	// 0 means DefaultMACLimit, NoMACLimit (any negative) none; at most
	// MaxMACLimit.
	MACLimit int
	// MACMoveHoldDown: a learned entry moves to another port only once it
	// has not been refreshed on its port for this long; until then a
	// frame from another port with that source MAC is dropped
	// (DropMACMove). 0 means DefaultMACMoveHoldDown; negative, none (an
	// entry moves on one frame, as plain IEEE 802.1Q learning does); at
	// most MaxMACMoveHoldDown.
	// Static entries and a port's own MAC under PortSecurity never move.
	MACMoveHoldDown time.Duration
	// Conntrack sets the security groups' connection tracking: per-state
	// timeouts, the per-port and the global entry limits (zero fields:
	// package conntrack's defaults).
	Conntrack conntrack.Config
}

// DefaultAgingTime is the FDB aging time of a Config without one (IEEE
// 802.1Q §8.8.3's default).
const DefaultAgingTime = 300 * time.Second

// FDB bounds and MAC-move protection defaults (Config).
const (
	// DefaultFDBMaxEntries: 64 Ki learned entries fill about 4 MiB of
	// tables (256 shards of 512 32-byte slots, grown at 3/4 full): far
	// more MACs than one host's guests have, and as many as 64 ports at
	// the default MAC limit. Open vSwitch's default (mac-table-size, 2048
	// for a whole bridge) is known to be too small for large segments.
	DefaultFDBMaxEntries = 1 << 16
	// DefaultMACLimit: a guest has one MAC, or a few hundred with nested
	// bridges or containers; 1024 leaves them room while one port can
	// fill at most 1/64 of the default FDB.
	DefaultMACLimit = 1024
	// DefaultMACMoveHoldDown: an active host (anything sent within the
	// last second) keeps its entry; a MAC whose old port went silent
	// moves within a second, inside QEMU's post-migration announcements
	// (5 RARPs over about 1.25 s) and a bond's failover.
	DefaultMACMoveHoldDown = time.Second
	// NoMACLimit as a MAC limit (PortConfig.MACLimit, Config.MACLimit):
	// no per-port limit, only Config.FDBMaxEntries.
	NoMACLimit = -1
	// MaxMACLimit bounds a MAC limit given explicitly.
	MaxMACLimit = 1 << 20
	// MaxFDBEntries bounds Config.FDBMaxEntries (16 Mi learned entries:
	// about 1 GiB of tables); New takes a larger value as this.
	MaxFDBEntries = 1 << 24
	// MaxMACMoveHoldDown bounds Config.MACMoveHoldDown: a longer one only
	// delays legitimate moves (aging removes a silent MAC in 300 s
	// anyway); New takes a longer one as this.
	MaxMACMoveHoldDown = time.Minute
)

const (
	defaultMTU       = 1500
	maxMTU           = 65535
	maxGSOFrame      = 65536 + 256 // a 64 KiB GSO payload plus headers
	maxTags          = 4           // VLAN tags skipped looking for L3
	defaultQFrames   = 256
	defaultQBytes    = 512 << 10
	maxBucketTokens  = 1 << 32
	maxBucketRate    = 1 << 40
	defaultAgingTime = DefaultAgingTime
	numClasses       = 3
	vidReserved      = 4095
	tpidCTag         = 0x8100
	tpidSTag         = 0x88a8
	etherTypeIPv4    = 0x0800
	etherTypeIPv6    = 0x86dd
	ipProtoTCP       = 6
)

var errConfig = errors.New("invalid port config")

func checkBucket(what string, b Bucket) error {
	switch {
	case b.Rate == LinkRate:
		return fmt.Errorf("%w: %s: rate=link, not replaced by the link's speed", errConfig, what)
	case b.Rate < 0 || b.Burst < 0 || b.OneTimeBurst < 0:
		return fmt.Errorf("%w: %s: negative value", errConfig, what)
	case b.Rate > maxBucketRate:
		return fmt.Errorf("%w: %s: rate %d above %d", errConfig, what, b.Rate, int64(maxBucketRate))
	case b.Burst > maxBucketTokens || b.OneTimeBurst > maxBucketTokens:
		return fmt.Errorf("%w: %s: burst above %d", errConfig, what, int64(maxBucketTokens))
	}
	return nil
}

func checkRate(what string, r RateLimit) error {
	if err := checkBucket(what+" bytes", r.Bytes); err != nil {
		return err
	}
	return checkBucket(what+" packets", r.Packets)
}

func checkVID(what string, v uint16) error {
	// IEEE 802.1Q-2018 Table 9-2: VID 0 is "no VLAN", 0xFFF is reserved.
	if v == 0 || v >= vidReserved {
		return fmt.Errorf("%w: %s %d outside 1..4094", errConfig, what, v)
	}
	return nil
}

// Validate reports whether AddPort would accept cfg, without adding
// anything: for configuration files and APIs that check before they act.
func (cfg PortConfig) Validate() error { return cfg.validate() }

// validate checks cfg and fills defaults.
func (cfg *PortConfig) validate() error {
	if cfg.Name == "" {
		return fmt.Errorf("%w: empty name", errConfig)
	}
	switch cfg.Mode {
	case ModeAccess, ModeDot1QTunnel:
		if err := checkVID("vlan", cfg.PVID); err != nil {
			return fmt.Errorf("port %q: %w", cfg.Name, err)
		}
	case ModeTrunk:
		if cfg.NativeVLAN != 0 {
			if err := checkVID("native", cfg.NativeVLAN); err != nil {
				return fmt.Errorf("port %q: %w", cfg.Name, err)
			}
		}
		for _, v := range cfg.AllowedVLANs {
			if err := checkVID("trunk", v); err != nil {
				return fmt.Errorf("port %q: %w", cfg.Name, err)
			}
		}
	default:
		return fmt.Errorf("port %q: %w: vlan-mode %d", cfg.Name, errConfig, cfg.Mode)
	}
	if cfg.DefaultPCP > 7 {
		return fmt.Errorf("port %q: %w: pcp %d", cfg.Name, errConfig, cfg.DefaultPCP)
	}
	if cfg.MTU == 0 {
		cfg.MTU = defaultMTU
	}
	if cfg.MTU < 68 || cfg.MTU > maxMTU {
		return fmt.Errorf("port %q: %w: mtu %d outside 68..%d", cfg.Name, errConfig, cfg.MTU, maxMTU)
	}
	for what, r := range map[string]RateLimit{
		"ingress": cfg.Ingress, "egress": cfg.Egress, "storm broadcast": cfg.Storm.Broadcast,
		"storm multicast": cfg.Storm.Multicast, "storm unknown unicast": cfg.Storm.UnknownUnicast,
	} {
		if err := checkRate(what, r); err != nil {
			return fmt.Errorf("port %q: %w", cfg.Name, err)
		}
	}
	if cfg.EgressQueue.Frames < 0 || cfg.EgressQueue.Bytes < 0 {
		return fmt.Errorf("port %q: %w: negative queue size", cfg.Name, errConfig)
	}
	if err := cfg.Allocation.validate(); err != nil {
		return fmt.Errorf("port %q: %w", cfg.Name, err)
	}
	if err := cfg.Classes.validate(); err != nil {
		return fmt.Errorf("port %q: %w", cfg.Name, err)
	}
	if cfg.MACLimit < NoMACLimit || cfg.MACLimit > MaxMACLimit {
		return fmt.Errorf("port %q: %w: MAC limit %d outside %d (none), 0 (the default), 1..%d", cfg.Name, errConfig, cfg.MACLimit, NoMACLimit, MaxMACLimit)
	}
	if cfg.PortSecurity > PortSecurityOff {
		return fmt.Errorf("port %q: %w: port security %d", cfg.Name, errConfig, cfg.PortSecurity)
	}
	if cfg.EgressQueue.Frames == 0 {
		cfg.EgressQueue.Frames = defaultQFrames
	}
	if cfg.EgressQueue.Bytes == 0 {
		cfg.EgressQueue.Bytes = defaultQBytes
	}
	if cfg.EgressQueue.Bytes < maxGSOFrame {
		return fmt.Errorf("port %q: %w: egress queue of %d bytes cannot hold a %d-byte frame", cfg.Name, errConfig, cfg.EgressQueue.Bytes, maxGSOFrame)
	}
	for _, m := range cfg.AllowedMACs {
		if m[0]&1 != 0 {
			return fmt.Errorf("port %q: %w: allowed MAC %v is a group address", cfg.Name, errConfig, m)
		}
	}
	return nil
}
