package api

import (
	"net/netip"
	"strconv"
	"strings"

	"hvnet/units"
)

// GuestReporter is implemented by a PortFactory whose ports may be lab
// guests: port answers then show the guest's state.
type GuestReporter interface {
	// Guest returns the state of the guest behind the named port, nil
	// when the port is not a lab guest's.
	Guest(name string) *GuestInfo
}

// MaxGuestMemMiB bounds a lab guest's RAM.
const MaxGuestMemMiB = 64 << 10

// checkGuest validates a lab port's guest; errors name the field.
func checkGuest(g *GuestSpec) *Error {
	if g == nil {
		return badField("guest", "a lab port needs its guest (guest.ip at least)")
	}
	if g.IP == "" {
		return badField("guest.ip", "missing: want eth0's address and prefix, e.g. 10.0.0.1/24")
	}
	if p, err := netip.ParsePrefix(g.IP); err != nil || !p.Addr().Is4() && !p.Addr().Is6() {
		return badField("guest.ip", "%q: want an address and prefix, e.g. 10.0.0.1/24", g.IP)
	}
	if g.MTU != 0 && (g.MTU < 68 || g.MTU > 65535) {
		return badField("guest.mtu", "%d outside 68..65535", g.MTU)
	}
	if g.Mem != "" {
		if _, e := ParseMemMiB("guest.mem", g.Mem); e != nil {
			return e
		}
	}
	if g.CPUs < 0 || g.CPUs > 16 {
		return badField("guest.cpus", "%d outside 1..16", g.CPUs)
	}
	for i, v := range g.VIFs {
		name, addr, _ := strings.Cut(v, ":")
		parent, vid, ok := strings.Cut(name, ".")
		n, err := strconv.Atoi(vid)
		if !ok || parent == "" || err != nil || n < 1 || n > 4094 {
			return badField("guest.vifs["+strconv.Itoa(i)+"]", "%q: want PARENT.VID[:ADDR/PREFIX], VID 1..4094", v)
		}
		if addr != "" {
			if _, err := netip.ParsePrefix(addr); err != nil {
				return badField("guest.vifs["+strconv.Itoa(i)+"]", "%q: %v", v, err)
			}
		}
	}
	return nil
}

// ParseMemMiB parses a guest's RAM size (units.ParseMiB: N MiB, or N with
// K, M, G, T) and checks it is 64 MiB..MaxGuestMemMiB.
func ParseMemMiB(field, s string) (uint64, *Error) {
	n, err := units.ParseMiB(s)
	if err != nil {
		return 0, badField(field, "%v", err)
	}
	if n < 64 || n > MaxGuestMemMiB {
		return 0, badField(field, "%q: want 64M..%dG", s, MaxGuestMemMiB>>10)
	}
	return n, nil
}

// guestInfo returns the state of the guest behind the named port, if the
// factory knows of one.
func (s *Server) guestInfo(name string) *GuestInfo {
	if gr, ok := s.ports.(GuestReporter); ok {
		return gr.Guest(name)
	}
	return nil
}
