package lab

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"hvnet/images/agentcfg"
	vswitch "hvnet/switch"
	"hvnet/units"
)

// GuestSpecHelp describes the guest spec syntax of ParseGuest.
const GuestSpecHelp = `name=NAME[,KEY=VALUE]...[,cmd=SCRIPT]
  name=a            guest and switch port name (required)
  ip=10.0.0.1/24    eth0 address
  mac=52:54:00:..   NIC MAC (default derived from the guest's position)
  mtu=N             eth0 MTU
  vlan=10           access port in VLAN 10 (default 1)
  trunk=10:20       trunk port carrying VLANs 10 and 20 tagged
  native=N          trunk's untagged VLAN
  vif=eth0.10:10.0.1.1/24   VLAN subinterface in the guest (repeatable)
  queues=N          virtio-net queue pairs (default 1)
  rate=100M         rate limit each way, bits per second (100M, 100Mbit, 1.5G)
  port-security=off accept any source MAC (default on: only the NIC's MAC)
  mem=256M          guest RAM (M or G)
  cpus=N            vCPUs
  cmd=SCRIPT        the guest's script; must come last (it may hold commas)`

// ParseGuest parses a guest spec (see GuestSpecHelp).
func ParseGuest(spec string) (GuestConfig, error) {
	var g GuestConfig
	rest := strings.TrimSpace(spec)
	for rest != "" {
		var field string
		if strings.HasPrefix(rest, "cmd=") {
			field, rest = rest, ""
		} else {
			field, rest, _ = strings.Cut(rest, ",")
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return g, fmt.Errorf("%q: want KEY=VALUE", field)
		}
		if err := g.set(k, v); err != nil {
			return g, fmt.Errorf("%s=%s: %w", k, v, err)
		}
	}
	if g.Name == "" {
		return g, fmt.Errorf("no name= in %q", spec)
	}
	return g, nil
}

func (g *GuestConfig) set(k, v string) error {
	var err error
	switch k {
	case "name":
		g.Name = v
	case "ip":
		g.Addr, err = netip.ParsePrefix(v)
	case "mac":
		var m vswitch.MAC
		m, err = vswitch.ParseStationMAC(v)
		g.MAC = m
	case "mtu":
		g.MTU, err = strconv.Atoi(v)
	case "vlan":
		g.Mode = vswitch.ModeAccess
		g.PVID, err = vswitch.ParseVID(v)
	case "trunk":
		g.Mode = vswitch.ModeTrunk
		g.Allowed, err = vswitch.ParseVIDs(v)
	case "native":
		g.Native, err = vswitch.ParseVID(v)
	case "vif":
		name, addr, _ := strings.Cut(v, ":")
		i := agentcfg.Iface{Name: name}
		if addr != "" {
			if i.Addr, err = netip.ParsePrefix(addr); err != nil {
				return err
			}
		}
		if _, _, ok := i.VLAN(); !ok {
			return fmt.Errorf("want PARENT.VID[:ADDR/PREFIX]")
		}
		g.Ifaces = append(g.Ifaces, i)
	case "queues":
		g.Queues, err = strconv.Atoi(v)
	case "rate":
		g.Rate, err = units.ParseBitRate(v)
	case "mem":
		g.MemMiB, err = units.ParseMiB(v)
	case "cpus":
		g.CPUs, err = strconv.Atoi(v)
	case "cmd":
		g.Script = v
	case "port-security":
		g.PortSecurity, err = vswitch.ParsePortSecurity(v)
	default:
		return fmt.Errorf("unknown key %q", k)
	}
	return err
}

// ParseConfig reads a lab file: one guest spec per line (see
// GuestSpecHelp), blank lines and lines starting with # ignored. Errors
// name the file and line.
func ParseConfig(r io.Reader, name string) ([]GuestConfig, error) {
	var gs []GuestConfig
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<10)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		g, err := ParseGuest(l)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		gs = append(gs, g)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return gs, nil
}
