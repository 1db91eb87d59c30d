package bond

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

// Mode is how a bond uses its members.
type Mode uint8

const (
	// ModeActiveBackup: one member carries everything; another takes
	// over when its link goes.
	ModeActiveBackup Mode = iota
	// ModeBalanceSLB: frames spread over the members by source MAC and
	// VLAN (Open vSwitch's balance-slb), rebalanced by load; no
	// cooperation from the physical switch.
	ModeBalanceSLB
	// ModeLACP: an 802.1AX aggregation negotiated with the partner;
	// frames spread over the members both sides aggregate by a hash of
	// their addresses.
	ModeLACP
)

var modeNames = [...]string{"active-backup", "balance-slb", "lacp"}

func (m Mode) String() string { return modeNames[m] }

// ParseMode parses a mode's name.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("bond mode %q: want active-backup, balance-slb or lacp", s)
}

// Hash is what an LACP bond's transmit hash covers.
type Hash uint8

const (
	HashL2  Hash = iota // MACs and VLAN
	HashL23             // and IP addresses
	HashL34             // IP addresses and TCP/UDP ports (not of fragments)
)

var hashNames = [...]string{"l2", "l23", "l34"}

func (h Hash) String() string { return hashNames[h] }

// ParseHash parses a hash's name.
func ParseHash(s string) (Hash, error) {
	for i, n := range hashNames {
		if s == n {
			return Hash(i), nil
		}
	}
	return 0, fmt.Errorf("bond hash %q: want l2, l23 or l34", s)
}

// Config is a bond.
type Config struct {
	Mode    Mode
	Members []string // interface names, at least one
	// Primary is the member active-backup prefers while its link is up
	// (empty: none; the active member stays until its link goes).
	Primary string
	// UpDelay and DownDelay: how long a member's carrier must stay up
	// (down) before the bond uses it (stops using it).
	UpDelay, DownDelay time.Duration
	// LACP.
	LACPRate    Rate
	LACPPassive bool
	// LACPFallback: with no partner answering on any member, the bond
	// works as active-backup (true) or carries nothing (false), as
	// switches that block until LACP comes up do.
	LACPFallback   bool
	SystemPriority uint16  // 0: 65535
	SystemID       [6]byte // zero: the first member's MAC
	Key            uint16  // 0: 1
	Hash           Hash    // LACP's transmit hash
	// Rebalance is how often balance-slb moves source MACs between
	// members by their measured load (0: 10 s).
	Rebalance time.Duration
	// Uplink configures every member's AF_PACKET port.
	Uplink uplink.Config
	// LocalMACs returns the MACs the switch has learned on its other
	// ports, announced on a member that takes over their traffic (nil:
	// none).
	LocalMACs func() []LocalMAC
	Logger    hclog.Logger
}

// LocalMAC is a MAC behind the switch's other ports, in a VLAN.
type LocalMAC struct {
	MAC  [6]byte
	VLAN uint16
}

// Port is a bond: a switch port made of several uplinks. It implements
// vswitch.Port.
type Port struct {
	cfg    Config // the control loop's (Reconfigure changes it there)
	log    hclog.Logger
	mem    atomic.Pointer[[]*member] // by index; a removed member stays as a closed slot
	handle atomic.Pointer[vswitch.PortHandle]
	mode   atomic.Uint32 // Mode: cfg.Mode for the data path
	hash   atomic.Uint32 // Hash: cfg.Hash for the data path
	ops    chan func()   // work for the control loop (Reconfigure)

	// What the control loop decides and the data path reads.
	active  atomic.Int32  // active-backup (and LACP's fallback): the member carrying traffic; -1 none
	rxMask  atomic.Uint64 // members whose received frames are taken (bit i: member i)
	txList  atomic.Pointer[[]int32]
	slb     [slbBuckets]atomic.Int32 // balance-slb: bucket -> member
	slbLoad [slbBuckets]atomic.Uint64
	sent    [sentSlots]atomic.Uint64 // balance-slb: source MACs sent (reflection check)

	events chan event
	lacp   *LACP
	txMu   sync.Mutex
	tx     [maxMembers][]vswitch.Frame // per member slot, Send's scratch
	rest   []vswitch.Frame             // Send's scratch: frames the members did not take
	pdu    []byte

	started  atomic.Bool
	statsReq chan chan Stats
	stop     chan struct{}
	done     chan struct{}
	st       counters
}

const (
	slbBuckets = 256
	sentSlots  = 4096
	maxMembers = 16
)

type counters struct {
	lacpRx, lacpBad, lacpQueueFull, lacpTx atomic.Uint64
	failovers, announced                   atomic.Uint64
	rxInactive, rxReflected                atomic.Uint64
	txNoMember                             atomic.Uint64
	rebalanced                             atomic.Uint64
}

// member is one uplink of the bond.
type member struct {
	idx     int
	name    string
	mac     [6]byte
	port    *uplink.Port
	b       *Port
	gone    bool      // removed by Reconfigure: its slot stays, closed (control loop)
	carrier bool      // the link's state (control loop)
	usable  bool      // carrier held for the up/down delay (control loop)
	pending time.Time // when carrier's change takes effect (zero: none)
	rx, tx  atomic.Uint64
	rxDrop  atomic.Uint64
}

// event is a LACPDU a member received, for the control loop.
type event struct {
	idx int
	pdu LACPDU
}

var _ vswitch.Port = (*Port)(nil)

// Open opens the members' uplinks (in the calling thread's network
// namespace). It does not receive until Start.
func Open(cfg Config) (*Port, error) {
	if len(cfg.Members) == 0 {
		return nil, errors.New("bond: no members")
	}
	if len(cfg.Members) > maxMembers {
		return nil, fmt.Errorf("bond: %d members: at most %d", len(cfg.Members), maxMembers)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Rebalance == 0 {
		cfg.Rebalance = 10 * time.Second
	}
	if cfg.SystemPriority == 0 {
		cfg.SystemPriority = 65535
	}
	if cfg.Key == 0 {
		cfg.Key = 1
	}
	seen := map[string]bool{}
	primary := cfg.Primary == ""
	for _, m := range cfg.Members {
		if seen[m] {
			return nil, fmt.Errorf("bond: member %s given twice", m)
		}
		seen[m] = true
		primary = primary || m == cfg.Primary
	}
	if !primary {
		return nil, fmt.Errorf("bond: primary %s is not a member", cfg.Primary)
	}
	p := &Port{cfg: cfg, log: cfg.Logger, events: make(chan event, 256), statsReq: make(chan chan Stats), ops: make(chan func()),
		stop: make(chan struct{}), done: make(chan struct{})}
	p.mode.Store(uint32(cfg.Mode))
	p.hash.Store(uint32(cfg.Hash))
	p.active.Store(-1)
	empty := []int32{}
	p.txList.Store(&empty)
	var ms []*member
	for i, name := range cfg.Members {
		m, err := p.openMember(i, name)
		if err != nil {
			for _, m := range ms {
				m.port.Close()
			}
			return nil, err
		}
		ms = append(ms, m)
	}
	p.mem.Store(&ms)
	for i := range p.tx {
		p.tx[i] = make([]vswitch.Frame, 0, 256)
	}
	if p.cfg.SystemID == ([6]byte{}) {
		p.cfg.SystemID = ms[0].mac
	}
	p.lacp = NewLACP(System{Priority: p.cfg.SystemPriority, ID: p.cfg.SystemID, Key: p.cfg.Key}, cfg.LACPRate, cfg.LACPPassive, len(ms))
	return p, nil
}

// openMember opens the uplink of member name in slot i.
func (p *Port) openMember(i int, name string) (*member, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("bond: member %s: %w", name, err)
	}
	up, err := uplink.Open(name, p.cfg.Uplink)
	if err != nil {
		return nil, fmt.Errorf("bond: member %s: %w", name, err)
	}
	m := &member{idx: i, name: name, port: up, b: p}
	copy(m.mac[:], ifi.HardwareAddr)
	return m, nil
}

// mems returns the member slots.
func (p *Port) mems() []*member { return *p.mem.Load() }

// Start starts the members and the control loop: frames the members
// receive enter the switch through h.
func (p *Port) Start(h *vswitch.PortHandle) error {
	p.handle.Store(h)
	updates := make(chan netlink.LinkUpdate, 64)
	nlDone := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, nlDone, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { p.log.Debug("netlink link updates", "error", err) },
	}); err != nil {
		p.log.Warn("bond: no netlink link updates; polling carrier every 100 ms", "error", err)
		updates = nil
	}
	for _, m := range p.mems() {
		if err := m.port.Start(m); err != nil {
			close(nlDone)
			return fmt.Errorf("bond: member %s: %w", m.name, err)
		}
	}
	p.started.Store(true)
	go p.loop(updates, nlDone)
	return nil
}

// Close stops the control loop and the members.
func (p *Port) Close() error {
	select {
	case <-p.stop:
		return nil
	default:
	}
	close(p.stop)
	<-p.done
	var errs []error
	for _, m := range p.mems() {
		errs = append(errs, m.port.Close())
	}
	return errors.Join(errs...)
}

// Caps implements vswitch.Port: the members' (all uplinks).
func (p *Port) Caps() vswitch.Caps { return p.mems()[0].port.Caps() }

// carrier reads a member's carrier from the kernel.
func carrier(name string) bool {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return false
	}
	a := l.Attrs()
	return a.RawFlags&unix.IFF_LOWER_UP != 0 && a.Flags&net.FlagUp != 0
}

// loop is the control loop: link state, LACP, failover, rebalancing.
func (p *Port) loop(updates chan netlink.LinkUpdate, nlDone chan struct{}) {
	defer close(p.done)
	defer close(nlDone)
	now := time.Now()
	for _, m := range p.mems() {
		p.setCarrier(m, carrier(m.name), now)
	}
	p.decide(now)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	rebalance := time.NewTicker(p.cfg.Rebalance)
	defer rebalance.Stop()
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	var send []int
	for {
		select {
		case <-p.stop:
			return
		case u, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			if a := u.Attrs(); a != nil {
				for _, m := range p.mems() {
					if m.name == a.Name && !m.gone {
						p.setCarrier(m, a.RawFlags&unix.IFF_LOWER_UP != 0 && a.Flags&net.FlagUp != 0, time.Now())
					}
				}
			}
		case ev := <-p.events:
			p.lacp.Receive(ev.idx, ev.pdu, time.Now())
		case c := <-p.statsReq:
			c <- p.stats()
			continue
		case op := <-p.ops:
			op()
		case <-poll.C:
			if updates == nil {
				for _, m := range p.mems() {
					if m.gone {
						continue
					}
					p.setCarrier(m, carrier(m.name), time.Now())
				}
			}
		case <-rebalance.C:
			if p.cfg.Mode == ModeBalanceSLB {
				p.rebalance()
			}
		case <-timer.C:
		}
		now := time.Now()
		p.delays(now)
		if p.cfg.Mode == ModeLACP {
			send = p.lacp.Tick(now, send[:0])
			for _, i := range send {
				p.sendPDU(i)
			}
		}
		p.decide(now)
		next := time.Second
		if p.cfg.Mode == ModeLACP {
			next = min(next, max(time.Until(p.lacp.Next(now)), time.Millisecond))
		}
		for _, m := range p.mems() {
			if !m.pending.IsZero() {
				next = min(next, max(time.Until(m.pending), time.Millisecond))
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// setCarrier records a member's carrier; the change takes effect after
// the up or down delay (a change back within it cancels it).
func (p *Port) setCarrier(m *member, up bool, now time.Time) {
	if m.carrier == up {
		return
	}
	m.carrier = up
	p.log.Info("bond member link", "member", m.name, "carrier", up)
	d := p.cfg.DownDelay
	if up {
		d = p.cfg.UpDelay
	}
	if up == m.usable {
		m.pending = time.Time{} // back before the delay ran out
		return
	}
	m.pending = now.Add(d)
	p.delays(now)
}

// delays applies carrier changes whose delay has run out.
func (p *Port) delays(now time.Time) {
	for _, m := range p.mems() {
		if m.pending.IsZero() || now.Before(m.pending) {
			continue
		}
		m.pending = time.Time{}
		m.usable = m.carrier
		p.lacp.SetLink(m.idx, m.usable, now)
	}
}

// decide publishes which members carry traffic, and announces the local
// MACs on members that took traffic over.
func (p *Port) decide(now time.Time) {
	var rx uint64
	var tx []int32
	usable := func(m *member) bool { return m.usable }
	mode := p.cfg.Mode
	if mode == ModeLACP && !p.lacp.Aggregated() {
		if !p.cfg.LACPFallback {
			p.publish(mode, -1, 0, nil)
			return
		}
		mode = ModeActiveBackup // the fallback
	}
	switch mode {
	case ModeActiveBackup:
		act := int(p.active.Load())
		if act < 0 || !p.mems()[act].usable {
			act = -1
		}
		for _, m := range p.mems() {
			if m.usable && (act < 0 || m.name == p.cfg.Primary && p.mems()[act].name != p.cfg.Primary) {
				act = m.idx
			}
		}
		if act >= 0 {
			rx = 1 << act
			tx = []int32{int32(act)}
		}
	case ModeBalanceSLB:
		for _, m := range p.mems() {
			if usable(m) {
				rx |= 1 << m.idx
				tx = append(tx, int32(m.idx))
			}
		}
	case ModeLACP:
		for _, m := range p.mems() {
			if p.lacp.Distributing(m.idx) {
				rx |= 1 << m.idx
				tx = append(tx, int32(m.idx))
			}
		}
	}
	act := int32(-1)
	if len(tx) > 0 {
		act = tx[0]
	}
	p.publish(mode, act, rx, tx)
}

// publish stores the data path's view; members that gained traffic
// announce the local MACs so the physical network relearns them there.
func (p *Port) publish(mode Mode, act int32, rx uint64, tx []int32) {
	old := *p.txList.Load()
	oldAct := p.active.Load()
	same := len(old) == len(tx)
	for i := range tx {
		same = same && old[i] == tx[i]
	}
	if same && act == oldAct && rx == p.rxMask.Load() {
		return
	}
	p.rxMask.Store(rx)
	p.active.Store(act)
	txc := append([]int32(nil), tx...)
	p.txList.Store(&txc)
	if mode == ModeBalanceSLB {
		p.reassign(tx, len(tx) > len(old))
	}
	p.log.Info("bond members", "mode", mode, "carrying", p.names(tx), "broadcasts-on", p.name(act))
	// Announce where traffic moved (not in an aggregation: its partner
	// sees one port): the new active member, or in balance-slb every
	// member that took a share of one that left.
	switch {
	case mode == ModeLACP:
	case mode == ModeActiveBackup && act >= 0 && act != oldAct && oldAct >= 0:
		p.st.failovers.Add(1)
		p.announce(int(act))
	case mode == ModeBalanceSLB && len(tx) > 0 && len(old) > len(tx):
		p.st.failovers.Add(1)
		for _, i := range tx {
			p.announce(int(i))
		}
	}
}

func (p *Port) name(i int32) string {
	if i < 0 {
		return "-"
	}
	return p.mems()[i].name
}

func (p *Port) names(l []int32) []string {
	var s []string
	for _, i := range l {
		s = append(s, p.mems()[i].name)
	}
	return s
}

// reassign gives balance-slb's buckets of members that left to those
// left; when members joined (or at the start) it spreads all buckets
// evenly, and rebalancing refines that by load.
func (p *Port) reassign(tx []int32, grew bool) {
	if len(tx) == 0 {
		return
	}
	in := map[int32]bool{}
	for _, i := range tx {
		in[i] = true
	}
	for b := range p.slb {
		if cur := p.slb[b].Load(); grew || !in[cur] {
			p.slb[b].Store(tx[b%len(tx)])
		}
	}
}

// rebalance moves balance-slb buckets from the busiest member to the
// least busy one while that narrows the gap between them (Open vSwitch's
// bond_rebalance: one bucket at a time, the one whose load comes closest
// to half the gap), until the gap is within a tenth of the busiest
// member's load; then it starts measuring again.
func (p *Port) rebalance() {
	tx := *p.txList.Load()
	if len(tx) < 2 {
		return
	}
	var load [slbBuckets]uint64
	per := map[int32]uint64{}
	for b := range p.slb {
		load[b] = p.slbLoad[b].Swap(0)
		per[p.slb[b].Load()] += load[b]
	}
	for range slbBuckets {
		hi, lo := tx[0], tx[0]
		for _, i := range tx {
			if per[i] > per[hi] {
				hi = i
			}
			if per[i] < per[lo] {
				lo = i
			}
		}
		gap := per[hi] - per[lo]
		if gap <= per[hi]/10 {
			return
		}
		best, bestGap := -1, gap
		for b := range p.slb {
			if p.slb[b].Load() != hi || load[b] == 0 || load[b] >= gap {
				continue
			}
			// After the move the gap is |gap - 2*load|.
			ng := gap - 2*load[b]
			if 2*load[b] > gap {
				ng = 2*load[b] - gap
			}
			if ng < bestGap {
				best, bestGap = b, ng
			}
		}
		if best < 0 {
			return
		}
		p.slb[best].Store(lo)
		per[hi] -= load[best]
		per[lo] += load[best]
		p.st.rebalanced.Add(1)
	}
}

// sendPDU sends member i's LACPDU.
func (p *Port) sendPDU(i int) {
	m := p.mems()[i]
	d := p.lacp.PDU(i)
	p.pdu = d.AppendFrame(p.pdu[:0], m.mac)
	f := [1]vswitch.Frame{{Data: p.pdu}}
	if m.port.Send(f[:]) == 1 {
		p.st.lacpTx.Add(1)
	}
}

// announce sends, on member i, a RARP broadcast from each local MAC (as
// Open vSwitch does after a failover), so the physical switches learn
// the MACs' new way at once.
func (p *Port) announce(i int) {
	if p.cfg.LocalMACs == nil {
		return
	}
	h := p.handle.Load()
	if h == nil {
		return
	}
	cfg := h.Config()
	macs := p.cfg.LocalMACs()
	buf := make([]byte, 0, 64*len(macs))
	frames := make([]vswitch.Frame, 0, len(macs))
	for _, lm := range macs {
		var tagged bool
		switch cfg.Mode {
		case vswitch.ModeTrunk:
			if lm.VLAN != cfg.NativeVLAN && !slices.Contains(cfg.AllowedVLANs, lm.VLAN) {
				continue
			}
			tagged = lm.VLAN != cfg.NativeVLAN
		case vswitch.ModeAccess:
			if lm.VLAN != cfg.PVID {
				continue
			}
		}
		n := len(buf)
		buf = appendRARP(buf, lm.MAC, lm.VLAN, tagged)
		frames = append(frames, vswitch.Frame{Data: buf[n:len(buf):len(buf)]})
	}
	for len(frames) > 0 {
		n := min(len(frames), 256)
		sent := p.mems()[i].port.Send(frames[:n])
		p.st.announced.Add(uint64(sent))
		frames = frames[n:]
	}
	p.log.Info("bond: announced local MACs", "member", p.mems()[i].name, "macs", len(macs))
}

// appendRARP appends a RARP request from mac (RFC 903; what Open vSwitch
// and QEMU send to announce a MAC), 60 bytes, tagged with vlan if asked.
func appendRARP(b []byte, mac [6]byte, vlan uint16, tagged bool) []byte {
	n := len(b)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac[:]...)
	if tagged {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, vlan&0x0fff)
	}
	b = binary.BigEndian.AppendUint16(b, 0x8035)
	b = append(b, 0, 1, 0x08, 0, 6, 4, 0, 3) // Ethernet, IPv4, 6, 4, reverse request
	b = append(b, mac[:]...)
	b = append(b, 0, 0, 0, 0)
	b = append(b, mac[:]...)
	b = append(b, 0, 0, 0, 0)
	for len(b)-n < 60 {
		b = append(b, 0)
	}
	return b
}

// Input implements uplink.Receiver for a member: LACPDUs go to the
// control loop (copied: the frame is the ring's), frames of members the
// bond does not receive on, and in balance-slb broadcasts on any but one
// member and the bond's own frames reflected back, are dropped and
// counted; the rest enter the switch.
func (m *member) Input(frames []vswitch.Frame) {
	p := m.b
	h := p.handle.Load()
	if h == nil {
		return
	}
	takes := p.rxMask.Load()&(1<<m.idx) != 0
	slb := Mode(p.mode.Load()) == ModeBalanceSLB
	act := p.active.Load()
	keep := 0
	for i := range frames {
		d := frames[i].Data
		if IsSlowProtocols(d) {
			p.slowFrame(m, d)
			continue
		}
		if !takes {
			m.rxDrop.Add(1)
			p.st.rxInactive.Add(1)
			continue
		}
		if slb && len(d) >= 14 && d[0]&1 != 0 {
			// Broadcast and multicast: only on the first carrying member,
			// and never the bond's own, flooded back by the physical switch.
			if int32(m.idx) != act {
				m.rxDrop.Add(1)
				p.st.rxInactive.Add(1)
				continue
			}
			if p.sentFrom([6]byte(d[6:12]), frameVLAN(d)) {
				m.rxDrop.Add(1)
				p.st.rxReflected.Add(1)
				continue
			}
		}
		frames[keep] = frames[i]
		keep++
	}
	m.rx.Add(uint64(keep))
	if keep > 0 {
		h.Input(frames[:keep])
	}
}

// slowFrame hands a Slow Protocols frame to the control loop: decoded
// from the frame once, into a value the loop owns.
func (p *Port) slowFrame(m *member, d []byte) {
	if Mode(p.mode.Load()) != ModeLACP {
		return // not ours to answer; dropped (a bridge never forwards them)
	}
	p.st.lacpRx.Add(1)
	if len(d) < 14 {
		return
	}
	pdu, err := DecodeLACPDU(d[14:])
	if err != nil {
		p.st.lacpBad.Add(1)
		return
	}
	select {
	case p.events <- event{idx: m.idx, pdu: pdu}:
	default:
		p.st.lacpQueueFull.Add(1)
	}
}

func frameVLAN(d []byte) uint16 {
	if len(d) >= 18 && binary.BigEndian.Uint16(d[12:]) == 0x8100 {
		return binary.BigEndian.Uint16(d[14:]) & 0x0fff
	}
	return 0
}

func sentKey(mac [6]byte, vlan uint16) (uint64, int) {
	k := uint64(mac[0])<<40 | uint64(mac[1])<<32 | uint64(mac[2])<<24 | uint64(mac[3])<<16 | uint64(mac[4])<<8 | uint64(mac[5])
	k = k<<12 | uint64(vlan) | 1<<63
	h := k * 0x9e3779b97f4a7c15
	return k, int(h >> (64 - 12))
}

func (p *Port) noteSent(mac [6]byte, vlan uint16) {
	k, i := sentKey(mac, vlan)
	if p.sent[i].Load() != k {
		p.sent[i].Store(k)
	}
}

func (p *Port) sentFrom(mac [6]byte, vlan uint16) bool {
	k, i := sentKey(mac, vlan)
	return p.sent[i].Load() == k
}

// Send implements vswitch.Port: each frame goes to one member, by the
// mode (active-backup: the active one; balance-slb: its source MAC and
// VLAN's bucket; lacp: a hash of its addresses over the distributing
// members). It returns how many the members took, those first in frames
// (grouped by member, in order within each member).
func (p *Port) Send(frames []vswitch.Frame) int {
	if len(frames) == 0 {
		return 0
	}
	tx := *p.txList.Load()
	if len(tx) == 0 {
		p.st.txNoMember.Add(uint64(len(frames)))
		return 0
	}
	mode := Mode(p.mode.Load())
	// LACP's fallback to active-backup publishes one member, as
	// active-backup does.
	if mode == ModeActiveBackup || len(tx) == 1 {
		m := p.mems()[tx[0]]
		n := m.port.Send(frames)
		m.tx.Add(uint64(n))
		return n
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	for i := range p.tx {
		p.tx[i] = p.tx[i][:0]
	}
	for i := range frames {
		d := frames[i].Data
		var mi int32
		if mode == ModeBalanceSLB {
			var src [6]byte
			if len(d) >= 12 {
				src = [6]byte(d[6:12])
			}
			vlan := frameVLAN(d)
			b := slbBucket(src, vlan)
			mi = p.slb[b].Load()
			p.slbLoad[b].Add(uint64(len(d)))
			p.noteSent(src, vlan)
		} else {
			mi = tx[flowHash(d, Hash(p.hash.Load()))%uint32(len(tx))]
		}
		p.tx[mi] = append(p.tx[mi], frames[i])
	}
	n := 0
	rest := p.rest[:0]
	for i, batch := range p.tx {
		if len(batch) == 0 {
			continue
		}
		k := p.mems()[i].port.Send(batch)
		p.mems()[i].tx.Add(uint64(k))
		n += copy(frames[n:], batch[:k])
		rest = append(rest, batch[k:]...)
	}
	copy(frames[n:], rest)
	clear(rest) // keep no references to the caller's frames
	p.rest = rest[:0]
	return n
}

func slbBucket(mac [6]byte, vlan uint16) int {
	_, i := sentKey(mac, vlan)
	return i & (slbBuckets - 1)
}

// flowHash hashes a frame's addresses (and ports) for LACP's transmit
// hash; a frame of one flow always gets the same value.
func flowHash(d []byte, h Hash) uint32 {
	if len(d) < 14 {
		return 0
	}
	x := fnv(2166136261, d[0:12])
	off, et := 12, binary.BigEndian.Uint16(d[12:])
	if et == 0x8100 && len(d) >= 18 {
		x = fnv(x, d[14:16])
		off, et = 16, binary.BigEndian.Uint16(d[16:])
	}
	if h == HashL2 {
		return x
	}
	l3 := d[off+2:]
	var proto byte
	var l4 []byte
	switch {
	case et == 0x0800 && len(l3) >= 20 && l3[0]>>4 == 4:
		ihl := int(l3[0]&15) * 4
		x = fnv(2166136261, l3[12:20]) // addresses, not MACs: routed flows spread too
		proto = l3[9]
		frag := binary.BigEndian.Uint16(l3[6:])&0x3fff != 0
		if !frag && ihl >= 20 && len(l3) >= ihl+4 {
			l4 = l3[ihl : ihl+4]
		}
	case et == 0x86dd && len(l3) >= 40:
		x = fnv(2166136261, l3[8:40])
		proto = l3[6]
		if len(l3) >= 44 {
			l4 = l3[40:44]
		}
	default:
		return x
	}
	if h == HashL34 && (proto == 6 || proto == 17) && l4 != nil {
		x = fnv(x, l4)
	}
	return x
}

func fnv(x uint32, b []byte) uint32 {
	for _, c := range b {
		x ^= uint32(c)
		x *= 16777619
	}
	return x
}

// MemberStatus is a member's state.
type MemberStatus struct {
	Name     string
	Carrier  bool // the link's carrier
	Usable   bool // carrier held through the up/down delay
	Carrying bool // frames are sent on it
	RxFrames uint64
	TxFrames uint64
	RxDrops  uint64 // frames received where the bond does not take them
	LACP     *MemberInfo
}

// Stats are a bond's counters.
type Stats struct {
	Mode          string // the mode in effect: the configured one, or active-backup as LACP's fallback
	LACPAggregate bool   // an LACP partner aggregates with us
	LACPRx        uint64 // LACPDUs received
	LACPBad       uint64 // malformed LACPDUs, dropped
	LACPQueueFull uint64 // LACPDUs dropped: the control loop was behind
	LACPTx        uint64
	Failovers     uint64 // traffic moved to other members
	Announced     uint64 // RARP announcements sent after failovers
	RxInactive    uint64 // frames received on members the bond does not take them from
	RxReflected   uint64 // balance-slb: our own broadcasts flooded back
	TxNoMember    uint64 // frames not sent: no member carries traffic
	Rebalanced    uint64 // balance-slb buckets moved
	Members       []MemberStatus
}

// Stats returns the bond's counters and its members' state (asked of the
// control loop: the zero Stats before Start and after Close).
func (p *Port) Stats() Stats {
	if !p.started.Load() {
		return Stats{}
	}
	c := make(chan Stats, 1)
	select {
	case p.statsReq <- c:
	case <-p.done:
		return Stats{}
	}
	select {
	case s := <-c:
		return s
	case <-p.done:
		return Stats{}
	}
}

// stats builds Stats in the control loop.
func (p *Port) stats() Stats {
	c := &p.st
	s := Stats{Mode: p.cfg.Mode.String(), LACPAggregate: p.lacp.Aggregated(), LACPRx: c.lacpRx.Load(), LACPBad: c.lacpBad.Load(),
		LACPQueueFull: c.lacpQueueFull.Load(), LACPTx: c.lacpTx.Load(), Failovers: c.failovers.Load(), Announced: c.announced.Load(),
		RxInactive: c.rxInactive.Load(), RxReflected: c.rxReflected.Load(), TxNoMember: c.txNoMember.Load(), Rebalanced: c.rebalanced.Load()}
	if p.cfg.Mode == ModeLACP && !s.LACPAggregate {
		s.Mode = "lacp (no partner)"
		if p.cfg.LACPFallback {
			s.Mode = "lacp (no partner: active-backup)"
		}
	}
	tx := *p.txList.Load()
	for _, m := range p.mems() {
		if m.gone {
			continue
		}
		ms := MemberStatus{Name: m.name, Carrier: m.carrier, Usable: m.usable, Carrying: slices.Contains(tx, int32(m.idx)),
			RxFrames: m.rx.Load(), TxFrames: m.tx.Load(), RxDrops: m.rxDrop.Load()}
		if p.cfg.Mode == ModeLACP {
			i := p.lacp.Info(m.idx)
			ms.LACP = &i
		}
		s.Members = append(s.Members, ms)
	}
	return s
}

// Reconfigure applies a new configuration live, without disturbing the
// members that stay: members are added (their uplinks opened first) and
// removed (traffic moved off, then closed), and the mode, primary,
// delays, LACP activity, rate, fallback and hash, and the rebalancing
// interval change in place. What cannot change live (the members'
// uplink settings, the LACP system) is an error: restart the port.
func (p *Port) Reconfigure(c Config) error {
	if c.Uplink.TX != p.cfg.Uplink.TX || c.SystemPriority != 0 && c.SystemPriority != p.cfg.SystemPriority ||
		c.SystemID != ([6]byte{}) && c.SystemID != p.cfg.SystemID || c.Key != 0 && c.Key != p.cfg.Key {
		return errors.New("bond: the members' uplink settings and the LACP system change only with a restart")
	}
	if len(c.Members) == 0 {
		return errors.New("bond: no members")
	}
	if c.Rebalance == 0 {
		c.Rebalance = 10 * time.Second
	}
	if c.Primary != "" && !slices.Contains(c.Members, c.Primary) {
		return fmt.Errorf("bond: primary %s is not a member", c.Primary)
	}
	if !p.started.Load() {
		return errors.New("bond: Reconfigure before Start")
	}
	// Open the new members here, outside the control loop.
	have := map[string]bool{}
	free := []int{}
	for i, m := range p.mems() {
		if m.gone {
			free = append(free, i)
		} else {
			have[m.name] = true
		}
	}
	next := len(p.mems())
	var added []*member
	for _, name := range c.Members {
		if have[name] {
			continue
		}
		var slot int
		if len(free) > 0 {
			slot, free = free[0], free[1:]
		} else {
			slot = next
			next++
		}
		if slot >= maxMembers {
			closeAll(added)
			return fmt.Errorf("bond: member %s: at most %d members", name, maxMembers)
		}
		m, err := p.openMember(slot, name)
		if err != nil {
			closeAll(added)
			return err
		}
		added = append(added, m)
	}
	errc := make(chan error, 1)
	var removed []*member
	op := func() {
		now := time.Now()
		ms := slices.Clone(p.mems())
		for _, m := range added {
			if m.idx < len(ms) {
				ms[m.idx] = m
			} else {
				ms = append(ms, m)
				p.lacp.AddPort(uint16(m.idx + 1))
			}
		}
		for _, m := range ms {
			if !m.gone && !slices.Contains(c.Members, m.name) {
				m.gone, m.carrier, m.usable, m.pending = true, false, false, time.Time{}
				p.lacp.SetLink(m.idx, false, now)
				removed = append(removed, m)
			}
		}
		p.mem.Store(&ms)
		p.cfg.Mode, p.cfg.Primary, p.cfg.UpDelay, p.cfg.DownDelay = c.Mode, c.Primary, c.UpDelay, c.DownDelay
		p.cfg.LACPFallback, p.cfg.Hash, p.cfg.Rebalance, p.cfg.Members = c.LACPFallback, c.Hash, c.Rebalance, c.Members
		p.mode.Store(uint32(c.Mode))
		p.hash.Store(uint32(c.Hash))
		p.lacp.SetActivity(c.LACPRate, c.LACPPassive)
		p.cfg.LACPRate, p.cfg.LACPPassive = c.LACPRate, c.LACPPassive
		p.decide(now) // traffic off the removed members
		errc <- nil
	}
	select {
	case p.ops <- op:
	case <-p.done:
		closeAll(added)
		return errors.New("bond: closed")
	}
	if err := <-errc; err != nil {
		return err
	}
	for _, m := range added {
		if err := m.port.Start(m); err != nil {
			p.log.Warn("bond: a new member did not start", "member", m.name, "error", err)
		}
		// Its carrier, as the control loop would read it at start.
		name := m.name
		select {
		case p.ops <- func() { p.setCarrier(m, carrier(name), time.Now()); p.decide(time.Now()) }:
		case <-p.done:
		}
	}
	for _, m := range removed {
		m.port.Close()
	}
	p.log.Info("bond reconfigured", "members", c.Members, "mode", c.Mode.String(), "added", len(added), "removed", len(removed))
	return nil
}

func closeAll(ms []*member) {
	for _, m := range ms {
		m.port.Close()
	}
}
