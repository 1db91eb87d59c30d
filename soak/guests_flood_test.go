package soak

import (
	"encoding/hex"
	"fmt"
	"sync"

	vswitch "github.com/hvnet/hvnet/switch"
)

// gsFloods is TestSoakGuests' mirror sink: it watches every port's ingress
// for frames the switch would flood (a group destination, or a unicast one
// that is no station's), which would break the exact books (one frame in,
// several out), and keeps the first few to show.
type gsFloods struct {
	known map[[6]byte]bool
	mu    sync.Mutex
	n     int
	first []string
}

var _ vswitch.MirrorSink = (*gsFloods)(nil)

func newGsFloods(stations []gsNode) *gsFloods {
	f := &gsFloods{known: map[[6]byte]bool{}}
	for _, s := range stations {
		f.known[s.mac] = true
	}
	return f
}

func (f *gsFloods) Mirror(port string, dir vswitch.Direction, ts int64, frames []vswitch.Frame) {
	for _, fr := range frames {
		if len(fr.Data) < 14 || f.known[[6]byte(fr.Data[:6])] {
			continue
		}
		f.mu.Lock()
		f.n++
		if len(f.first) < 4 {
			f.first = append(f.first, fmt.Sprintf("%s: %s", port, hex.EncodeToString(fr.Data[:min(len(fr.Data), 42)])))
		}
		f.mu.Unlock()
	}
}

func (f *gsFloods) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%d (first: %v)", f.n, f.first)
}

func (f *gsFloods) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}
