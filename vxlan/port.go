package vxlan

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	vswitch "hvnet/switch"
)

// Config is a VXLAN port.
type Config struct {
	// Local is the local VTEP address (IPv4): packets are sent from it and
	// received on it.
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
	// Learning: the source MACs of received packets are learned with the
	// VTEP that sent them (as Linux's vxlan without nolearning); off where
	// a control plane (BGP EVPN) tells the port where MACs are.
	Learning bool
	// AnyVTEP accepts packets from any source address; by default only
	// from known VTEPs (the flood lists and the remote MACs' VTEPs).
	AnyVTEP bool
	// UnderlayMTU is the largest outer IP packet (0: 1500).
	UnderlayMTU int
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
	Logger                                  hclog.Logger
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
	TxErrors       uint64 // packets the kernel refused (no route, buffer full)

	RemoteMACs     int    // entries in the table of remote MACs now
	RemoteMACsFull uint64 // MACs not learned or set: the table was full

	ARPSuppressed   uint64 // ARP requests answered by the port, not flooded
	NDSuppressed    uint64 // neighbour solicitations answered by the port, not flooded
	SuppressReplies uint64 // answers handed to the switch
	SuppressFull    uint64 // requests flooded because the queue of answers was full
	SnoopIgnored    uint64 // ARP and ND packets nothing was learned from: malformed, or claiming what they may not
	LocalIPs        int    // local MAC/IP bindings now
	LocalIPsFull    uint64 // bindings not learned: the MAC had its share of IPs, or the table was full
	RemoteIPs       int    // remote MAC/IP bindings now
	RemoteIPsFull   uint64 // remote bindings not set: the table was full
}

type counters struct {
	rxPackets, rxBytes, txPackets, txBytes, txFlood                   atomic.Uint64
	rxShort, rxFlags, rxVNI, rxVTEP, rxInnerTag, rxOversize, rxErrors atomic.Uint64
	txNoVNI, txOversize, txNoRemote, txErrors, full                   atomic.Uint64
	arpSuppressed, ndSuppressed, replies, ringFull, snoopIgnored      atomic.Uint64
	localFull, remoteIPFull                                           atomic.Uint64
}

// vtep is a remote VTEP: its address and the sockaddr packets to it use.
type vtep struct {
	addr [4]byte
	sa   unix.RawSockaddrInet4
}

func (p *Port) newVTEP(a netip.Addr) vtep {
	v := vtep{addr: a.As4()}
	v.sa.Family = unix.AF_INET
	v.sa.Port = uint16(p.cfg.Port>>8 | p.cfg.Port<<8) // network order
	v.sa.Addr = v.addr
	return v
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

	rxfd, txfd int

	// tabMu guards the remote MACs, the flood lists and the known VTEPs.
	tabMu   sync.RWMutex
	remote  map[macKey]*remoteMAC
	static  []vtep            // Config.Remotes: every VNI's
	flood   map[uint32][]vtep // per VNI: static plus those added
	added   map[uint32][]vtep // per VNI: AddFloodVTEP's
	known   map[[4]byte]int   // VTEP address → references (flood lists, remote MACs)
	txMu    sync.Mutex        // serialises Send: the batch below is shared
	tx      *txBatch
	handle  atomic.Pointer[vswitch.PortHandle]
	stop    atomic.Bool
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
	st      counters

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
	if !cfg.Local.Is4() {
		return nil, fmt.Errorf("vxlan: local address %v: want an IPv4 address", cfg.Local)
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
		flood: map[uint32][]vtep{}, added: map[uint32][]vtep{}, known: map[[4]byte]int{}, rxfd: -1, txfd: -1}
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
		if !r.Is4() {
			return nil, fmt.Errorf("vxlan: remote %v: want an IPv4 address", r)
		}
		v := p.newVTEP(r)
		p.static = append(p.static, v)
		p.known[v.addr]++
	}
	p.rebuildFlood()
	if err := p.openSockets(); err != nil {
		p.closeSockets()
		return nil, err
	}
	p.tx = newTxBatch(txBatchSize)
	return p, nil
}

func (p *Port) openSockets() error {
	sa := &unix.SockaddrInet4{Port: int(p.cfg.Port), Addr: p.cfg.Local.As4()}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("vxlan: UDP socket: %w", err)
	}
	p.rxfd = fd
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	// The receive loop wakes up to notice Close.
	tv := unix.Timeval{Usec: 100_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("vxlan: SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("vxlan: bind %v:%d: %w", p.cfg.Local, p.cfg.Port, err)
	}
	// Sending: a raw UDP socket, so each packet carries its own source
	// port; it must receive nothing (a raw socket gets a copy of every
	// UDP packet): a filter that accepts none.
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("vxlan: raw UDP socket (sending needs CAP_NET_RAW): %w", err)
	}
	p.txfd = fd
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
		return fmt.Errorf("vxlan: raw socket filter: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: p.cfg.Local.As4()}); err != nil {
		return fmt.Errorf("vxlan: bind raw socket to %v: %w", p.cfg.Local, err)
	}
	return nil
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
	p.wg.Wait()
	p.txMu.Lock()
	p.closeSockets()
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
		RemoteMACs: n, RemoteMACsFull: c.full.Load(),
		ARPSuppressed: c.arpSuppressed.Load(), NDSuppressed: c.ndSuppressed.Load(), SuppressReplies: c.replies.Load(),
		SuppressFull: c.ringFull.Load(), SnoopIgnored: c.snoopIgnored.Load(), LocalIPs: nl, LocalIPsFull: c.localFull.Load(),
		RemoteIPs: nr, RemoteIPsFull: c.remoteIPFull.Load()}
}
