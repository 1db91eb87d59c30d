package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

// PortSpec is one port of the daemon's configuration: its kind, its
// switch configuration and its kind's settings, parsed and checked
// (ParsePort, or NewPortSpec for surfaces that decode their own).
type PortSpec struct {
	Kind   string
	Port   vswitch.PortConfig
	Values Values
	spec   Spec
}

// Name is the port's name.
func (p PortSpec) Name() string { return p.Port.Name }

// NewPortSpec checks a port given as a switch configuration and kind
// settings (the topology file's, a test's) and returns it ready to serve.
func NewPortSpec(kind string, port vswitch.PortConfig, v Values) (PortSpec, error) {
	k, err := lookupKind(kind)
	if err != nil {
		return PortSpec{}, err
	}
	if v == nil {
		v = Values{}
	}
	if err := checkValues(k, v); err != nil {
		return PortSpec{}, err
	}
	if port.Egress.Bytes.Rate == vswitch.LinkRate {
		ls, ok := k.(LinkSpeeder)
		if !ok {
			return PortSpec{}, Bad("rate", "link", fmt.Sprintf("only a port on a host interface knows its link's speed (not kind %s)", k.Name()))
		}
		bps, err := ls.LinkSpeed(v)
		if err != nil {
			return PortSpec{}, &OptionError{Key: "rate", Value: "link", Msg: err.Error()}
		}
		port.Egress.Bytes.Rate = units.BytesPerSecond(bps)
	}
	s, err := k.Parse(v, port)
	if err != nil {
		return PortSpec{}, err
	}
	return PortSpec{Kind: k.Name(), Port: port, Values: v, spec: s}, nil
}

// CommonOptions are the switch-port settings every kind's port takes on
// the text surfaces (--port, the config file, "hvnet ctl add"); the API
// and the topology file carry them as the port's config.
func CommonOptions() []Option {
	return []Option{
		{Key: "name", Value: "NAME", Help: "the switch port's name", Required: true},
		{Key: "vlan", Value: "VID", Help: "access port in this VLAN (default 1)"},
		{Key: "trunk", Value: "VID:VID...", Help: "trunk port carrying these VLANs tagged"},
		{Key: "native", Value: "VID", Help: "a trunk's untagged VLAN"},
		{Key: "vlan-mode", Value: "access|trunk|dot1q-tunnel", Help: "the VLAN mode (default: trunk with trunk=, else access; dot1q-tunnel: vlan= is the S-VLAN)"},
		{Key: "pcp", Value: "0..7", Help: "802.1p priority of untagged frames (default 0)"},
		{Key: "mtu", Value: "68..65535", Help: "largest frame payload accepted and sent"},
		{Key: "rate", Value: "BITS/s|link", Help: "egress shaping, bits per second: 100M, 100Mbit, 1.5G (link: an uplink's interface speed)"},
		{Key: "rate-burst", Value: "BYTES", Help: "egress shaping burst: 64k, 1M"},
		{Key: "pps", Value: "PACKETS/s", Help: "egress packets per second: 1000, 10k"},
		{Key: "reservation", Value: "BITS/s", Help: "bandwidth guaranteed at every shaped egress the port sends through, while it has frames queued there"},
		{Key: "shares", Value: "1..10000", Help: "weight in a shaped egress's capacity left over after the reservations (default 100)"},
		{Key: "limit", Value: "BITS/s", Help: "the most the port may send through a shaped egress, even when it is idle"},
		{Key: "pcp-class", Value: "C:C:C:C:C:C:C:C", Help: "on a shaped egress: the class 0..2 of each PCP 0..7 (2, 1 strict; default 0:0:0:0:1:1:2:2)"},
		{Key: "dscp-class", Value: "DSCP[-DSCP]:CLASS", Help: "on a shaped egress: IP frames with these DSCPs to a class, whatever their PCP (repeatable; trusted marks only)", Repeat: true},
		{Key: "police", Value: "BITS/s", Help: "ingress policing, bits per second"},
		{Key: "police-burst", Value: "BYTES", Help: "ingress policing burst"},
		{Key: "police-pps", Value: "PACKETS/s", Help: "ingress policing, packets per second"},
		{Key: "storm-bcast-pps", Value: "PACKETS/s", Help: "broadcast entering the port, packets per second"},
		{Key: "storm-mcast-pps", Value: "PACKETS/s", Help: "multicast entering the port, packets per second"},
		{Key: "storm-unknown-pps", Value: "PACKETS/s", Help: "unknown unicast entering the port, packets per second"},
		{Key: "mac-limit", Value: "N|-1", Help: "learned MACs on the port (-1: none)"},
		{Key: "allowed-macs", Value: "MAC", Help: "a source MAC accepted besides the port's own (repeatable)", Repeat: true},
		{Key: "port-security", Value: "on|off", Help: "only the port's own MAC as source (ports with a MAC)"},
	}
}

// ParsePort parses a text port of kind (a name or alias): KEY=VALUE
// fields, empty ones skipped; the common keys (CommonOptions) configure
// the switch port, the others are the kind's. Errors name the field and
// the accepted form.
func ParsePort(kind string, fields []string) (PortSpec, error) {
	k, err := lookupKind(kind)
	if err != nil {
		return PortSpec{}, err
	}
	v := Values{}
	var common []string
	for _, kv := range fields {
		if kv == "" {
			continue
		}
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			return PortSpec{}, fmt.Errorf("field %q: want KEY=VALUE", kv)
		}
		if IsCommon(key) {
			common = append(common, kv)
			continue
		}
		if _, ok := kindOption(k, key); !ok {
			return PortSpec{}, unknownKey(key, unknownFor(k))
		}
		v.Add(key, val)
	}
	port, err := ParseSwitchPort(common)
	if err != nil {
		return PortSpec{}, err
	}
	return NewPortSpec(k.Name(), port, v)
}

// ParseSwitchPort parses the common keys (CommonOptions) into a switch
// port's configuration: an access port of VLAN 1 unless they say
// otherwise.
func ParseSwitchPort(fields []string) (vswitch.PortConfig, error) {
	port := vswitch.PortConfig{PVID: 1}
	var trunk, native, vlan bool
	mode := ""
	seen := map[string]bool{}
	for _, kv := range fields {
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			return port, fmt.Errorf("field %q: want KEY=VALUE", kv)
		}
		bad := func(why string) error { return Bad(key, val, why) }
		if seen[key] && key != "allowed-macs" && key != "trunk" && key != "dscp-class" {
			return port, &OptionError{Key: key, Msg: "given more than once"}
		}
		seen[key] = true
		switch key {
		case "name":
			if err := api.CheckPortName(val); err != nil {
				return port, &OptionError{Key: key, Msg: err.Error()}
			}
			port.Name = val
		case "vlan":
			vid, err := vswitch.ParseVID(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			vlan, port.PVID = true, vid
		case "trunk":
			trunk = true
			vids, err := vswitch.ParseVIDs(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			port.AllowedVLANs = append(port.AllowedVLANs, vids...)
		case "native":
			vid, err := vswitch.ParseVID(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			native, port.NativeVLAN = true, vid
		case "pcp":
			n, err := strconv.ParseUint(val, 10, 8)
			if err != nil || n > 7 {
				return port, bad("is not an 802.1p priority (0..7)")
			}
			port.DefaultPCP = uint8(n)
		case "mtu":
			n, err := strconv.ParseUint(val, 10, 16)
			if err != nil || n < 68 {
				return port, bad("is not an MTU (68..65535)")
			}
			port.MTU = int(n)
		case "vlan-mode":
			switch val {
			case "access", "trunk", "dot1q-tunnel":
				mode = val
			default:
				return port, bad("is not access, trunk or dot1q-tunnel")
			}
		case "allowed-macs":
			m, err := vswitch.ParseStationMAC(val)
			if err != nil {
				return port, bad("is not a unicast MAC address (52:54:00:12:34:56)")
			}
			port.AllowedMACs = append(port.AllowedMACs, m)
		case "rate-burst", "police-burst":
			n, err := units.ParseBytes(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			if key == "rate-burst" {
				port.Egress.Bytes.Burst = n
			} else {
				port.Ingress.Bytes.Burst = n
			}
		case "police-pps", "storm-bcast-pps", "storm-mcast-pps", "storm-unknown-pps":
			n, err := units.ParsePacketRate(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			switch key {
			case "police-pps":
				port.Ingress.Packets.Rate = n
			case "storm-bcast-pps":
				port.Storm.Broadcast.Packets.Rate = n
			case "storm-mcast-pps":
				port.Storm.Multicast.Packets.Rate = n
			default:
				port.Storm.UnknownUnicast.Packets.Rate = n
			}
		case "mac-limit":
			n, err := strconv.Atoi(val)
			if err != nil || n != vswitch.NoMACLimit && (n < 1 || n > vswitch.MaxMACLimit) {
				return port, bad(fmt.Sprintf("is not a MAC limit (-1: none, or 1..%d)", vswitch.MaxMACLimit))
			}
			port.MACLimit = n
		case "port-security":
			ps, err := vswitch.ParsePortSecurity(val)
			if err != nil {
				return port, bad("is not on or off")
			}
			port.PortSecurity = ps
		case "rate", "police":
			if key == "rate" && val == "link" {
				port.Egress.Bytes.Rate = vswitch.LinkRate // NewPortSpec asks the kind
				continue
			}
			n, err := units.ParseBitRate(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			if key == "rate" {
				port.Egress.Bytes.Rate = units.BytesPerSecond(n)
			} else {
				port.Ingress.Bytes.Rate = units.BytesPerSecond(n)
			}
		case "reservation", "limit":
			n, err := units.ParseBitRate(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			if key == "reservation" {
				port.Allocation.Reservation = units.BytesPerSecond(n)
			} else {
				port.Allocation.Limit = units.BytesPerSecond(n)
			}
		case "shares":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > vswitch.MaxShares {
				return port, bad(fmt.Sprintf("is not a number of shares (1..%d; default %d)", vswitch.MaxShares, vswitch.DefaultShares))
			}
			port.Allocation.Shares = n
		case "pcp-class":
			cs, err := api.ParsePCPClasses(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			port.Classes.PCP = cs
		case "dscp-class":
			d, err := api.ParseDSCPClass(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			port.Classes.DSCP = append(port.Classes.DSCP, d)
		case "pps":
			n, err := units.ParsePacketRate(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			port.Egress.Packets.Rate = n
		default:
			var keys []string
			for _, o := range CommonOptions() {
				keys = append(keys, o.Key)
			}
			return port, unknownKey(key, "unknown (want "+strings.Join(keys, ", ")+")")
		}
	}
	if mode == "" {
		mode = "access"
		if trunk {
			mode = "trunk"
		}
	}
	switch a := port.Allocation; {
	case port.Name == "":
		return port, errors.New("field \"name\": missing")
	case a.Limit != 0 && a.Reservation > a.Limit:
		return port, fmt.Errorf("field \"reservation\": %s is above limit=%s", units.FormatBitRate(a.Reservation*8), units.FormatBitRate(a.Limit*8))
	case native && !trunk:
		return port, errors.New("field \"native\": only for trunk ports")
	case vlan && trunk:
		return port, errors.New("field \"vlan\": only for access ports (a trunk's untagged VLAN is native)")
	case trunk && mode != "trunk":
		return port, fmt.Errorf("field \"trunk\": only for trunk ports (vlan-mode=%s)", mode)
	case mode == "trunk" && !trunk:
		return port, errors.New("field \"vlan-mode\": a trunk needs trunk=VID:VID...")
	}
	switch mode {
	case "trunk":
		port.Mode, port.PVID = vswitch.ModeTrunk, 0
	case "dot1q-tunnel":
		port.Mode = vswitch.ModeDot1QTunnel
	}
	return port, nil
}

// LoadFile reads a config file: one port per line, "KIND KEY=VALUE ..."
// (KIND a registered kind or alias: "port" is vhost-user; fields
// separated by spaces or commas; a lab guest's cmd= last, taking the rest
// of the line), blank lines and # comments (not inside cmd=). It reports
// every bad line at once, in line order, each naming the file, the line
// and the field.
func LoadFile(path string) ([]PortSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ports []PortSpec
	var errs []error
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var fields []string
		for _, f := range SplitSpec(sc.Text(), " \t,") {
			key, _, _ := strings.Cut(f, "=")
			if !restKeys()[key] {
				if i := strings.IndexByte(f, '#'); i >= 0 {
					if f = f[:i]; f != "" {
						fields = append(fields, f)
					}
					break
				}
			}
			fields = append(fields, f)
		}
		if len(fields) == 0 {
			continue
		}
		if _, ok := Lookup(fields[0]); !ok {
			errs = append(errs, fmt.Errorf("%s:%d: unknown directive %q (want a port kind: %s; or port for vhost-user)",
				path, n, fields[0], strings.Join(Kinds(), ", ")))
			continue
		}
		p, err := ParsePort(fields[0], fields[1:])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", path, n, err))
			continue
		}
		ports = append(ports, p)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return ports, errors.Join(errs...)
}

// Spec is what the kind's Parse returned (for the kind's own tests).
func (p PortSpec) Spec() Spec { return p.spec }
