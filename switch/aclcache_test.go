package vswitch

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// aclGen draws random rules and frames from small pools of values, so that
// rules match often and in every combination of fields, plus wide port
// ranges, so that there are more flows than the cache holds.
type aclGen struct{ r *rand.Rand }

var (
	genV4    = []string{"10.0.0.1", "10.0.0.2", "10.0.1.1", "192.168.0.1"}
	genV6    = []string{"fd00::1", "fd00::2", "fd00:1::1", "fe80::1"}
	genProto = []uint8{ipProtoTCP, ipProtoUDP, 1}
	genPorts = []uint16{22, 53, 80, 443, 1000}
)

func (g aclGen) chance(n int) bool { return g.r.IntN(n) == 0 }

func (g aclGen) port() uint16 {
	if g.chance(2) {
		return uint16(g.r.IntN(65536))
	}
	return genPorts[g.r.IntN(len(genPorts))]
}

func (g aclGen) prefix(v6 bool) netip.Prefix {
	if v6 {
		return netip.PrefixFrom(netip.MustParseAddr(genV6[g.r.IntN(len(genV6))]), []int{0, 16, 32, 64, 128}[g.r.IntN(5)])
	}
	return netip.PrefixFrom(netip.MustParseAddr(genV4[g.r.IntN(len(genV4))]), []int{0, 8, 16, 24, 32}[g.r.IntN(5)])
}

func (g aclGen) portRange() PortRange {
	switch g.r.IntN(4) {
	case 0:
		return PortRange{}
	case 1:
		p := g.port()
		return PortRange{p, p}
	case 2:
		return PortRange{1, 1023}
	}
	a, b := g.port(), g.port()
	return PortRange{min(a, b), max(a, b)}
}

func (g aclGen) rule() ACLRule {
	var r ACLRule
	if g.chance(2) {
		r.Action = ACLDeny
	}
	v6 := g.chance(2)
	if g.chance(4) {
		r.EtherType = []uint16{etherTypeIPv4, etherTypeIPv6, 0x0806}[g.r.IntN(3)]
		v6 = r.EtherType == etherTypeIPv6
	}
	if g.chance(4) {
		r.SrcMAC = mac(byte(1 + g.r.IntN(3)))
	}
	if g.chance(4) {
		r.DstMAC = mac(byte(1 + g.r.IntN(3)))
	}
	if r.EtherType != 0x0806 {
		if g.chance(3) {
			r.SrcIP = g.prefix(v6)
		}
		if g.chance(3) {
			r.DstIP = g.prefix(v6)
		}
	}
	if g.chance(2) {
		r.Proto = genProto[g.r.IntN(len(genProto))]
		if r.Proto != 1 {
			r.SrcPort, r.DstPort = g.portRange(), g.portRange()
		}
	}
	return r
}

func (g aclGen) acl() ACL {
	a := ACL{Rules: make([]ACLRule, g.r.IntN(40))}
	for i := range a.Rules {
		for {
			a.Rules[i] = g.rule()
			if a.Rules[i].check(i) == nil {
				break
			}
		}
	}
	if g.chance(2) {
		a.Default = ACLDeny
	}
	return a
}

// frame returns a valid untagged unicast frame, or with tagged set also
// VLAN-tagged, truncated and non-IP ones.
func (g aclGen) frame(tagged bool) []byte {
	src, dst := mac(byte(1+g.r.IntN(3))), mac(byte(1+g.r.IntN(3)))
	if tagged && g.chance(8) {
		return eth(dst, src, 0x0806, 46)
	}
	p := testPkt{dst: dst, src: src, proto: genProto[g.r.IntN(len(genProto))], sport: g.port(), dpt: g.port()}
	if g.chance(2) {
		p.sip, p.dip = genV6[g.r.IntN(len(genV6))], genV6[g.r.IntN(len(genV6))]
		if g.chance(4) {
			p.v6ext = []byte{ip6HopByHop}
		}
	} else {
		p.sip, p.dip = genV4[g.r.IntN(len(genV4))], genV4[g.r.IntN(len(genV4))]
		if g.chance(8) {
			p.fragOff = 10
		}
	}
	if tagged && g.chance(4) {
		p.vids = []uint16{uint16(1 + g.r.IntN(3))}
	}
	b := p.bytes()
	if tagged && g.chance(8) {
		b = b[:14+g.r.IntN(len(b)-14)]
	}
	return b
}

// The cache never changes a verdict: over random rule sets and random
// frames, including rule-set swaps that leave stale entries behind and a
// generation counter wrap, the cached verdict equals a scan of the list.
func TestACLCacheDifferential(t *testing.T) {
	g := aclGen{rand.New(rand.NewPCG(1, 2))}
	sc := newScratch()
	var hits, lookups uint64
	for round := range 300 {
		set, err := compileACL(g.acl())
		if err != nil {
			t.Fatal(err)
		}
		if round == 150 {
			sc.aclGen = ^uint32(0) // the next set wraps the generation
		}
		sc.useACL(set)
		if round == 150 && sc.aclGen != 1 {
			t.Fatalf("generation after wrap = %d; want 1", sc.aclGen)
		}
		for range 2000 {
			data := g.frame(true)
			l3, et := l3Offset(data)
			if l3 < 0 {
				continue
			}
			var k flowKey
			parseFlow(data, l3, et, &k, set.anyL3)
			wi, wa := set.match(&k)
			m := sc.aclMisses
			gi, ga := sc.aclVerdict(&k)
			lookups++
			if sc.aclMisses == m {
				hits++
			}
			if gi != wi || ga != wa {
				t.Fatalf("round %d: cached verdict (%d, %v) != scan (%d, %v)\nrules %+v\nkey %+v", round, gi, ga, wi, wa, set.src, k)
			}
		}
	}
	// The pools make most frames repeat a flow: the cache must be hit,
	// and must also have missed (evictions, swaps).
	if hits < lookups/4 || hits == lookups {
		t.Errorf("%d hits of %d lookups", hits, lookups)
	}
}

// Masking the key to the fields the rules read lets flows that differ only
// in other fields share an entry; fields they do read keep them apart.
func TestACLCacheMask(t *testing.T) {
	set, err := compileACL(ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: ipProtoTCP, DstPort: PortRange{22, 22}}}})
	if err != nil {
		t.Fatal(err)
	}
	sc := newScratch()
	sc.useACL(set)
	verdict := func(p testPkt) int {
		data := p.bytes()
		l3, et := l3Offset(data)
		var k flowKey
		parseFlow(data, l3, et, &k, set.anyL3)
		i, _ := sc.aclVerdict(&k)
		return i
	}
	p := testPkt{dst: mac(2), src: mac(1), sip: "10.0.0.1", dip: "10.0.0.2", proto: ipProtoTCP, sport: 1, dpt: 22}
	for i := range 10 {
		q := p
		q.src, q.sip = mac(byte(i+1)), fmt.Sprintf("10.0.0.%d", i+1) // not read by the rule
		if got := verdict(q); got != 0 {
			t.Fatalf("verdict = %d; want rule 0", got)
		}
	}
	if sc.aclMisses != 1 {
		t.Errorf("%d misses; want 1 (MACs and addresses are not part of the key)", sc.aclMisses)
	}
	q := p
	q.dpt = 23
	if got := verdict(q); got != 1 || sc.aclMisses != 2 {
		t.Errorf("other port: verdict %d, %d misses; want 1 (default), 2", got, sc.aclMisses)
	}
	q.fragOff = 10 // a non-first fragment carries no ports: a different key
	p.fragOff = 10
	if got := verdict(p); got != 1 || sc.aclMisses != 3 {
		t.Errorf("fragment: verdict %d, %d misses; want 1 (default), 3", got, sc.aclMisses)
	}
}

// Through the switch: drops and hit counters are exactly what a scan of
// the list gives for each frame, batch after batch, across rule swaps.
func TestACLCacheHitCounters(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	g := aclGen{rand.New(rand.NewPCG(3, 4))}
	h := ts.h["a"]
	var dropped uint64
	for round := range 40 {
		if err := ts.sw.SetACL("a", g.acl()); err != nil {
			t.Fatal(err)
		}
		set := h.acl.Load()
		var want []uint64
		var wantDef uint64
		if set != nil {
			want = make([]uint64, len(set.rules))
		}
		for range 20 {
			fs := make([][]byte, 1+g.r.IntN(64))
			for i := range fs {
				// Few distinct frames, repeated in runs, so that batches
				// hold runs of equal hits and the cache hits.
				if i > 0 && g.chance(2) {
					fs[i] = fs[i-1]
				} else {
					fs[i] = g.frame(false)
				}
				if set == nil {
					continue
				}
				l3, et := l3Offset(fs[i])
				var k flowKey
				parseFlow(fs[i], l3, et, &k, set.anyL3)
				r, act := set.match(&k)
				if r == len(set.rules) {
					wantDef++
				} else {
					want[r]++
				}
				if act == ACLDeny {
					dropped++
				}
			}
			ts.in("a", fs...)
		}
		_, hits, err := ts.sw.ACL("a")
		if err != nil {
			t.Fatal(err)
		}
		if set == nil {
			continue
		}
		if fmt.Sprint(hits.Rules) != fmt.Sprint(want) || hits.Default != wantDef {
			t.Fatalf("round %d: hits %v default %d; want %v default %d", round, hits.Rules, hits.Default, want, wantDef)
		}
	}
	if got := ts.drops("a", DropACL); got != dropped {
		t.Errorf("acl drops = %d; want %d", got, dropped)
	}
	if h.ingress(0).sc.aclMisses == 0 {
		t.Errorf("no cache misses counted")
	}
}
