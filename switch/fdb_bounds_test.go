package vswitch

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tenant isolation in the FDB: bounds that hold under a
// concurrent flood of source MACs, MAC-move protection against a port that
// sends another port's MAC, and port security by default for ports with a
// MAC of their own.

// srcPort is a Port that counts what it is sent by source MAC, keeping no
// frames. mac, when set, is its own MAC (AddressedPort).
type srcPort struct {
	mu    sync.Mutex
	bySrc map[MAC]int
	n     atomic.Uint64
	mac   MAC
}

func newSrcPort() *srcPort { return &srcPort{bySrc: map[MAC]int{}} }

func (p *srcPort) Send(frames []Frame) int {
	p.mu.Lock()
	for _, f := range frames {
		p.bySrc[MAC(f.Data[6:12])]++
	}
	p.mu.Unlock()
	p.n.Add(uint64(len(frames)))
	return len(frames)
}

func (p *srcPort) Caps() Caps { return 0 }

func (p *srcPort) from(m MAC) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bySrc[m]
}

// addrPort is a srcPort with a MAC of its own.
type addrPort struct{ *srcPort }

func (p addrPort) MAC() (MAC, bool) { return p.mac, p.mac != MAC{} }

var (
	_ Port          = (*srcPort)(nil)
	_ AddressedPort = addrPort{}
)

// boundsSwitch is a switch of access ports in VLAN 1 that count by source.
type boundsSwitch struct {
	t     *testing.T
	sw    *Switch
	clock *ManualClock
	h     map[string]*PortHandle
	p     map[string]*srcPort
}

func newBoundsSwitch(t *testing.T, cfg Config) *boundsSwitch {
	bs := &boundsSwitch{t: t, clock: NewManualClock(1_000_000_000_000), h: map[string]*PortHandle{}, p: map[string]*srcPort{}}
	cfg.Clock = bs.clock
	bs.sw = New(cfg)
	return bs
}

// add attaches an access port in VLAN 1; own, when not zero, is its MAC.
func (bs *boundsSwitch) add(c PortConfig, own MAC) {
	bs.t.Helper()
	if c.PVID == 0 {
		c.Mode, c.PVID = ModeAccess, 1
	}
	sp := newSrcPort()
	var p Port = sp
	if own != (MAC{}) {
		sp.mac = own
		p = addrPort{sp}
	}
	h, err := bs.sw.AddPort(c, p)
	if err != nil {
		bs.t.Fatalf("AddPort(%q): %v", c.Name, err)
	}
	bs.h[c.Name], bs.p[c.Name] = h, sp
}

func (bs *boundsSwitch) send(port string, dst, src MAC) {
	bs.h[port].Input([]Frame{{Data: eth(dst, src, 0x0800, 50)}})
}

func (bs *boundsSwitch) drops(port string, r DropReason) uint64 {
	return bs.h[port].Counters().Drops[r]
}

// entryOf returns the FDB entry of mac in VLAN 1.
func (bs *boundsSwitch) entryOf(m MAC) (FDBEntry, bool) {
	for _, e := range bs.sw.FDB() {
		if e.VLAN == 1 && e.MAC == m {
			return e, true
		}
	}
	return FDBEntry{}, false
}

// floodSrc is the i-th source MAC of flooder k: locally administered,
// distinct for every (k, i), scattered by an odd multiplier (a bijection of
// 32-bit words) so that they look random to the FDB's hash.
func floodSrc(k byte, i uint32) MAC {
	x := i * 0x9e3779b1
	return MAC{0x06, k, byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}
}

// flood sends n frames with fresh source MACs from port in batches of 64,
// to the broadcast address.
func (bs *boundsSwitch) flood(port string, k byte, n int) {
	batch := make([]Frame, 64)
	for i := range batch {
		batch[i].Data = eth(Broadcast, MAC{}, 0x0800, 50)
	}
	for i := 0; i < n; i += len(batch) {
		m := min(len(batch), n-i)
		for j := range m {
			s := floodSrc(k, uint32(i+j))
			copy(batch[j].Data[6:], s[:])
		}
		bs.h[port].Input(batch[:m])
	}
}

// victims: v1 and v2 have learned MACs (v1: 0xa1, 0xa2; v2: 0xb1) before
// the attack.
func (bs *boundsSwitch) victims() {
	bs.add(access("v1", 1), MAC{})
	bs.add(access("v2", 1), MAC{})
	bs.add(access("w", 1), MAC{}) // a bystander: sees only what is flooded
	bs.send("v1", Broadcast, mac(0xa1))
	bs.send("v1", Broadcast, mac(0xa2))
	bs.send("v2", Broadcast, mac(0xb1))
}

// victimTraffic sends unicast between the victims' learned MACs until stop,
// and returns how many frames each way.
func (bs *boundsSwitch) victimTraffic(stop <-chan struct{}, wg *sync.WaitGroup, sent *[2]atomic.Uint64) {
	for k, d := range [][3]any{{"v1", mac(0xb1), mac(0xa1)}, {"v2", mac(0xa2), mac(0xb1)}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := []Frame{{Data: eth(d[1].(MAC), d[2].(MAC), 0x0800, 50)}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				bs.h[d[0].(string)].Input(f)
				sent[k].Add(1)
			}
		}()
	}
}

// checkVictims: every victim frame went to its destination only.
func (bs *boundsSwitch) checkVictims(sent *[2]atomic.Uint64) {
	t := bs.t
	t.Helper()
	if got, want := bs.p["v2"].from(mac(0xa1)), int(sent[0].Load()); got != want+1 { // +1: a1's first broadcast
		t.Errorf("v2 got %d frames from a1; v1 sent %d (+1 broadcast)", got, want)
	}
	if got, want := bs.p["v1"].from(mac(0xb1)), int(sent[1].Load()); got != want+1 { // +1: b1's first broadcast
		t.Errorf("v1 got %d frames from b1; v2 sent %d (+1 broadcast)", got, want)
	}
	// The bystander saw only the victims' first broadcasts: no unicast
	// between them was flooded.
	for _, m := range []MAC{mac(0xa1), mac(0xa2), mac(0xb1)} {
		if n := bs.p["w"].from(m); n != 1 {
			t.Errorf("bystander got %d frames from %v; want 1 (its first broadcast): victim unicast was flooded", n, m)
		}
	}
	for _, v := range []string{"v1", "v2"} {
		if d := bs.h[v].Counters().Drops; d != ([NumDropReasons]uint64{}) {
			t.Errorf("%s dropped frames: %v", v, d)
		}
	}
}

// Several ports flood fresh source MACs at once, each past its MAC limit
// (the FDB has room). Each keeps exactly its limit, every other frame is a
// counted mac_limit drop, the victims' traffic stays unicast meanwhile and
// a victim still learns a new MAC.
func TestFDBFloodPerPortLimit(t *testing.T) {
	const flooders, limit, n = 4, 300, 5000
	bs := newBoundsSwitch(t, Config{})
	bs.victims()
	for k := range flooders {
		c := access(fmt.Sprint("f", k), 1)
		c.MACLimit = limit
		bs.add(c, MAC{})
	}
	stop := make(chan struct{})
	var vwg, fwg sync.WaitGroup
	var sent [2]atomic.Uint64
	bs.victimTraffic(stop, &vwg, &sent)
	for k := range flooders {
		fwg.Add(1)
		go func() { defer fwg.Done(); bs.flood(fmt.Sprint("f", k), byte(k), n) }()
	}
	fwg.Wait()
	// Mid-attack, with every flooder at its limit, a victim's new MAC learns.
	bs.send("v1", mac(0xb1), mac(0xa3))
	bs.send("v2", mac(0xa3), mac(0xb1))
	close(stop)
	vwg.Wait()

	for k := range flooders {
		c := bs.h[fmt.Sprint("f", k)].Counters()
		if c.LearnedMACs != limit || c.Drops[DropMACLimit] != n-limit || c.Drops[DropFDBFull] != 0 {
			t.Errorf("f%d: learned %d, mac_limit drops %d, fdb_full drops %d; want %d, %d, 0",
				k, c.LearnedMACs, c.Drops[DropMACLimit], c.Drops[DropFDBFull], limit, n-limit)
		}
	}
	if e, ok := bs.entryOf(mac(0xa3)); !ok || e.Port != "v1" {
		t.Errorf("victim's new MAC: %+v, %v; want learned on v1", e, ok)
	}
	if got := bs.p["v1"].from(mac(0xb1)); got != int(sent[1].Load())+2 { // first broadcast, the reply to a3
		t.Errorf("v1 got %d frames from b1; want %d", got, sent[1].Load()+2)
	}
	sent[1].Add(1) // the reply to a3, for checkVictims
	bs.checkVictims(&sent)
	sc := bs.sw.SwitchCounters()
	if want := flooders*limit + 4; sc.DynamicEntries != want || sc.FDBEntries != want {
		t.Errorf("FDB: %d learned, %d entries; want %d", sc.DynamicEntries, sc.FDBEntries, want)
	}
}

// Flooders whose MAC limits add up to more than the FDB's maximum flood at
// once: the FDB never holds more than its maximum (watched throughout),
// every frame is learned or a counted drop, the victims keep forwarding,
// and a victim's new MAC is refused (fdb_full) until room comes back. No
// flooder evicts another port's entries.
func TestFDBFloodGlobalCap(t *testing.T) {
	const flooders, limit, n, maxEntries = 6, 400, 3000, 1500
	bs := newBoundsSwitch(t, Config{FDBMaxEntries: maxEntries})
	bs.victims()
	for k := range flooders {
		c := access(fmt.Sprint("f", k), 1)
		c.MACLimit = limit
		bs.add(c, MAC{})
	}
	stop, watchStop := make(chan struct{}), make(chan struct{})
	var vwg, fwg sync.WaitGroup
	var sent [2]atomic.Uint64
	var peak atomic.Int64
	watched := make(chan struct{})
	go func() { // the bound holds at every moment, not just at the end
		defer close(watched)
		for {
			sc := bs.sw.SwitchCounters()
			if d := int64(max(sc.DynamicEntries, sc.FDBEntries)); d > peak.Load() {
				peak.Store(d)
			}
			select {
			case <-watchStop:
				return
			default:
			}
		}
	}()
	bs.victimTraffic(stop, &vwg, &sent)
	for k := range flooders {
		fwg.Add(1)
		go func() { defer fwg.Done(); bs.flood(fmt.Sprint("f", k), byte(k), n) }()
	}
	fwg.Wait()
	close(stop)
	vwg.Wait()
	close(watchStop)
	<-watched

	if p := peak.Load(); p > maxEntries {
		t.Errorf("FDB held %d entries at one point; its maximum is %d", p, maxEntries)
	}
	var learned, full uint64
	for k := range flooders {
		c := bs.h[fmt.Sprint("f", k)].Counters()
		if c.LearnedMACs > limit {
			t.Errorf("f%d learned %d; its limit is %d", k, c.LearnedMACs, limit)
		}
		if got := uint64(c.LearnedMACs) + c.Drops[DropMACLimit] + c.Drops[DropFDBFull]; got != n {
			t.Errorf("f%d: %d learned + %d mac_limit + %d fdb_full = %d; want %d frames accounted for",
				k, c.LearnedMACs, c.Drops[DropMACLimit], c.Drops[DropFDBFull], got, n)
		}
		learned += uint64(c.LearnedMACs)
		full += c.Drops[DropFDBFull]
	}
	if learned != maxEntries-3 || full == 0 {
		t.Errorf("flooders learned %d (fdb_full drops %d); want %d: the FDB full, the victims' 3 entries kept", learned, full, maxEntries-3)
	}
	sc := bs.sw.SwitchCounters()
	if sc.DynamicEntries != maxEntries || sc.FDBEntries != maxEntries || sc.MaxEntries != maxEntries || len(bs.sw.FDB()) != maxEntries {
		t.Errorf("switch counters %+v, FDB dump %d; want %d entries", sc, len(bs.sw.FDB()), maxEntries)
	}
	bs.checkVictims(&sent)

	// Full: a victim's new MAC is refused and counted, and trace says why.
	r, err := bs.sw.Trace("v1", TraceFrame{SrcMAC: mac(0xa3), DstMAC: mac(0xb1)})
	if err != nil || r.Drop != "fdb_full" || !hasStep(r, "learning", "drop", fmt.Sprintf("maximum (fdb max entries %d)", maxEntries)) {
		t.Errorf("trace of a new MAC in a full FDB: %+v, %v", r, err)
	}
	bs.send("v1", mac(0xb1), mac(0xa3))
	if d := bs.drops("v1", DropFDBFull); d != 1 {
		t.Errorf("v1 fdb_full drops = %d; want 1", d)
	}
	// Static entries are the operator's: they do not count and still go in.
	if err := bs.sw.AddStatic("v2", 1, mac(0xb9)); err != nil {
		t.Fatal(err)
	}
	// Room comes back when a flooder's entries go: the victim learns.
	// (The flooder that learned most: which one won the race for the
	// room is up to the scheduler.)
	most := "f0"
	for k := range flooders {
		if name := fmt.Sprint("f", k); bs.h[name].Counters().LearnedMACs > bs.h[most].Counters().LearnedMACs {
			most = name
		}
	}
	if _, err := bs.sw.Flush(most, 0); err != nil {
		t.Fatal(err)
	}
	bs.send("v1", mac(0xb1), mac(0xa3))
	if e, ok := bs.entryOf(mac(0xa3)); !ok || e.Port != "v1" || bs.drops("v1", DropFDBFull) != 1 {
		t.Errorf("after a flush the victim's new MAC: %+v, %v (fdb_full drops %d)", e, ok, bs.drops("v1", DropFDBFull))
	}
	if sc := bs.sw.SwitchCounters(); sc.DynamicEntries > maxEntries || sc.FDBEntries != sc.DynamicEntries+1 {
		t.Errorf("after the flush: %+v", sc)
	}
}

// With no MAC limit configured anywhere, a port gets DefaultMACLimit;
// NoMACLimit lifts it, and then only the switch's maximum bounds the port.
func TestFDBDefaultLimits(t *testing.T) {
	bs := newBoundsSwitch(t, Config{FDBMaxEntries: 1500})
	bs.add(access("a", 1), MAC{})
	u := access("u", 1)
	u.MACLimit = NoMACLimit
	bs.add(u, MAC{})
	if got := bs.h["a"].Config().MACLimit; got != DefaultMACLimit {
		t.Errorf("a's MAC limit = %d; want the default %d", got, DefaultMACLimit)
	}
	bs.flood("a", 1, DefaultMACLimit+100)
	if c := bs.h["a"].Counters(); c.LearnedMACs != DefaultMACLimit || c.Drops[DropMACLimit] != 100 {
		t.Errorf("a: learned %d, mac_limit drops %d; want %d, 100", c.LearnedMACs, c.Drops[DropMACLimit], DefaultMACLimit)
	}
	bs.flood("u", 2, 1000)
	if c := bs.h["u"].Counters(); c.LearnedMACs != 1500-DefaultMACLimit || c.Drops[DropFDBFull] != 1000-(1500-DefaultMACLimit) {
		t.Errorf("u: learned %d, fdb_full drops %d; want %d, %d", c.LearnedMACs, c.Drops[DropFDBFull],
			1500-DefaultMACLimit, 1000-(1500-DefaultMACLimit))
	}
	// The switch's own default for ports.
	bs2 := newBoundsSwitch(t, Config{MACLimit: 10})
	bs2.add(access("a", 1), MAC{})
	bs2.flood("a", 1, 20)
	if c := bs2.h["a"].Counters(); c.LearnedMACs != 10 || bs2.h["a"].Config().MACLimit != 10 {
		t.Errorf("Config.MACLimit 10: learned %d, config %d", c.LearnedMACs, bs2.h["a"].Config().MACLimit)
	}
	if _, err := bs2.sw.AddPort(PortConfig{Name: "bad", PVID: 1, MACLimit: -2}, newSrcPort()); err == nil {
		t.Error("AddPort accepted MAC limit -2")
	}
}

// MAC theft: x sends frames with v's MAC while v is active, from several
// goroutines while v and p talk. v's entry stays, each stolen frame is a
// counted mac_move drop, p's traffic to v reaches v and never x. Once v
// has been silent for the hold-down, the MAC moves (a station move).
func TestMACTheftHoldDown(t *testing.T) {
	bs := newBoundsSwitch(t, Config{})
	for _, n := range []string{"v", "x", "p"} {
		bs.add(access(n, 1), MAC{})
	}
	vm, pm := mac(0x0a), mac(0x0b)
	bs.send("v", Broadcast, vm)
	bs.send("p", vm, pm)

	const thieves, stolen, rounds = 3, 2000, 5
	var toV atomic.Uint64
	for round := range rounds {
		var wg sync.WaitGroup
		for range thieves {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := []Frame{{Data: eth(Broadcast, vm, 0x0800, 50)}, {Data: eth(pm, vm, 0x0800, 50)}}
				for range stolen / 2 {
					bs.h["x"].Input(f)
				}
			}()
		}
		wg.Add(1)
		go func() { // v's peer keeps sending to v meanwhile
			defer wg.Done()
			f := []Frame{{Data: eth(vm, pm, 0x0800, 50)}}
			for range 500 {
				bs.h["p"].Input(f)
				toV.Add(1)
			}
		}()
		wg.Wait()
		// v stays active: a frame every 900 ms keeps it within the hold-down.
		bs.clock.Advance(900 * time.Millisecond)
		bs.send("v", pm, vm)
		if e, ok := bs.entryOf(vm); !ok || e.Port != "v" {
			t.Fatalf("round %d: v's MAC is on %+v (%v)", round, e, ok)
		}
	}
	if d, want := bs.drops("x", DropMACMove), uint64(rounds*thieves*stolen); d != want {
		t.Errorf("x mac_move drops = %d; want %d (every stolen frame)", d, want)
	}
	if got := bs.p["v"].from(pm); got != int(toV.Load())+1 { // +1: p's first frame
		t.Errorf("v got %d frames from p; p sent %d (+1)", got, toV.Load())
	}
	if got := bs.p["x"].from(pm); got != 0 {
		t.Errorf("the thief got %d frames meant for v", got)
	}
	if got := bs.p["p"].from(vm); got != rounds+1 { // v's first broadcast and one frame a round
		t.Errorf("p got %d frames from v's MAC; want %d: a stolen frame got through", got, rounds+1)
	}
	if m := bs.sw.SwitchCounters().Moves; m != 0 {
		t.Errorf("moves = %d; want 0", m)
	}
	r, err := bs.sw.Trace("x", TraceFrame{SrcMAC: vm, DstMAC: Broadcast})
	if err != nil || r.Drop != "mac_move" || !hasStep(r, "learning", "drop", "is on port v, seen 0s ago: it moves only after 1s") {
		t.Errorf("trace of a stolen frame: %+v, %v", r, err)
	}

	// v goes quiet (it moved): after the hold-down one frame from x moves it.
	bs.clock.Advance(DefaultMACMoveHoldDown - time.Nanosecond)
	bs.send("x", Broadcast, vm)
	if e, _ := bs.entryOf(vm); e.Port != "v" {
		t.Errorf("moved before the hold-down: on %s", e.Port)
	}
	bs.clock.Advance(time.Nanosecond)
	if r, _ := bs.sw.Trace("x", TraceFrame{SrcMAC: vm, DstMAC: Broadcast}); r.Drop != "" || !hasStep(r, "learning", "pass", "would move from port v") {
		t.Errorf("trace after the hold-down: %+v", r)
	}
	bs.send("x", Broadcast, vm)
	if e, _ := bs.entryOf(vm); e.Port != "x" || bs.sw.SwitchCounters().Moves != 1 {
		t.Errorf("after the hold-down v's MAC is on %s (moves %d); want x", e.Port, bs.sw.SwitchCounters().Moves)
	}
	before := bs.p["x"].from(pm)
	bs.send("p", vm, pm)
	if bs.p["x"].from(pm) != before+1 {
		t.Error("traffic to the moved MAC does not follow it")
	}
	// And now the old port is the one held off.
	bs.send("v", Broadcast, vm)
	if d := bs.drops("v", DropMACMove); d != 1 {
		t.Errorf("v mac_move drops = %d; want 1", d)
	}
}

// A negative hold-down turns MAC-move protection off: one frame moves.
func TestMACMoveNoHoldDown(t *testing.T) {
	bs := newBoundsSwitch(t, Config{MACMoveHoldDown: -1})
	bs.add(access("a", 1), MAC{})
	bs.add(access("b", 1), MAC{})
	bs.send("a", Broadcast, mac(1))
	bs.send("b", Broadcast, mac(1))
	if e, _ := bs.entryOf(mac(1)); e.Port != "b" || bs.drops("b", DropMACMove) != 0 {
		t.Errorf("without hold-down: on %s, mac_move drops %d", e.Port, bs.drops("b", DropMACMove))
	}
}

// Static entries never move, however long their MAC is silent: frames with
// a static MAC from elsewhere pass without learning anything.
func TestStaticEntryNeverMoves(t *testing.T) {
	bs := newBoundsSwitch(t, Config{})
	for _, n := range []string{"a", "b", "c"} {
		bs.add(access(n, 1), MAC{})
	}
	if err := bs.sw.AddStatic("a", 1, mac(7)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, time.Second, time.Hour} {
		bs.clock.Advance(d)
		bs.send("b", Broadcast, mac(7))
		if e, _ := bs.entryOf(mac(7)); e.Port != "a" || !e.Static {
			t.Fatalf("after %v the static entry is %+v", d, e)
		}
	}
	bs.send("c", mac(7), mac(3))
	if bs.p["a"].from(mac(3)) != 1 || bs.p["b"].from(mac(3)) != 0 {
		t.Error("traffic to the static MAC did not go to its port only")
	}
	if sc := bs.sw.SwitchCounters(); sc.Moves != 0 || sc.DynamicEntries != 1 { // c's mac(3)
		t.Errorf("counters %+v", sc)
	}
}

// A port with a MAC of its own accepts only that source MAC by default (and
// its AllowedMACs); its entry is pinned and never moves while it lives,
// even to a port without port security after the hold-down. Port security
// can be turned off, live.
func TestPortSecurityDefault(t *testing.T) {
	bs := newBoundsSwitch(t, Config{})
	own := MAC{0x52, 0x54, 0, 0, 0, 1}
	bs.add(access("g", 1), own)
	bs.add(access("q", 1), MAC{}) // no MAC of its own: no port security
	bs.add(access("w", 1), MAC{})
	if m, ok := bs.h["g"].MAC(); !ok || m != own {
		t.Fatalf("g's MAC = %v, %v", m, ok)
	}
	bs.send("g", Broadcast, own)
	bs.send("g", Broadcast, mac(9)) // spoofed
	if d := bs.drops("g", DropSpoofed); d != 1 || bs.p["w"].from(mac(9)) != 0 || bs.p["w"].from(own) != 1 {
		t.Errorf("spoofed drops %d, w got %d spoofed and %d genuine frames", d, bs.p["w"].from(mac(9)), bs.p["w"].from(own))
	}
	if r, _ := bs.sw.Trace("g", TraceFrame{SrcMAC: mac(9), DstMAC: Broadcast}); r.Drop != "spoofed" ||
		!hasStep(r, "source", "drop", fmt.Sprintf("is not the port's own MAC %v (port security)", own)) {
		t.Errorf("trace of a spoofed frame: %+v", r)
	}
	if e, _ := bs.entryOf(own); !e.Pinned || e.Port != "g" {
		t.Errorf("g's own entry: %+v; want pinned on g", e)
	}
	// q, without port security, sends g's MAC long after g went quiet: the
	// hold-down is over, but g's own MAC stays (until it ages out).
	bs.clock.Advance(time.Minute)
	bs.send("q", Broadcast, own)
	if e, _ := bs.entryOf(own); e.Port != "g" || bs.drops("q", DropMACMove) != 1 {
		t.Errorf("g's MAC after q sent it: %+v, q mac_move drops %d", e, bs.drops("q", DropMACMove))
	}
	if r, _ := bs.sw.Trace("q", TraceFrame{SrcMAC: own, DstMAC: Broadcast}); r.Drop != "mac_move" ||
		!hasStep(r, "learning", "drop", "is port g's own MAC (port security): it does not move") {
		t.Errorf("trace of q stealing g's MAC: %+v", r)
	}
	bs.clock.Advance(defaultAgingTime)
	bs.send("q", Broadcast, own) // aged out: a plain station move
	if e, _ := bs.entryOf(own); e.Port != "q" || e.Pinned {
		t.Errorf("after aging g's MAC is %+v; want learned (not pinned) on q", e)
	}

	// AllowedMACs add to the own MAC.
	c := bs.h["g"].Config()
	c.AllowedMACs = []MAC{mac(9)}
	if err := bs.sw.UpdatePort(c); err != nil {
		t.Fatal(err)
	}
	bs.send("g", Broadcast, mac(9))
	bs.send("g", Broadcast, mac(10))
	if bs.p["w"].from(mac(9)) != 1 || bs.drops("g", DropSpoofed) != 2 {
		t.Errorf("with allowed MACs: w got %d from mac 9, spoofed drops %d", bs.p["w"].from(mac(9)), bs.drops("g", DropSpoofed))
	}
	if e, _ := bs.entryOf(mac(9)); e.Pinned {
		t.Error("an allowed MAC (not the port's own) was pinned")
	}

	// Opt-out, live: any source; the own MAC's entry is no longer pinned.
	c.AllowedMACs, c.PortSecurity = nil, PortSecurityOff
	if err := bs.sw.UpdatePort(c); err != nil {
		t.Fatal(err)
	}
	bs.clock.Advance(defaultAgingTime) // q's entry of g's MAC ages out
	bs.send("g", Broadcast, mac(11))
	bs.send("g", Broadcast, own)
	if bs.p["w"].from(mac(11)) != 1 || bs.drops("g", DropSpoofed) != 2 {
		t.Errorf("port security off: w got %d from mac 11, spoofed drops %d", bs.p["w"].from(mac(11)), bs.drops("g", DropSpoofed))
	}
	if e, _ := bs.entryOf(own); e.Port != "g" || e.Pinned {
		t.Errorf("port security off: g's own entry %+v; want unpinned on g", e)
	}
	if r, _ := bs.sw.Trace("g", TraceFrame{SrcMAC: mac(12), DstMAC: Broadcast}); !hasStep(r, "source", "pass", "port security off") {
		t.Errorf("trace with port security off: %+v", r)
	}
	bs.clock.Advance(DefaultMACMoveHoldDown)
	bs.send("q", Broadcast, own) // not pinned: moves after the hold-down
	if e, _ := bs.entryOf(own); e.Port != "q" {
		t.Errorf("unpinned own MAC did not move after the hold-down: %+v", e)
	}

	// Turning it back on flushes g's entries and pins anew.
	c.PortSecurity = PortSecurityOn
	if err := bs.sw.UpdatePort(c); err != nil {
		t.Fatal(err)
	}
	if n := bs.h["g"].Counters().LearnedMACs; n != 0 {
		t.Errorf("g has %d learned MACs after port security changed; want 0 (flushed)", n)
	}

	// A port with a group MAC of its own is refused.
	bad := newSrcPort()
	bad.mac = Broadcast
	if _, err := bs.sw.AddPort(access("bad", 1), addrPort{bad}); err == nil {
		t.Error("AddPort accepted a port whose MAC is a group address")
	}
	// Without a MAC of its own, port security changes nothing.
	bs.send("q", Broadcast, mac(13))
	if bs.drops("q", DropSpoofed) != 0 {
		t.Error("a port without a MAC of its own dropped a frame as spoofed")
	}
	if _, err := bs.sw.AddPort(PortConfig{Name: "ps", PVID: 1, PortSecurity: 7}, newSrcPort()); err == nil {
		t.Error("AddPort accepted port security 7")
	}
}

// The learning rule, decision by decision.
func TestLearnDecision(t *testing.T) {
	sec := int64(time.Second)
	entry := learnState{found: true, live: true, age: 2 * sec, holdDown: sec}
	for _, tc := range []struct {
		name string
		e    func(e *learnState)
		want learnOp
	}{
		{"new", func(e *learnState) { *e = learnState{} }, learnNew},
		{"new, port full", func(e *learnState) { *e = learnState{limit: 2, learned: 2} }, learnLimit},
		{"new, fdb full", func(e *learnState) { *e = learnState{full: true} }, learnFull},
		{"new, both", func(e *learnState) { *e = learnState{limit: 2, learned: 2, full: true} }, learnLimit},
		{"static", func(e *learnState) { e.static, e.age = true, 0 }, learnStatic},
		{"refresh", func(e *learnState) { e.onPort = true }, learnRefresh},
		{"refresh, fdb full", func(e *learnState) { e.onPort, e.full, e.limit, e.learned = true, true, 1, 5 }, learnRefresh},
		{"move", func(e *learnState) {}, learnMove},
		{"move, fdb full: the entry is reused", func(e *learnState) { e.full = true }, learnMove},
		{"move into a full port", func(e *learnState) { e.limit, e.learned = 3, 3 }, learnLimit},
		{"held", func(e *learnState) { e.age = sec - 1 }, learnHeld},
		{"held, negative age", func(e *learnState) { e.age = -5 }, learnHeld},
		{"no hold-down", func(e *learnState) { e.age, e.holdDown = 0, 0 }, learnMove},
		{"no hold-down, negative age", func(e *learnState) { e.age, e.holdDown = -5, 0 }, learnMove},
		{"pinned", func(e *learnState) { e.pinned, e.age = true, time.Hour.Nanoseconds() }, learnPinned},
		{"pinned, aged out", func(e *learnState) { e.pinned, e.live = true, false }, learnMove},
		{"held, aged out", func(e *learnState) { e.age, e.live = 0, false }, learnMove},
	} {
		e := entry
		tc.e(&e)
		if got := learnDecision(e); got != tc.want {
			t.Errorf("%s: learnDecision(%+v) = %d; want %d", tc.name, e, got, tc.want)
		}
	}
}

// Trace and forwarding decide learning with one function: over random
// frames (stolen, new, refreshed, a port's own MAC) from ports with limits
// and port security, on a small FDB with a hold-down, at random times,
// Trace's drop reason is what Input then counts.
func TestTraceAgreesWithLearning(t *testing.T) {
	bs := newBoundsSwitch(t, Config{FDBMaxEntries: 8, AgingTime: 10 * time.Second})
	own := MAC{0x52, 0x54, 0, 0, 0, 1}
	bs.add(access("a", 1), own)
	b := access("b", 1)
	b.MACLimit = 3
	bs.add(b, MAC{})
	bs.add(access("c", 1), MAC{})
	ports := []string{"a", "b", "c"}
	pool := []MAC{own, mac(1), mac(2), mac(3), mac(4), mac(5), mac(6), mac(7), mac(8), mac(9), mac(10), mac(11)}
	seen := map[string]int{}
	rng := uint32(12345)
	next := func(n int) int { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return int(rng % uint32(n)) }
	for step := range 5000 {
		bs.clock.Advance(time.Duration(next(1500)) * time.Millisecond)
		bs.sw.Expire() // Input sweeps a full port's aged entries; Trace does not model that
		port, src := ports[next(len(ports))], pool[next(len(pool))]
		if port == "a" && next(4) != 0 {
			src = own // mostly a's own MAC, so that it is learned and pinned
		}
		r, err := bs.sw.Trace(port, TraceFrame{SrcMAC: src, DstMAC: Broadcast})
		if err != nil {
			t.Fatal(err)
		}
		before := bs.h[port].Counters().Drops
		bs.send(port, Broadcast, src)
		after := bs.h[port].Counters().Drops
		got := ""
		for i := range after {
			if after[i] != before[i] {
				got = DropReason(i).String()
			}
		}
		if got != r.Drop {
			t.Fatalf("step %d: %v from %s: trace says drop %q, forwarding dropped %q\n%+v", step, src, port, r.Drop, got, r.Steps)
		}
		seen[got]++
	}
	for _, want := range []string{"", "spoofed", "mac_limit", "fdb_full", "mac_move"} {
		if seen[want] == 0 {
			t.Errorf("no frame ended %q (outcomes %v): the test does not cover it", want, seen)
		}
	}
}
