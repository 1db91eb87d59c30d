package api

import "github.com/hvnet/hvnet/units"

// GuestReporter is implemented by a PortFactory whose ports may be lab
// guests: port answers then show the guest's state.
type GuestReporter interface {
	// Guest returns the state of the guest behind the named port, nil
	// when the port is not a lab guest's.
	Guest(name string) *GuestInfo
}

// MaxGuestMemMiB bounds a lab guest's RAM.
const MaxGuestMemMiB = 64 << 10

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
	if n%2 != 0 { // the VMM maps guest memory in 2 MiB pages
		return 0, badField(field, "%q: want an even number of MiB", s)
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
