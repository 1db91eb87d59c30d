package evpn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"golang.org/x/sys/unix"
)

// The relay stands between the neighbors and GoBGP, which never touches
// a neighbor's socket. GoBGP v3.37 crashes the whole process on a message
// of unknown type from a configured neighbor, even before its OPEN (nil
// dereference in fsmHandler.handlingError, osrg/gobgp#3325, fixed in v4
// only; TestHostileNeighbors sends one); its RFC 7606 repair paths have had
// more such bugs (GHSA-7235-89m6-f4px and GHSA-p3w2-64xm-833j list v3 as
// affected), and when it disables a family for a malformed MP_REACH_NLRI
// it keeps the neighbor's routes of that family. So the relay reads every
// message a neighbor sends, checks it with GoBGP's own parser and
// validator (under recover) and forwards only messages that pass cleanly:
// GoBGP never has to repair one. On anything else it sends the neighbor a
// NOTIFICATION and ends that session alone. It forwards what GoBGP sends
// as it is.
//
// GoBGP does not listen at all: it only dials, from the internal
// loopback address inner, each neighbor under an alias 127.B.1.i, where
// the relay accepts the connection and joins it to the neighbor: to a
// connection the neighbor opened to the public port, or to one the relay
// opens to the neighbor (at most once per ConnectRetry). GoBGP's
// connection waits (in OpenSent, to GoBGP; Neighbors reports "active")
// for whichever comes first; a neighbor's connection that finds none
// waiting waits for GoBGP's next one. So there is no GoBGP port that a
// local process could reach; the aliases' listeners take only GoBGP's
// connections, signed with TCP MD5 (RFC 2385) under a random key per
// Speaker (where the kernel lacks TCP MD5 the relay says so and checks
// only the source address).
type relay struct {
	log   hclog.Logger
	cfg   *Config
	inner netip.Addr // GoBGP's address
	key   string     // TCP MD5 key of the internal hop; "" if unsupported
	peers []*relayPeer
	byIP  map[netip.Addr]*relayPeer // by neighbor address
	byAls map[netip.Addr]*relayPeer // by alias

	ctx    context.Context // cancelled by close: ends dials in progress
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	// onLimit is told of a neighbor cut for sending too many routes.
	onLimit func(p *relayPeer)
}

// relayPeer is one neighbor as the relay knows it.
type relayPeer struct {
	n        Neighbor
	alias    netip.Addr
	aliasLn  net.Listener // where GoBGP dials the neighbor
	ebgp     bool
	rejected atomic.Uint64 // sessions ended for a bad message

	mu       sync.Mutex
	pending  net.Conn      // the neighbor's connection, waiting for GoBGP's
	waiting  net.Conn      // GoBGP's connection, waiting for the neighbor's
	unwait   chan struct{} // closed when waiting is taken or replaced
	lastDial time.Time     // the relay's last connection attempt to it
	// heldUntil: cut for sending too many routes, the neighbor gets no
	// session before then.
	heldUntil time.Time
}

// held reports whether the neighbor is held down after a route-limit cut.
func (p *relayPeer) held() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().Before(p.heldUntil)
}

// maxNeighbors bounds the neighbors: their aliases fill 127.B.1.1-254.
const maxNeighbors = 254

// relayBlocks hands each Speaker of the process its own 127.B.0.0/16.
var relayBlocks atomic.Uint32

// newRelay opens the relay's listeners: one per neighbor alias and the
// public one (unless cfg.ListenPort is -1).
func newRelay(cfg *Config, log hclog.Logger) (*relay, error) {
	b := byte(100 + relayBlocks.Add(1)%100)
	r := &relay{
		log:   log,
		cfg:   cfg,
		inner: netip.AddrFrom4([4]byte{127, b, 0, 1}),
		byIP:  make(map[netip.Addr]*relayPeer),
		byAls: make(map[netip.Addr]*relayPeer),
		conns: make(map[net.Conn]struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	ok := false
	var err error
	defer func() {
		if !ok {
			r.close()
		}
	}()
	if r.key, err = md5Key(); err != nil {
		log.Warn("no TCP MD5 on the internal hop from GoBGP: local processes could pose as GoBGP to the relay", "error", err)
	}
	for i, n := range cfg.Neighbors {
		p := &relayPeer{n: n, alias: netip.AddrFrom4([4]byte{127, b, 1, byte(i + 1)})}
		p.ebgp = n.ASN != 0 && n.ASN != cfg.ASN
		// Plain TCP: Go listens with MPTCP by default, which has no
		// TCP MD5.
		lc := net.ListenConfig{Control: r.md5Control}
		lc.SetMultipathTCP(false)
		if p.aliasLn, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(p.alias, 0).String()); err != nil {
			return nil, fmt.Errorf("evpn: relay for neighbor %s: listen on %s (is lo up?): %w", n.Addr, p.alias, err)
		}
		r.lns = append(r.lns, p.aliasLn)
		r.peers = append(r.peers, p)
		r.byIP[n.Addr] = p
		r.byAls[p.alias] = p
	}
	if cfg.ListenPort >= 0 {
		port := cfg.ListenPort
		if port == 0 {
			port = bgp.BGP_PORT
		}
		addr := fmt.Sprintf(":%d", port)
		if cfg.LocalAddr.IsValid() {
			addr = netip.AddrPortFrom(cfg.LocalAddr, uint16(port)).String()
		}
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		pub, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("evpn: listen on %s: %w", addr, err)
		}
		r.lns = append(r.lns, pub)
		r.wg.Add(1)
		go r.acceptPublic(pub)
	}
	for _, p := range r.peers {
		r.wg.Add(1)
		go r.acceptGoBGP(p)
	}
	ok = true
	return r, nil
}

// aliasPort is where GoBGP dials neighbor p.
func (p *relayPeer) aliasPort() uint16 { return uint16(p.aliasLn.Addr().(*net.TCPAddr).Port) }

// realAddr maps an address GoBGP printed back to the neighbor's.
func (r *relay) realAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	if p := r.byAls[a]; p != nil {
		return p.n.Addr, true
	}
	return a, false
}

// track registers a connection to be closed by close; false if closed.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// close closes the listeners and every relayed connection and waits for
// the relay's goroutines. Sessions GoBGP has already ended get a moment
// to pass on GoBGP's last words (the Cease NOTIFICATION) first.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	for _, l := range r.lns {
		l.Close()
	}
	for _, p := range r.peers {
		p.mu.Lock()
		for _, c := range []net.Conn{p.pending, p.takeWaiting()} {
			if c != nil {
				c.Close()
			}
		}
		p.pending = nil
		p.mu.Unlock()
	}
	r.mu.Unlock()
	r.cancel()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(2 * time.Second):
	}
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	<-done
}

// acceptPublic takes the neighbors' connections: from a configured
// neighbor, joined to GoBGP's connection if one waits, else kept pending
// until GoBGP dials (a newer one replaces an older); from anyone else,
// closed.
func (r *relay) acceptPublic(l net.Listener) {
	defer r.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Error("accept BGP connections", "error", err)
			}
			return
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		p := r.byIP[from]
		if p == nil {
			r.log.Warn("connection from an address that is not a neighbor: closed", "from", c.RemoteAddr())
			c.Close()
			continue
		}
		if p.held() {
			r.log.Debug("connection from a neighbor held down for its route limit: closed", "neighbor", p.n.Addr)
			c.Close()
			continue
		}
		if !r.track(c) {
			return
		}
		p.mu.Lock()
		g, old := p.takeWaiting(), p.pending
		p.pending = nil
		if g == nil {
			p.pending = c
		}
		p.mu.Unlock()
		if old != nil {
			r.untrack(old)
		}
		if g != nil {
			r.join(p, c, g)
		}
	}
}

// acceptGoBGP takes GoBGP's connections to a neighbor's alias: joined to
// the neighbor's pending connection if there is one, else left waiting
// for one, or for the relay's next attempt to connect to the neighbor.
func (r *relay) acceptGoBGP(p *relayPeer) {
	defer r.wg.Done()
	for {
		g, err := p.aliasLn.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Error("accept GoBGP's connections", "neighbor", p.n.Addr, "error", err)
			}
			return
		}
		if from := g.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); from != r.inner {
			r.log.Warn("connection to a neighbor's relay not from GoBGP: closed", "neighbor", p.n.Addr, "from", from)
			g.Close()
			continue
		}
		if !r.track(g) {
			return
		}
		p.mu.Lock()
		c, old := p.pending, p.takeWaiting()
		p.pending = nil
		var unwait chan struct{}
		if c == nil {
			unwait = make(chan struct{})
			p.waiting, p.unwait = g, unwait
		}
		p.mu.Unlock()
		if old != nil {
			r.untrack(old)
		}
		if c != nil {
			r.join(p, c, g)
			continue
		}
		r.wg.Add(1)
		go r.await(p, g, unwait)
	}
}

// await connects to the neighbor for GoBGP's waiting connection g, at
// most once per ConnectRetry, until it succeeds or the neighbor's own
// connection (acceptPublic) or a newer one of GoBGP's takes g's place
// (unwait closes).
func (r *relay) await(p *relayPeer, g net.Conn, unwait chan struct{}) {
	defer r.wg.Done()
	for {
		select {
		case <-unwait:
			return
		default:
		}
		p.mu.Lock()
		wait := max(time.Until(p.lastDial.Add(r.connectRetry())), time.Until(p.heldUntil))
		if wait <= 0 {
			// Jitter (RFC 4271 §10): the next attempt comes after 75 to
			// 100 % of ConnectRetry. Without it two relays that dialled
			// each other at once (hosts started together) kept dialling in
			// step: each joined GoBGP to the other's connection, closed its
			// own, and so ended the other's session, every ConnectRetry
			// (the likely cause of one fabric demo run under the nested
			// host's emulation whose two sessions sat in OpenSent for two
			// minutes).
			p.lastDial = time.Now().Add(-time.Duration(rand.Int64N(int64(r.connectRetry()/4) + 1)))
		}
		p.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-unwait:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		c, err := r.dialNeighbor(p)
		if err != nil {
			r.log.Debug("connect to neighbor", "neighbor", p.n.Addr, "error", err)
			continue
		}
		p.mu.Lock()
		mine := p.waiting == g
		if mine {
			p.takeWaiting()
		}
		p.mu.Unlock()
		if !mine || !r.track(c) {
			c.Close()
			return
		}
		r.join(p, c, g)
		return
	}
}

// join relays a session between the neighbor's connection nb and
// GoBGP's g.
func (r *relay) join(p *relayPeer, nb, g net.Conn) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.pump(p, nb, g)
	}()
}

// takeWaiting clears p.waiting and returns it; p.mu is held.
func (p *relayPeer) takeWaiting() net.Conn {
	g := p.waiting
	if g != nil {
		close(p.unwait)
		p.waiting, p.unwait = nil, nil
	}
	return g
}

// awaiting reports whether GoBGP's connection waits for the neighbor: to
// GoBGP the session is in OpenSent, to the neighbor not yet there.
func (p *relayPeer) awaiting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting != nil
}

// connectRetry is the least time between the relay's connection attempts
// to a neighbor.
func (r *relay) connectRetry() time.Duration {
	if r.cfg.ConnectRetry > 0 {
		return r.cfg.ConnectRetry
	}
	return defaultConnectRetry
}

// dialNeighbor connects to a neighbor as GoBGP would: from LocalAddr, with
// TTL 1 to an external neighbor (RFC 4271 single-hop eBGP).
func (r *relay) dialNeighbor(p *relayPeer) (net.Conn, error) {
	port := p.n.Port
	if port == 0 {
		port = bgp.BGP_PORT
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if r.cfg.LocalAddr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(r.cfg.LocalAddr, 0))
	}
	if p.ebgp {
		d.Control = func(network, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if p.n.Addr.Is4() {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return d.DialContext(r.ctx, "tcp", netip.AddrPortFrom(p.n.Addr, port).String())
}

// pump relays one session: GoBGP's bytes to the neighbor as they are,
// the neighbor's messages to GoBGP once checked. When either side ends,
// both connections are closed.
func (r *relay) pump(p *relayPeer, nb, g net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(nb, g)
		done <- struct{}{}
	}()
	go func() {
		if err := r.forwardChecked(p, nb, g); err != nil {
			r.log.Debug("neighbor connection ended", "neighbor", p.n.Addr, "error", err)
		}
		done <- struct{}{}
	}()
	<-done
	r.untrack(nb)
	r.untrack(g)
	<-done
}
