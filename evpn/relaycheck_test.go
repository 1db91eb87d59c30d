package evpn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// readOne feeds raw to readMessage and checkMessage as the relay does.
func readOne(t *testing.T, raw []byte) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		a.Write(raw)
		a.Close()
	}()
	msg, err := readMessage(b, make([]byte, bgp.BGP_MAX_MESSAGE_LENGTH))
	if err != nil {
		return err
	}
	_, err = checkMessage(msg, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), false)
	return err
}

func serialize(t *testing.T, m *bgp.BGPMessage) []byte {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRelayCheck(t *testing.T) {
	vtep := netip.MustParseAddr("192.0.2.9")
	open := bgp.NewBGPOpenMessage(65000, 90, "10.0.0.2", []bgp.OptionParameterInterface{
		bgp.NewOptionParameterCapability([]bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_EVPN)})})
	badMarker := serialize(t, bgp.NewBGPKeepAliveMessage())
	badMarker[3] = 0
	longLen := bgpFrame(bgp.BGP_MSG_KEEPALIVE, nil)
	longLen[16], longLen[17] = 0x10, 0x01 // 4097
	shortOpen := bgpFrame(bgp.BGP_MSG_OPEN, []byte{4, 0xfd})
	// An UPDATE with a well-known attribute of an unknown type code:
	// flags 0x40 (transitive, well-known), type 99.
	unknownWellKnown := bgpFrame(bgp.BGP_MSG_UPDATE, []byte{0, 0, 0, 4, 0x40, 99, 1, 0})
	// Attribute lengths that do not add up (GoBGP would repair it).
	badAttrLen := bgpFrame(bgp.BGP_MSG_UPDATE, []byte{0, 0, 0, 4, 0x40, 1, 5, 0})
	// An IPv4 unicast route: a family the session did not negotiate.
	ipv4 := serialize(t, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil), bgp.NewPathAttributeNextHop("10.0.0.2"),
	}, []*bgp.IPAddrPrefix{bgp.NewIPAddrPrefix(24, "10.9.0.0")}))
	// No ORIGIN: GoBGP would treat it as withdraw; the relay refuses it.
	noOrigin := fakeMACUpdate(vtep, 100, 100, "02:00:00:00:00:01")
	noOrigin.Body.(*bgp.BGPUpdate).PathAttributes = noOrigin.Body.(*bgp.BGPUpdate).PathAttributes[1:]

	for _, tc := range []struct {
		name string
		raw  []byte
		code uint8 // 0: must pass; 0xfe: any refusal; 0xff: any error
	}{
		{"KEEPALIVE", serialize(t, bgp.NewBGPKeepAliveMessage()), 0},
		{"OPEN", serialize(t, open), 0},
		{"EVPN UPDATE", serialize(t, fakeMACUpdate(vtep, 100, 100, "02:00:00:00:00:01")), 0},
		{"End-of-RIB", serialize(t, bgp.NewEndOfRib(bgp.RF_EVPN)), 0},
		{"NOTIFICATION", serialize(t, bgp.NewBGPNotificationMessage(6, 2, nil)), 0},
		{"marker", badMarker, bgp.BGP_ERROR_MESSAGE_HEADER_ERROR},
		{"length below 19", bgpFrame(bgp.BGP_MSG_KEEPALIVE, nil)[:16], 0xff}, // EOF mid-header
		{"length 4097", longLen, bgp.BGP_ERROR_MESSAGE_HEADER_ERROR},
		{"type 9", bgpFrame(9, nil), bgp.BGP_ERROR_MESSAGE_HEADER_ERROR},
		{"KEEPALIVE with a body", bgpFrame(bgp.BGP_MSG_KEEPALIVE, []byte{0}), bgp.BGP_ERROR_MESSAGE_HEADER_ERROR},
		{"short OPEN", shortOpen, 0xfe}, // GoBGP says header error, bad length
		{"malformed EVPN NLRI", malformedEVPNUpdate(), bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR},
		{"unknown well-known attribute", unknownWellKnown, bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR},
		{"attribute length", badAttrLen, bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR},
		{"IPv4 unicast NLRI", ipv4, 0xfe},
		{"no ORIGIN", serialize(t, noOrigin), bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := readOne(t, tc.raw)
			var bad *badMessage
			switch {
			case tc.code == 0 && err != nil:
				t.Errorf("refused a good message: %v", err)
			case tc.code == 0xff && err == nil:
				t.Errorf("truncated header passed")
			case tc.code == 0xfe && !errors.As(err, &bad):
				t.Errorf("= %v; want a refusal", err)
			case tc.code != 0 && tc.code < 0xfe && (!errors.As(err, &bad) || bad.code != tc.code):
				t.Errorf("= %v; want a refusal with NOTIFICATION code %d", err, tc.code)
			}
		})
	}
}

// The relay's route count: a route advertised again (another label, the
// same route) counts once, a withdrawal takes it away, other MACs add.
func TestCountRoutes(t *testing.T) {
	vtep := netip.MustParseAddr("10.0.0.3")
	routes := map[string]struct{}{}
	update := func(m *bgp.BGPMessage) int { return countRoutes(routes, m.Body.(*bgp.BGPUpdate)) }
	if n := update(fakeMACUpdate(vtep, 100, 100, "02:00:00:00:00:01")); n != 1 {
		t.Fatalf("one route: %d", n)
	}
	if n := update(fakeMACUpdate(vtep, 200, 100, "02:00:00:00:00:01")); n != 1 {
		t.Errorf("the same route with another label: %d, want 1", n)
	}
	if n := update(fakeMACUpdate(vtep, 100, 100, "02:00:00:00:00:02")); n != 2 {
		t.Errorf("a second MAC: %d", n)
	}
	rd := bgp.NewRouteDistinguisherIPAddressAS("10.0.0.3", 1)
	nlri := bgp.NewEVPNMacIPAdvertisementRoute(rd, bgp.EthernetSegmentIdentifier{Value: make([]byte, 9)}, 0, "02:00:00:00:00:01", "", []uint32{100})
	wd := bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{bgp.NewPathAttributeMpUnreachNLRI([]bgp.AddrPrefixInterface{nlri})}, nil)
	if n := update(wd); n != 1 {
		t.Errorf("after a withdrawal: %d, want 1", n)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = l.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// The relay forwards a burst of messages whole and in order, and a lone
// message at once, though it writes to GoBGP through a buffer.
func TestRelayForwardsBuffered(t *testing.T) {
	loopbackUp(t)
	neighbor, nb := tcpPair(t) // the neighbor's end, the relay's
	g, gobgp := tcpPair(t)     // the relay's end to GoBGP, GoBGP's
	r := &relay{log: testLogger(t, "relay"), cfg: &Config{MaxRoutesPerPeer: 1000}}
	p := &relayPeer{n: Neighbor{Addr: netip.MustParseAddr("127.0.0.1")}}
	done := make(chan error, 1)
	go func() { done <- r.forwardChecked(p, nb, g) }()

	ka := serialize(t, bgp.NewBGPKeepAliveMessage())
	var burst []byte
	for i := range 200 {
		m := fakeMACUpdate(netip.MustParseAddr("192.0.2.9"), 100, 100, fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff))
		burst = append(burst, serialize(t, m)...)
	}
	burst = append(burst, ka...)
	if _, err := neighbor.Write(burst); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(burst))
	// Reads that must succeed wait up to 30 s (they end as soon as the
	// bytes come; a loaded machine under -race can hold a goroutine for
	// seconds); a message held back for more data would never come.
	gobgp.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(gobgp, got); err != nil {
		t.Fatalf("the burst: %v", err)
	}
	if !bytes.Equal(got, burst) {
		t.Fatal("the burst came out changed")
	}
	// A lone KEEPALIVE is not held back for more.
	if _, err := neighbor.Write(ka); err != nil {
		t.Fatal(err)
	}
	gobgp.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(gobgp, got[:len(ka)]); err != nil {
		t.Fatalf("a lone keepalive: %v", err)
	}
	// Half a message is not forwarded, the rest completes it.
	neighbor.Write(ka[:10])
	gobgp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := gobgp.Read(got); err == nil {
		t.Fatalf("%d bytes of half a message forwarded", n)
	}
	neighbor.Write(ka[10:])
	gobgp.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(gobgp, got[:len(ka)]); err != nil || !bytes.Equal(got[:len(ka)], ka) {
		t.Fatalf("the completed message: %v", err)
	}
	neighbor.Close()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Errorf("forwardChecked ended with %v; want EOF", err)
	}
}
