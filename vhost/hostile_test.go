package vhost

import (
	"bytes"
	"path/filepath"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/proto"
)

// Hostile vhost-user frontends: one that stalls in the middle of
// a message, one that closes with its rings full of work. Garbage is
// TestMalformed's; FuzzSession fuzzes whole sessions. In each case only
// the hostile port is affected: two other ports keep forwarding.

// hostileBed is ports a and b with negotiated frontends, and a victim
// port whose session starts and ends are observed.
type hostileBed struct {
	a, b   *guest
	victim PortConfig
	port   *Port // the victim's
	ev     *events
	seq    byte
}

func newHostileBed(t *testing.T) *hostileBed {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	hb := &hostileBed{ev: newEvents()}
	hb.victim = PortConfig{Port: vswitch.PortConfig{Name: "victim", PVID: 1}, Socket: filepath.Join(t.TempDir(), "v.sock")}
	hb.ev.hook(&hb.victim)
	hb.port = startPort(t, sw, hb.victim)
	hb.a, hb.b = dialGuest(t, sockA), dialGuest(t, sockB)
	hb.a.mustNegotiate()
	hb.b.mustNegotiate()
	return hb
}

// flows checks that a frame from a still reaches b.
func (hb *hostileBed) flows(t *testing.T, when string) {
	t.Helper()
	hb.seq++
	hb.b.postRx(1)
	f := ethFrame(0xff, 1, hb.seq)
	hb.a.send(f)
	for {
		got := hb.b.recv(1)[0]
		if got[11] == 3 { // the victim's, sent before it died
			hb.b.postRx(1)
			continue
		}
		if !bytes.Equal(got, f) {
			t.Fatalf("%s: b received % x, want % x", when, got, f)
		}
		return
	}
}

// takesNewFrontend checks that the victim's socket takes a well-behaved
// frontend after whatever happened to it, and that it receives a's frames.
func (hb *hostileBed) takesNewFrontend(t *testing.T, when string) {
	t.Helper()
	g := dialGuest(t, hb.victim.Socket)
	waitFor(t, hb.ev.up, "session start")
	g.mustNegotiate()
	g.postRx(4)
	hb.seq++
	f := ethFrame(0xff, 1, hb.seq)
	hb.b.postRx(1)
	hb.a.send(f)
	if got := g.recv(1); !bytes.Equal(got[0], f) {
		t.Fatalf("victim %s received % x, want % x", when, got[0], f)
	}
	hb.b.recv(1)
}

// A frontend that stops in the middle of a message (a partial header, or a
// header promising more payload than it sends) blocks only its own session
// goroutine: the other ports forward meanwhile, the victim's session ends
// when the frontend goes, and a new frontend on the same socket works.
func TestStalledFrontend(t *testing.T) {
	hb := newHostileBed(t)
	var hdr [proto.HeaderSize]byte
	proto.Header{Request: proto.SetFeatures, Flags: proto.Version, Size: 8}.Encode(hdr[:])
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"half a header", hdr[:proto.HeaderSize/2]},
		{"header without its payload", hdr[:]},
		{"header and part of the payload", append(hdr[:], 1, 2, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := dialGuest(t, hb.victim.Socket)
			waitFor(t, hb.ev.up, "session start")
			if err := g.f.Conn().WriteRaw(tc.raw); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				hb.flows(t, tc.name+" round "+string(rune('0'+i)))
			}
			g.close()
			waitFor(t, hb.ev.down, "session end after the stalled frontend closed")
			hb.flows(t, "after "+tc.name)
		})
	}
	hb.takesNewFrontend(t, "after the stalls")
}

// A frontend that closes with transmit chains not yet used and receive
// buffers posted: its session ends, the other ports keep forwarding (also
// frames flooded toward the dead port), and the port takes a new frontend.
func TestCloseWithRingsInFlight(t *testing.T) {
	hb := newHostileBed(t)
	for round := range 5 {
		g := dialGuest(t, hb.victim.Socket)
		waitFor(t, hb.ev.up, "session start")
		g.mustNegotiate()
		g.postRx(qSize / 2)
		burst := make([][]byte, qSize/2)
		for i := range burst {
			burst[i] = ethFrame(0xff, 3, byte(i))
		}
		g.send(burst...) // kicked, not waited for
		g.close()
		waitFor(t, hb.ev.down, "session end")
		// Flooded frames toward the victim's dead port must not stall a.
		hb.flows(t, "after close "+string(rune('0'+round)))
	}
}
