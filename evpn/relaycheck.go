package evpn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// badMessage is a message the relay refuses, with the NOTIFICATION it
// answers (RFC 4271 §6).
type badMessage struct {
	code, subcode uint8
	why           string
}

func (e *badMessage) Error() string {
	return fmt.Sprintf("bad message (NOTIFICATION %d/%d): %s", e.code, e.subcode, e.why)
}

// forwardChecked copies the neighbor's messages to GoBGP one by one,
// each checked first. A bad message is answered with a NOTIFICATION,
// counted, and ends the session. It counts the neighbor's routes as they
// come and go (RFC 4486's maximum number of prefixes, kept here rather
// than by GoBGP, whose count of a neighbor's Adj-RIB-In on every UPDATE
// made a burst of n routes cost n²): one route past
// Config.MaxRoutesPerPeer ends the session with a Cease and holds the
// neighbor down for Config.RouteLimitRestart.
//
// It reads through a buffer and writes the checked messages to GoBGP
// through another, flushed whenever the next message is not entirely
// in the read buffer (so that nothing waits while the relay could
// block): a burst of UPDATEs costs a few system calls, not two reads and
// a write per message, and a lone message is forwarded at once.
func (r *relay) forwardChecked(p *relayPeer, nb, g net.Conn) error {
	buf := make([]byte, bgp.BGP_MAX_MESSAGE_LENGTH)
	local := nb.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	routes := map[string]struct{}{} // this session's, by route key
	in := bufio.NewReaderSize(nb, relayBuffer)
	out := bufio.NewWriterSize(g, relayBuffer)
	// The messages checked before a bad one (or the one past the route
	// limit) reach GoBGP, as they would unbuffered.
	defer out.Flush()
	for {
		msg, err := readMessage(in, buf)
		var m *bgp.BGPMessage
		if err == nil {
			m, err = checkMessage(msg, local, p.n.Addr, p.ebgp)
		}
		if err == nil && m != nil {
			if u, ok := m.Body.(*bgp.BGPUpdate); ok && countRoutes(routes, u) > r.cfg.MaxRoutesPerPeer {
				r.routeLimit(p, nb)
				return fmt.Errorf("more than %d routes", r.cfg.MaxRoutesPerPeer)
			}
		}
		var bad *badMessage
		if errors.As(err, &bad) {
			p.rejected.Add(1)
			r.log.Warn("neighbor sent a bad message: session reset", "neighbor", p.n.Addr, "error", bad)
			notif, _ := bgp.NewBGPNotificationMessage(bad.code, bad.subcode, nil).Serialize()
			nb.SetWriteDeadline(time.Now().Add(time.Second))
			nb.Write(notif)
			return err
		}
		if err != nil {
			return err
		}
		if _, err := out.Write(msg); err != nil {
			return err
		}
		if !messageBuffered(in) {
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
}

// relayBuffer is the size of the relay's read and write buffers for a
// neighbor's messages: 16 maximum-size messages.
const relayBuffer = 16 * bgp.BGP_MAX_MESSAGE_LENGTH

// messageBuffered reports whether in holds the whole next message, so
// that reading it will not block.
func messageBuffered(in *bufio.Reader) bool {
	n := in.Buffered()
	if n < bgp.BGP_HEADER_LENGTH {
		return false
	}
	hdr, err := in.Peek(bgp.BGP_HEADER_LENGTH)
	if err != nil {
		return false
	}
	return int(binary.BigEndian.Uint16(hdr[16:18])) <= n
}

// countRoutes applies an UPDATE's EVPN routes to the session's set and
// returns its size. The key is GoBGP's own for a route (RD, type and the
// route's fields, labels aside), so an update of a route replaces it.
func countRoutes(routes map[string]struct{}, u *bgp.BGPUpdate) int {
	for _, a := range u.PathAttributes {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			for _, n := range a.Value {
				routes[n.String()] = struct{}{}
			}
		case *bgp.PathAttributeMpUnreachNLRI:
			for _, n := range a.Value {
				delete(routes, n.String())
			}
		}
	}
	return len(routes)
}

// routeLimit ends a neighbor's session for sending too many routes: a
// Cease NOTIFICATION (RFC 4486: maximum number of prefixes reached), the
// hold-down, the count.
func (r *relay) routeLimit(p *relayPeer, nb net.Conn) {
	notif, _ := bgp.NewBGPNotificationMessage(bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_MAXIMUM_NUMBER_OF_PREFIXES_REACHED, nil).Serialize()
	nb.SetWriteDeadline(time.Now().Add(time.Second))
	nb.Write(notif)
	p.mu.Lock()
	p.heldUntil = time.Now().Add(r.cfg.RouteLimitRestart)
	p.mu.Unlock()
	if r.onLimit != nil {
		r.onLimit(p)
	}
}

// readMessage reads one BGP message into buf and checks its header (RFC
// 4271 §4.1, §6.1): marker all ones, length 19..4096, a known type.
func readMessage(c io.Reader, buf []byte) ([]byte, error) {
	hdr := buf[:bgp.BGP_HEADER_LENGTH]
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	for _, b := range hdr[:16] {
		if b != 0xff {
			return nil, &badMessage{bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED, "marker not all ones"}
		}
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > len(buf) {
		return nil, &badMessage{bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, fmt.Sprintf("length %d", n)}
	}
	if t := hdr[18]; t < bgp.BGP_MSG_OPEN || t > bgp.BGP_MSG_ROUTE_REFRESH {
		return nil, &badMessage{bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, fmt.Sprintf("type %d", t)}
	}
	if _, err := io.ReadFull(c, buf[bgp.BGP_HEADER_LENGTH:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// checkMessage parses msg with GoBGP's parser and, for an UPDATE, runs
// GoBGP's validator as GoBGP would (EVPN is the only family), recovering
// from their panics. Anything short of a clean pass is refused: GoBGP
// never has to repair a message.
func checkMessage(msg []byte, local, remote netip.Addr, ebgp bool) (m *bgp.BGPMessage, err error) {
	defer func() {
		if v := recover(); v != nil {
			m, err = nil, &badMessage{bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, fmt.Sprintf("GoBGP's parser panicked: %v", v)}
		}
	}()
	hd := &bgp.BGPHeader{}
	if err := hd.DecodeFromBytes(msg); err != nil {
		return nil, asBad(err, bgp.BGP_ERROR_MESSAGE_HEADER_ERROR)
	}
	m, err = bgp.ParseBGPBody(hd, msg[bgp.BGP_HEADER_LENGTH:])
	if err != nil || m == nil {
		return nil, asBad(err, errorCodeFor(hd.Type))
	}
	switch body := m.Body.(type) {
	case *bgp.BGPKeepAlive:
		if len(msg) != bgp.BGP_HEADER_LENGTH {
			return nil, &badMessage{bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, "KEEPALIVE with a body"}
		}
	case *bgp.BGPUpdate:
		rfs := map[bgp.RouteFamily]bgp.BGPAddPathMode{bgp.RF_EVPN: bgp.BGP_ADD_PATH_NONE}
		// GoBGP allows loopback next hops only on a session between
		// loopback addresses: judge by the real ones, not the relay's.
		loop := local.Is4() && remote.Is4() && local.IsLoopback() && remote.IsLoopback()
		if ok, err := bgp.ValidateUpdateMsg(body, rfs, ebgp, false, loop); !ok {
			return nil, asBad(err, bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR)
		}
	}
	return m, nil
}

// errorCodeFor is the NOTIFICATION error code for a message type.
func errorCodeFor(t uint8) uint8 {
	switch t {
	case bgp.BGP_MSG_OPEN:
		return bgp.BGP_ERROR_OPEN_MESSAGE_ERROR
	case bgp.BGP_MSG_UPDATE:
		return bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR
	case bgp.BGP_MSG_ROUTE_REFRESH:
		return bgp.BGP_ERROR_ROUTE_REFRESH_MESSAGE_ERROR
	}
	return bgp.BGP_ERROR_MESSAGE_HEADER_ERROR
}

// asBad turns a GoBGP parse or validation error into a badMessage, with
// GoBGP's code when it gives one.
func asBad(err error, code uint8) *badMessage {
	b := &badMessage{code: code, why: fmt.Sprint(err)}
	var me *bgp.MessageError
	if errors.As(err, &me) && me.TypeCode != 0 {
		b.code, b.subcode = me.TypeCode, me.SubTypeCode
	}
	return b
}
