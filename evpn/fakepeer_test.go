package evpn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// fakePeer is a hand-driven BGP neighbor: the test writes what it likes
// on the connection.
type fakePeer struct {
	t    testing.TB
	conn *net.TCPConn
	wmu  sync.Mutex // the test and the keepalive goroutine write
}

// dialFrom connects from local to remote.
func dialFrom(t testing.TB, local netip.Addr, remote netip.AddrPort) *fakePeer {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", remote.String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", remote, local, err)
	}
	f := &fakePeer{t: t, conn: c.(*net.TCPConn)}
	t.Cleanup(func() { f.conn.Close() })
	return f
}

func (f *fakePeer) write(b []byte) {
	f.t.Helper()
	if err := f.tryWrite(b); err != nil {
		f.t.Fatalf("fake peer write: %v", err)
	}
}

func (f *fakePeer) tryWrite(b []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := f.conn.Write(b)
	return err
}

func (f *fakePeer) send(m *bgp.BGPMessage) {
	f.t.Helper()
	b, err := m.Serialize()
	if err != nil {
		f.t.Fatalf("serialize %T: %v", m.Body, err)
	}
	f.write(b)
}

// read returns the next BGP message, io.EOF when the speaker closed the
// connection, or a timeout error.
func (f *fakePeer) read(timeout time.Duration) (*bgp.BGPMessage, error) {
	f.conn.SetReadDeadline(time.Now().Add(timeout))
	hdr := make([]byte, bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(f.conn, hdr); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
			err = io.EOF
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > bgp.BGP_MAX_MESSAGE_LENGTH {
		return nil, fmt.Errorf("speaker sent a bad length %d", n)
	}
	body := make([]byte, n-bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(f.conn, body); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return bgp.ParseBGPMessage(append(hdr, body...))
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// readUntil reads until a message of type typ, a NOTIFICATION (returned
// as an error) or the end of the connection.
func (f *fakePeer) readUntil(typ uint8, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := f.read(time.Until(deadline))
		if err != nil {
			return err
		}
		if m.Header.Type == typ {
			return nil
		}
		if n, ok := m.Body.(*bgp.BGPNotification); ok {
			return fmt.Errorf("NOTIFICATION code %d subcode %d", n.ErrorCode, n.ErrorSubcode)
		}
	}
}

// waitClosed waits for the speaker to close the connection and returns
// the NOTIFICATION it sent first, if any.
func (f *fakePeer) waitClosed(timeout time.Duration) (*bgp.BGPNotification, error) {
	deadline := time.Now().Add(timeout)
	var notif *bgp.BGPNotification
	for {
		m, err := f.read(time.Until(deadline))
		if err == io.EOF {
			return notif, nil
		}
		if err != nil {
			return notif, err
		}
		if n, ok := m.Body.(*bgp.BGPNotification); ok {
			notif = n
		}
	}
}

// handshake brings the session up as AS asn, router ID id, with only the
// EVPN family: it reads the speaker's OPEN, answers with its own and a
// KEEPALIVE, and waits for the speaker's KEEPALIVE. Then it sends a
// KEEPALIVE every second until the connection ends. (Hold time 0 would
// spare them, but GoBGP v3 then sets an immediate write deadline and
// cannot send an UPDATE.)
func (f *fakePeer) handshake(asn uint32, id string) error {
	if err := f.readUntil(bgp.BGP_MSG_OPEN, 15*time.Second); err != nil {
		return fmt.Errorf("waiting for the speaker's OPEN: %w", err)
	}
	caps := []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_EVPN), bgp.NewCapFourOctetASNumber(asn)}
	f.send(bgp.NewBGPOpenMessage(uint16(asn), 9, id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)}))
	f.send(bgp.NewBGPKeepAliveMessage())
	if err := f.readUntil(bgp.BGP_MSG_KEEPALIVE, 15*time.Second); err != nil {
		return fmt.Errorf("waiting for the speaker's KEEPALIVE: %w", err)
	}
	ka, _ := bgp.NewBGPKeepAliveMessage().Serialize()
	go func() {
		for f.tryWrite(ka) == nil {
			time.Sleep(time.Second)
		}
	}()
	return nil
}

// fakeMACUpdate is a well-formed type-2 UPDATE from the fake peer: next
// hop vtep, RT 65000:rtVNI, label vni.
func fakeMACUpdate(vtep netip.Addr, vni, rtVNI uint32, mac string) *bgp.BGPMessage {
	rd := bgp.NewRouteDistinguisherIPAddressAS("10.0.0.3", 1)
	nlri := bgp.NewEVPNMacIPAdvertisementRoute(rd, bgp.EthernetSegmentIdentifier{Value: make([]byte, 9)}, 0, mac, "", []uint32{vni})
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0),
		bgp.NewPathAttributeAsPath(nil),
		bgp.NewPathAttributeLocalPref(100),
		bgp.NewPathAttributeMpReachNLRI(vtep.String(), []bgp.AddrPrefixInterface{nlri}),
		bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
			bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 65000, rtVNI, true),
			bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN),
		}),
	}
	return bgp.NewBGPUpdateMessage(nil, attrs, nil)
}

// malformedEVPNUpdate is an UPDATE whose MP_REACH_NLRI holds a type-2
// route claiming 255 bytes and carrying 6.
func malformedEVPNUpdate() []byte {
	attrs := []byte{
		0x40, 1, 1, 0, // ORIGIN IGP
		0x40, 2, 0, // AS_PATH empty
		0x40, 5, 4, 0, 0, 0, 100, // LOCAL_PREF
	}
	mp := []byte{0, 25, 70, 4, 192, 0, 2, 3, 0, // AFI, SAFI, next hop, reserved
		2, 255, 1, 2, 3, 4, 5, 6} // route type 2, length 255
	attrs = append(attrs, 0x80, 14, byte(len(mp)))
	attrs = append(attrs, mp...)
	body := []byte{0, 0, byte(len(attrs) >> 8), byte(len(attrs))}
	body = append(body, attrs...)
	return bgpFrame(bgp.BGP_MSG_UPDATE, body)
}

// bgpFrame puts a BGP header (RFC 4271 §4.1) on body.
func bgpFrame(typ uint8, body []byte) []byte {
	b := make([]byte, bgp.BGP_HEADER_LENGTH, bgp.BGP_HEADER_LENGTH+len(body))
	for i := 0; i < 16; i++ {
		b[i] = 0xff
	}
	binary.BigEndian.PutUint16(b[16:], uint16(bgp.BGP_HEADER_LENGTH+len(body)))
	b[18] = typ
	return append(b, body...)
}

// connectFake establishes a session from fake to target, retrying while
// GoBGP still holds the neighbor idle after the last reset.
func connectFake(t *testing.T, s *Speaker, fake netip.Addr, target netip.AddrPort) *fakePeer {
	t.Helper()
	deadline := time.Now().Add(upTimeout)
	for {
		waitFor(t, time.Until(deadline), "fake neighbor's session to be active", func() bool { return neighbor(s, fake).State == "active" })
		f := dialFrom(t, fake, target)
		err := f.handshake(65000, "10.0.0.33")
		if err == nil {
			waitFor(t, time.Until(deadline), "fake neighbor established", established(s, fake))
			return f
		}
		f.conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("fake neighbor handshake: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// attack throws hostile input at speaker s, reachable at target, from
// fake (a configured neighbor of s in AS 65000) and from stranger (not a
// neighbor), and checks that each attack stays on its own connection:
// s's session with good (an established neighbor) must not flap, and
// s's handler r must hear nothing of the hostile routes.
func attack(t *testing.T, s *Speaker, r *recorder, target netip.AddrPort, fake, stranger, good netip.Addr) {
	before := neighbor(s, good)
	if before.State != "established" {
		t.Fatalf("session with %s not established before the attacks: %+v", good, before)
	}
	fakeVTEP := netip.MustParseAddr("192.0.2.33")

	// 1. A stranger's connection is closed at once, whatever it sends.
	st := dialFrom(t, stranger, target)
	st.write([]byte("GET / HTTP/1.0\r\n\r\n"))
	if n, err := st.waitClosed(5 * time.Second); err != nil || n != nil {
		t.Errorf("stranger %s: speaker sent %v, %v; want the connection closed without a word", stranger, n, err)
	}

	// 2. A configured neighbor sending junk: NOTIFICATION (message header
	// error, RFC 4271 §6.1), connection closed.
	waitFor(t, upTimeout, "fake neighbor's session to be active", func() bool { return neighbor(s, fake).State == "active" })
	junk := dialFrom(t, fake, target)
	junk.write(make([]byte, 64))
	n, err := junk.waitClosed(5 * time.Second)
	if err != nil || n == nil || n.ErrorCode != bgp.BGP_ERROR_MESSAGE_HEADER_ERROR {
		t.Errorf("junk from %s: NOTIFICATION %+v, %v; want a message header error and the connection closed", fake, n, err)
	}

	// 3. The fake neighbor gets in properly (after GoBGP's 5 s idle
	// hold), then sends well-formed but hostile routes, then a good one.
	f := connectFake(t, s, fake, target)
	f.send(fakeMACUpdate(fakeVTEP, 100, 100, "ff:ff:ff:ff:ff:ff"))   // broadcast MAC
	f.send(fakeMACUpdate(fakeVTEP, 0, 0, "02:00:00:00:66:01"))       // no VNI anywhere
	f.send(fakeMACUpdate(s.cfg.VTEP, 100, 100, "02:00:00:00:66:02")) // claims our VTEP
	f.send(fakeMACUpdate(fakeVTEP, 100, 100, "02:00:00:00:66:03"))   // fine
	good3 := [6]byte{2, 0, 0, 0, 0x66, 3}
	waitFor(t, routeTimeout, "the fake neighbor's good route", r.hasMAC(100, good3, netip.Addr{}, fakeVTEP, 0), r)
	for _, bad := range [][6]byte{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {2, 0, 0, 0, 0x66, 1}, {2, 0, 0, 0, 0x66, 2}} {
		for _, vni := range []uint32{0, 100} {
			if m, ok := r.mac(vni, bad, netip.Addr{}); ok {
				t.Errorf("handler reported hostile route %x in VNI %d: %+v", bad, vni, m)
			}
		}
	}

	// 4. A message of an unknown type (RFC 4271 §6.1: bad message type):
	// NOTIFICATION, reset; the neighbor's routes go with the session.
	f.write(bgpFrame(9, []byte{1, 2, 3}))
	if n, err := f.waitClosed(5 * time.Second); err != nil || n == nil || n.ErrorCode != bgp.BGP_ERROR_MESSAGE_HEADER_ERROR {
		t.Errorf("message type 9: NOTIFICATION %+v, %v; want a message header error and the connection closed", n, err)
	}
	waitFor(t, routeTimeout, "the fake neighbor's routes to go with its session", r.noMAC(100, good3, netip.Addr{}), r)

	// 5. A malformed EVPN NLRI: GoBGP would disable the family (RFC 7606
	// §5.3) and keep the neighbor's routes; the relay resets the session
	// instead, so that they go.
	f = connectFake(t, s, fake, target)
	f.send(fakeMACUpdate(fakeVTEP, 100, 100, "02:00:00:00:66:03"))
	waitFor(t, routeTimeout, "the fake neighbor's good route again", r.hasMAC(100, good3, netip.Addr{}, fakeVTEP, 0), r)
	f.write(malformedEVPNUpdate())
	if n, err := f.waitClosed(5 * time.Second); err != nil || n == nil || n.ErrorCode != bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR {
		t.Errorf("malformed NLRI: NOTIFICATION %+v, %v; want an UPDATE message error and the connection closed", n, err)
	}
	waitFor(t, routeTimeout, "the fake neighbor's routes to go after its malformed UPDATE", r.noMAC(100, good3, netip.Addr{}), r)

	if n := neighbor(s, fake).BadMessages; n != 3 {
		t.Errorf("fake neighbor's BadMessages = %d; want 3 (junk, type 9, bad NLRI)", n)
	}
	after := neighbor(s, good)
	if after.State != "established" || after.Flops != before.Flops || after.Uptime < before.Uptime {
		t.Errorf("session with %s before the attacks %+v, after %+v; want it untouched", good, before, after)
	}
}
