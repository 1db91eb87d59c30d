package vxlan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
)

// Config is a VXLAN port.
type Config struct {
	// Local is the local VTEP address, IPv4 or IPv6 (the underlay's
	// family: Remotes and every VTEP a control plane adds must be of it):
	// packets are sent from it and received on it. An IPv6 address must
	// be global (not link-local) and past duplicate address detection.
	Local netip.Addr
	// Port is the UDP port VXLAN is received on and sent to (0:
	// DefaultPort, 4789).
	Port uint16
	// VNIs maps each VNI to the switch VLAN it carries (1..4094; one VNI
	// per VLAN).
	VNIs map[uint32]uint16
	// NativeVLAN is the VLAN the switch sends to the port untagged (the
	// port's native VLAN, 0 for none): if it is mapped, its frames leave
	// and arrive untagged.
	NativeVLAN uint16
	// Remotes are VTEPs every VNI floods to (a static flood list; a
	// control plane adds more per VNI with AddFloodVTEP).
	Remotes []netip.Addr
	// MaxFloodVTEPs bounds the VTEPs a control plane adds to one VNI's
	// flood list (0: DefaultMaxFloodVTEPs, 1024); Remotes are not
	// counted. Each flooded frame leaves once per VTEP of its VNI's list.
	MaxFloodVTEPs int
	// Learning: the source MACs of received packets are learned with the
	// VTEP that sent them (as Linux's vxlan without nolearning); off where
	// a control plane (BGP EVPN) tells the port where MACs are.
	Learning bool
	// AnyVTEP accepts packets from any source address; by default only
	// from known VTEPs (the flood lists and the remote MACs' VTEPs).
	AnyVTEP bool
	// UnderlayMTU is the largest outer IP packet (0: 1500): inner frames
	// up to UnderlayMTU-Overhead bytes go over IPv4, UnderlayMTU-Overhead6
	// over IPv6.
	UnderlayMTU int
	// UDP6ZeroCsumTx: over IPv6, send a zero UDP checksum (RFC 6935 §5,
	// RFC 6936) instead of computing it, as Linux's vxlan with
	// udp6zerocsumtx; off by default, as Linux, since a receiver must be
	// told to accept it. UDP6ZeroCsumRx: accept packets with a zero UDP
	// checksum over IPv6 (Linux's udp6zerocsumrx); off by default: the
	// kernel drops them (counted as Udp6InCsumErrors, with packets whose
	// checksum is wrong, before the port sees them). Both ignored over
	// IPv4, where the checksum is zero and any is accepted (RFC 7348 §5).
	UDP6ZeroCsumTx, UDP6ZeroCsumRx bool
	// MaxRemoteMACs bounds the table of remote MACs (0: 65536).
	MaxRemoteMACs int
	// Aging is how long a learned remote MAC lives without a packet from
	// it (0: 300 s). Entries set with SetRemoteMAC do not age.
	Aging time.Duration
	// LearnIPs: the IP addresses of local MACs are learned from the ARP
	// packets and IPv6 neighbour solicitations and advertisements the
	// switch sends the port (LocalIPs), for a control plane to advertise.
	LearnIPs bool
	// Suppress: an ARP request or multicast neighbour solicitation for
	// an IP in the remote MAC/IP table (SetRemoteIP) is answered by the
	// port, into the switch, instead of being flooded to the VTEPs.
	Suppress bool
	// MaxIPsPerMAC bounds the local IPs of one MAC (0: 4), MaxLocalIPs the
	// local MAC/IP bindings (0: 65536), MaxRemoteIPs the remote ones (0:
	// 65536).
	MaxIPsPerMAC, MaxLocalIPs, MaxRemoteIPs int
	// NoUDPGSO: every packet leaves on its own through the raw socket;
	// by default runs of packets of one inner flow to one VTEP leave as
	// UDP GSO super-packets, written to the underlay device (gso.go).
	NoUDPGSO bool
	Logger   hclog.Logger
}

// Stats are a port's counters.
type Stats struct {
	RxPackets, RxBytes uint64 // VXLAN packets received and handed to the switch, inner bytes
	TxPackets, TxBytes uint64 // VXLAN packets sent (each flooded copy one), inner bytes
	TxFloodCopies      uint64 // packets sent as copies of flooded frames

	RxDropShort       uint64 // datagrams shorter than a VXLAN and an Ethernet header
	RxDropFlags       uint64 // flags other than the I flag, or reserved fields not zero
	RxDropUnknownVNI  uint64 // a VNI that is not mapped to a VLAN
	RxDropUnknownVTEP uint64 // from an address that is not a known VTEP
	RxDropInnerTag    uint64 // inner frames with a VLAN tag of their own
	RxDropOversize    uint64 // datagrams longer than the receive buffers (the underlay MTU)
	RxErrors          uint64 // receive system call failures

	TxDropNoVNI    uint64 // frames of a VLAN no VNI carries (or untagged without a mapped native VLAN)
	TxDropOversize uint64 // frames whose outer packet would exceed the underlay MTU
	TxDropNoRemote uint64 // frames with nowhere to go: no flood list for their VNI
	TxDropInnerTag uint64 // frames that would carry a VLAN tag inside the VNI: a tag behind their VLAN's, or untagged with a tag's EtherType (0x9100, 0x9200, 0x9300)
	TxErrors       uint64 // packets the kernel refused (no route, buffer full)
	TxGSOPackets   uint64 // UDP GSO super-packets sent (their packets are in TxPackets)
	TxDirect       uint64 // packets written to the underlay device (AF_PACKET), in super-packets or alone; the rest went through the raw socket
	TxGSOFallbacks uint64 // super-packets and single packets the underlay device refused: they went through the raw socket
	RxGROPackets   uint64 // datagrams the kernel coalesced (UDP GRO), each cut into its packets

	RemoteMACs     int    // entries in the table of remote MACs now
	RemoteMACsFull uint64 // MACs not learned or set: the table was full
	FloodVTEPsFull uint64 // VTEPs a control plane tried to add to a VNI's flood list that had MaxFloodVTEPs: refused

	ARPSuppressed   uint64 // ARP requests answered by the port, not flooded
	NDSuppressed    uint64 // neighbour solicitations answered by the port, not flooded
	SuppressReplies uint64 // answers handed to the switch
	SuppressFull    uint64 // requests flooded because the queue of answers was full
	SnoopIgnored    uint64 // ARP and ND packets nothing was learned from: malformed, or claiming what they may not
	LocalIPs        int    // local MAC/IP bindings now
	LocalIPsFull    uint64 // bindings not learned: the MAC had its share of IPs, or the table was full
	RemoteIPs       int    // remote MAC/IP bindings now
	RemoteIPsFull   uint64 // remote bindings not set: the table was full

	// VTEPs of the other address family a control plane tried to add
	// (flood list or remote MAC): refused, one family per port.
	WrongFamily uint64
}

type counters struct {
	rxPackets, rxBytes, txPackets, txBytes, txFlood                   atomic.Uint64
	rxShort, rxFlags, rxVNI, rxVTEP, rxInnerTag, rxOversize, rxErrors atomic.Uint64
	txNoVNI, txOversize, txNoRemote, txErrors, full                   atomic.Uint64
	txInnerTag, floodFull                                             atomic.Uint64
	arpSuppressed, ndSuppressed, replies, ringFull, snoopIgnored      atomic.Uint64
	localFull, remoteIPFull, wrongFamily                              atomic.Uint64
	gsoPackets, gsoFallback, groPackets, direct                       atomic.Uint64
}

// vtepAddr is a VTEP's address as the tables key it: the IPv6 address,
// or the IPv4-mapped one (RFC 4291 §2.5.5.2) of an IPv4 address.
type vtepAddr [16]byte

// addr is a's netip form.
func (a vtepAddr) addr() netip.Addr { return netip.AddrFrom16(a).Unmap() }

// vtep is a remote VTEP: its address and the sockaddr packets to it use:
// a sockaddr_in6, or over IPv4 a sockaddr_in in its first bytes (the
// raw socket's sendmmsg names are of the port's family).
type vtep struct {
	addr vtepAddr
	sa   unix.RawSockaddrInet6
}

// newVTEP makes the VTEP of a, an address of the port's family.
func (p *Port) newVTEP(a netip.Addr) vtep {
	a = a.Unmap()
	v := vtep{addr: a.As16()}
	if p.v6 {
		// The port stays 0: a raw IPv6 socket takes sin6_port as the
		// protocol (net/ipv6/raw.c, rawv6_sendmsg), 0 or its own.
		v.sa.Family = unix.AF_INET6
		v.sa.Addr = a.As16()
		return v
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&v.sa))
	sa.Family = unix.AF_INET
	sa.Port = uint16(p.cfg.Port>>8 | p.cfg.Port<<8) // network order
	sa.Addr = a.As4()
	return v
}

// family checks that a control plane's VTEP a is of the port's family.
func (p *Port) family(a netip.Addr) error {
	a = a.Unmap()
	if !a.IsValid() || a.Is4() == p.v6 {
		p.st.wrongFamily.Add(1)
		return fmt.Errorf("vxlan: VTEP %v: want an %s address (the port's underlay, local %v)", a, p.familyName(), p.cfg.Local)
	}
	return nil
}

func (p *Port) familyName() string {
	if p.v6 {
		return "IPv6"
	}
	return "IPv4"
}

type macKey struct {
	vni uint32
	mac [6]byte
}

type remoteMAC struct {
	vtep    vtep
	learned bool
	seen    atomic.Int64 // learned entries: unix nanoseconds of the last packet
}

// Port is a VXLAN tunnel port of the switch. It implements vswitch.Port.
type Port struct {
	cfg Config
	log hclog.Logger

	vlanVNI [4096]uint32 // VLAN → VNI (0: none); read-only after Open
	vniVLAN map[uint32]uint16
	v6      bool // the underlay is IPv6
	ipLen   int  // the outer IP header: 20 or 40 bytes
	// overhead is what encapsulation adds: Overhead or Overhead6.
	overhead int
	// labels: IPv6 packets carry a flow label of their inner flow
	// (cleared if the kernel refuses them).
	labels atomic.Bool

	rxfd, txfd int
	gso        *gsoTx // nil: no UDP GSO
	gro        bool   // the receive socket has UDP GRO

	// tabMu guards the remote MACs, the flood lists and the known VTEPs.
	tabMu  sync.RWMutex
	remote map[macKey]*remoteMAC
	static []vtep // Config.Remotes, each once: every VNI's
	// flood is per VNI the static VTEPs and those added, each once. Its
	// lists are written by floodMu's holder only, under tabMu: a list
	// once stored is never changed, only replaced (an append may fill
	// the array past its end), so Send and RemoteVTEPs use one without a
	// copy, and floodMu's holder reads them without tabMu.
	flood map[uint32][]vtep
	known map[vtepAddr]int // VTEP address → references (flood lists, remote MACs)
	// floodMu serialises the flood lists' changes (AddFloodVTEP,
	// DelFloodVTEP): a VNI's new list is made under it alone and stored
	// under tabMu, so Send waits on no rebuild.
	floodMu  sync.Mutex
	added    map[uint32]map[vtepAddr]struct{} // per VNI: AddFloodVTEP's (floodMu)
	isStatic map[vtepAddr]bool                // the static VTEPs; read-only after Open
	txMu     sync.Mutex                       // serialises Send: the batch below is shared
	tx       *txBatch
	handle   atomic.Pointer[vswitch.PortHandle]
	stop     atomic.Bool
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	st       counters

	// ARP and ND (neigh.go).
	nb      neighTables
	ring    replyRing
	nbuf    [ethLen + tagLen + ipv6Len + ndMaxLen]byte // Send's copy of an ARP or ND frame (txMu)
	rbuf    [replyRoom]byte                            // Send's answer being built (txMu)
	lastLog atomic.Int64                               // unix nanoseconds of the last ignored-packet log
}

var _ vswitch.Port = (*Port)(nil)

// Open checks cfg and opens the port's sockets (in the calling thread's
// network namespace). It does not receive until Start.
func Open(cfg Config) (*Port, error) {
	cfg.Local = cfg.Local.Unmap()
	switch l := cfg.Local; {
	case !l.IsValid():
		return nil, errors.New("vxlan: local address: want an IPv4 or IPv6 address")
	case l.IsUnspecified() || l.IsMulticast() || l.Zone() != "" || l.Is6() && l.IsLinkLocalUnicast():
		return nil, fmt.Errorf("vxlan: local address %v: want a unicast address (IPv6: not link-local)", l)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	if cfg.UnderlayMTU < 576 || cfg.UnderlayMTU > 65535 {
		return nil, fmt.Errorf("vxlan: underlay MTU %d: want 576..65535", cfg.UnderlayMTU)
	}
	if cfg.MaxRemoteMACs == 0 {
		cfg.MaxRemoteMACs = 65536
	}
	if cfg.MaxFloodVTEPs == 0 {
		cfg.MaxFloodVTEPs = DefaultMaxFloodVTEPs
	}
	if cfg.MaxFloodVTEPs < 0 {
		return nil, fmt.Errorf("vxlan: max flood VTEPs %d: want 1.. (0: %d)", cfg.MaxFloodVTEPs, DefaultMaxFloodVTEPs)
	}
	if cfg.Aging == 0 {
		cfg.Aging = 300 * time.Second
	}
	if cfg.MaxIPsPerMAC == 0 {
		cfg.MaxIPsPerMAC = DefaultMaxIPsPerMAC
	}
	if cfg.MaxLocalIPs == 0 {
		cfg.MaxLocalIPs = DefaultMaxLocalIPs
	}
	if cfg.MaxRemoteIPs == 0 {
		cfg.MaxRemoteIPs = DefaultMaxRemoteIPs
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if len(cfg.VNIs) == 0 {
		return nil, errors.New("vxlan: no VNIs: map at least one VNI to a VLAN")
	}
	p := &Port{cfg: cfg, log: cfg.Logger, vniVLAN: map[uint32]uint16{}, remote: map[macKey]*remoteMAC{},
		flood: map[uint32][]vtep{}, added: map[uint32]map[vtepAddr]struct{}{}, isStatic: map[vtepAddr]bool{}, known: map[vtepAddr]int{},
		rxfd: -1, txfd: -1,
		v6: cfg.Local.Is6(), ipLen: ipv4Len, overhead: Overhead}
	if p.v6 {
		p.ipLen, p.overhead = ipv6Len, Overhead6
		p.labels.Store(true)
	}
	p.nb = neighTables{local: map[ipKey][6]byte{}, perMAC: map[macKey]int{}, remote: map[ipKey][6]byte{},
		changed: make(chan struct{}, 1)}
	p.ring.wake = make(chan struct{}, 1)
	for vni, vlan := range cfg.VNIs {
		if vni == 0 || vni > MaxVNI {
			return nil, fmt.Errorf("vxlan: VNI %d: want 1..%d", vni, MaxVNI)
		}
		if vlan == 0 || vlan > 4094 {
			return nil, fmt.Errorf("vxlan: VNI %d: VLAN %d: want 1..4094", vni, vlan)
		}
		if other := p.vlanVNI[vlan]; other != 0 {
			return nil, fmt.Errorf("vxlan: VLAN %d is mapped to VNIs %d and %d: one VNI per VLAN", vlan, other, vni)
		}
		p.vlanVNI[vlan] = vni
		p.vniVLAN[vni] = vlan
	}
	for _, r := range cfg.Remotes {
		r = r.Unmap()
		if !r.IsValid() || r.Is6() != p.v6 {
			return nil, fmt.Errorf("vxlan: remote %v: want an %s address, as local %v: one address family per port", r, p.familyName(), cfg.Local)
		}
		if r.IsUnspecified() || r.IsMulticast() || r.Zone() != "" || r.Is6() && r.IsLinkLocalUnicast() {
			return nil, fmt.Errorf("vxlan: remote %v: want a unicast address (IPv6: not link-local)", r)
		}
		v := p.newVTEP(r)
		if p.isStatic[v.addr] {
			continue // given twice: flooded to once
		}
		p.isStatic[v.addr] = true
		p.static = append(p.static, v)
		p.known[v.addr]++
	}
	if len(p.static) > 0 {
		for vni := range p.vniVLAN {
			p.flood[vni] = slices.Clone(p.static) // each VNI's list its own array: AddFloodVTEP appends in place
		}
	}
	if err := p.openSockets(); err != nil {
		p.closeSockets()
		return nil, err
	}
	p.tx = newTxBatch(txBatchSize, p.v6)
	if !cfg.NoUDPGSO {
		var err error
		if p.gso, err = p.openGSO(); err != nil {
			p.log.Warn("vxlan: no UDP GSO: every packet leaves on its own", "error", err)
			p.gso = nil
		}
	}
	return p, nil
}

func (p *Port) openSockets() error {
	family := unix.AF_INET6
	var sa, raw unix.Sockaddr = &unix.SockaddrInet6{Port: int(p.cfg.Port), Addr: p.cfg.Local.As16()}, &unix.SockaddrInet6{Addr: p.cfg.Local.As16()}
	if !p.v6 {
		family = unix.AF_INET
		sa, raw = &unix.SockaddrInet4{Port: int(p.cfg.Port), Addr: p.cfg.Local.As4()}, &unix.SockaddrInet4{Addr: p.cfg.Local.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("vxlan: UDP socket: %w", err)
	}
	p.rxfd = fd
	if p.v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("vxlan: IPV6_V6ONLY: %w", err)
		}
		// A zero UDP checksum is refused by the kernel unless the
		// socket accepts it (RFC 6936 §5: only where configured; Linux's
		// udp6zerocsumrx sets the same option on its socket).
		if p.cfg.UDP6ZeroCsumRx {
			if err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_NO_CHECK6_RX, 1); err != nil {
				return fmt.Errorf("vxlan: UDP_NO_CHECK6_RX: %w", err)
			}
		}
	}
	// 16 MiB of receive buffer (with CAP_NET_ADMIN past rmem_max, else
	// as much as it allows): the receive loop may be scheduled out while
	// a burst of super-packets of 64 KiB each arrives.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	// UDP GRO: runs of datagrams of one sender and size come as one
	// (rx.go cuts them); without it (kernels before 5.0), one by one.
	p.gro = unix.SetsockoptInt(fd, unix.SOL_UDP, udpGRO, 1) == nil
	// The receive loop wakes up to notice Close.
	tv := unix.Timeval{Usec: 100_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("vxlan: SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("vxlan: bind %v: %w%s", netip.AddrPortFrom(p.cfg.Local, p.cfg.Port), err, p.bindHint(err))
	}
	// Sending: a raw UDP socket, so each packet carries its own source
	// port; it must receive nothing (a raw socket gets a copy of every
	// UDP packet): a filter that accepts none.
	fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("vxlan: raw UDP socket (sending needs CAP_NET_RAW): %w", err)
	}
	p.txfd = fd
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
		return fmt.Errorf("vxlan: raw socket filter: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if p.v6 {
		if err := p.rawIPv6(fd); err != nil {
			return err
		}
	}
	if err := unix.Bind(fd, raw); err != nil {
		return fmt.Errorf("vxlan: bind raw socket to %v: %w%s", p.cfg.Local, err, p.bindHint(err))
	}
	return nil
}

// ipv6FlowinfoSend is IPV6_FLOWINFO_SEND (include/uapi/linux/in6.h):
// sendmsg takes the flow label from the destination's sin6_flowinfo.
const ipv6FlowinfoSend = 33

// rawIPv6 sets up the raw IPv6 socket packets are sent through.
func (p *Port) rawIPv6(fd int) error {
	// UDP over IPv6 must carry a checksum (RFC 8200 §8.1) unless both
	// ends agree on zero for a tunnel (RFC 6935/6936), and Linux's vxlan
	// by default refuses zero (udp6zerocsumrx off): the kernel computes
	// it over the pseudo-header and the message at offset 6 of the UDP
	// header, while it copies the message in, and sends 0xffff for a sum
	// of zero (net/ipv6/raw.c, rawv6_push_pending_frames).
	if !p.cfg.UDP6ZeroCsumTx {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 6); err != nil {
			return fmt.Errorf("vxlan: IPV6_CHECKSUM: %w", err)
		}
	}
	// Never fragmented (IPv6 would fragment at the source): a packet
	// the route's MTU cannot carry is refused, and counted.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1); err != nil {
		return fmt.Errorf("vxlan: IPV6_DONTFRAG: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, ipv6FlowinfoSend, 1); err != nil {
		p.labels.Store(false)
		p.log.Warn("no IPv6 flow labels from the inner flows", "error", err)
	}
	return nil
}

// bindHint explains the usual reason an IPv6 address cannot be bound.
func (p *Port) bindHint(err error) string {
	if p.v6 && errors.Is(err, unix.EADDRNOTAVAIL) {
		return " (is the address on an interface, and past duplicate address detection?)"
	}
	return ""
}

func (p *Port) closeSockets() {
	for _, fd := range []*int{&p.rxfd, &p.txfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Start hands received frames to the switch port h until Close.
func (p *Port) Start(h *vswitch.PortHandle) {
	p.handle.Store(h)
	p.wg.Add(3)
	go p.rxLoop()
	go p.ageLoop()
	go p.replyLoop()
	if p.gso != nil {
		p.wg.Add(1)
		go p.hopLoop()
	}
}

// Close stops receiving and closes the sockets.
func (p *Port) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.stop.Store(true)
	select {
	case p.ring.wake <- struct{}{}: // replyLoop notices
	default:
	}
	if p.gso != nil {
		close(p.gso.wake)
	}
	p.wg.Wait()
	p.txMu.Lock()
	p.closeSockets()
	if p.gso != nil {
		p.gso.close()
		p.gso = nil
	}
	p.txMu.Unlock()
	return nil
}

// Caps implements vswitch.Port: no offloads. The switch segments GSO
// frames and completes checksums before Send, so every outer packet is
// one the underlay carries as it is.
func (p *Port) Caps() vswitch.Caps { return 0 }

// VNIVLAN returns the VLAN a VNI is mapped to (0: none).
func (p *Port) VNIVLAN(vni uint32) uint16 { return p.vniVLAN[vni] }

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	c := &p.st
	p.tabMu.RLock()
	n := len(p.remote)
	p.tabMu.RUnlock()
	p.nb.mu.RLock()
	nl, nr := len(p.nb.local), len(p.nb.remote)
	p.nb.mu.RUnlock()
	return Stats{RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(), TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		TxFloodCopies: c.txFlood.Load(), RxDropShort: c.rxShort.Load(), RxDropFlags: c.rxFlags.Load(), RxDropUnknownVNI: c.rxVNI.Load(),
		RxDropUnknownVTEP: c.rxVTEP.Load(), RxDropInnerTag: c.rxInnerTag.Load(), RxDropOversize: c.rxOversize.Load(), RxErrors: c.rxErrors.Load(),
		TxDropNoVNI: c.txNoVNI.Load(), TxDropOversize: c.txOversize.Load(), TxDropNoRemote: c.txNoRemote.Load(), TxErrors: c.txErrors.Load(),
		TxDropInnerTag: c.txInnerTag.Load(), RemoteMACs: n, RemoteMACsFull: c.full.Load(), FloodVTEPsFull: c.floodFull.Load(),
		ARPSuppressed: c.arpSuppressed.Load(), NDSuppressed: c.ndSuppressed.Load(), SuppressReplies: c.replies.Load(),
		SuppressFull: c.ringFull.Load(), SnoopIgnored: c.snoopIgnored.Load(), LocalIPs: nl, LocalIPsFull: c.localFull.Load(),
		RemoteIPs: nr, RemoteIPsFull: c.remoteIPFull.Load(), WrongFamily: c.wrongFamily.Load(),
		TxGSOPackets: c.gsoPackets.Load(), TxDirect: c.direct.Load(), TxGSOFallbacks: c.gsoFallback.Load(), RxGROPackets: c.groPackets.Load()}
}
