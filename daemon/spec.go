package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	vswitch "hvnet/switch"
	"hvnet/units"
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
		{Key: "mtu", Value: "68..65535", Help: "largest frame payload accepted and sent"},
		{Key: "rate", Value: "BITS/s", Help: "egress shaping, bits per second: 100M, 100Mbit, 1.5G"},
		{Key: "pps", Value: "PACKETS/s", Help: "egress packets per second: 1000, 10k"},
		{Key: "police", Value: "BITS/s", Help: "ingress policing, bits per second"},
		{Key: "mac-limit", Value: "N|-1", Help: "learned MACs on the port (-1: none)"},
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
			return PortSpec{}, fmt.Errorf("field %q: unknown for kind %s (want %s)", key, k.Name(), optionKeys(k))
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
	for _, kv := range fields {
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			return port, fmt.Errorf("field %q: want KEY=VALUE", kv)
		}
		bad := func(why string) error { return Bad(key, val, why) }
		switch key {
		case "name":
			if val == "" {
				return port, bad("is empty")
			}
			port.Name = val
		case "vlan", "pvid":
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
		case "mtu":
			n, err := strconv.ParseUint(val, 10, 16)
			if err != nil || n < 68 {
				return port, bad("is not an MTU (68..65535)")
			}
			port.MTU = int(n)
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
			n, err := units.ParseBitRate(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			if key == "rate" {
				port.Egress.Bytes.Rate = units.BytesPerSecond(n)
			} else {
				port.Ingress.Bytes.Rate = units.BytesPerSecond(n)
			}
		case "pps":
			n, err := units.ParsePacketRate(val)
			if err != nil {
				return port, fmt.Errorf("field %q: %w", key, err)
			}
			port.Egress.Packets.Rate = n
		default:
			return port, fmt.Errorf("field %q: unknown", key)
		}
	}
	switch {
	case port.Name == "":
		return port, errors.New("field \"name\": missing")
	case native && !trunk:
		return port, errors.New("field \"native\": only for trunk ports")
	case vlan && trunk:
		return port, errors.New("field \"vlan\": only for access ports (a trunk's untagged VLAN is native)")
	}
	if trunk {
		port.Mode, port.PVID = vswitch.ModeTrunk, 0
	}
	return port, nil
}

// LoadFile reads a config file: one port per line, "KIND KEY=VALUE ..."
// (KIND a registered kind or alias: "port" is vhost-user; fields
// separated by spaces or commas), blank lines and # comments. It reports
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
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
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
