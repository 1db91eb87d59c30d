package evpn

import (
	"net/netip"
)

// ribState is what the speaker knows of the remote routes (the best path
// of each remote NLRI) and what it told the Handler. It holds no lock of
// its own: the Speaker's mu guards it.
type ribState struct {
	macs  map[macKey]map[string]route // remote type-2 routes by NLRI key
	macOf map[string]macKey           // NLRI key -> its MAC
	// own holds our type-2 routes as GoBGP's best-path events report
	// them, in order with the remote ones, and with the sequence number
	// GoBGP advertises (it raises a 0 above a remote route's, RFC 7432
	// §15.1): MAC mobility is decided on what was actually sent.
	own   map[macKey]map[string]uint32
	ownOf map[string]macKey  // NLRI key -> its MAC, for own
	imets map[string]vtepKey // remote type-3 routes by NLRI key
	refs  map[vtepKey]int    // type-3 routes per (VNI, VTEP)
	told  map[macKey]map[netip.Addr]route
}

// vtepKey names a VTEP within a VNI.
type vtepKey struct {
	vni  uint32
	vtep netip.Addr
}

// localClaim is this speaker's own advertisement of a MAC.
type localClaim struct {
	present bool
	seq     uint32
	vtep    netip.Addr
}

func newRIBState() ribState {
	return ribState{
		macs:  make(map[macKey]map[string]route),
		macOf: make(map[string]macKey),
		own:   make(map[macKey]map[string]uint32),
		ownOf: make(map[string]macKey),
		imets: make(map[string]vtepKey),
		refs:  make(map[vtepKey]int),
		told:  make(map[macKey]map[netip.Addr]route),
	}
}

// apply records one best-path change. A withdrawn, local or ignored
// route removes the remote route its key held; a local type-2 route
// updates our own. Type-3 changes are appended to evs at once; the MACs
// whose routes changed are marked dirty for resolve.
func (rs *ribState) apply(r route, dirty map[macKey]bool, evs []event) []event {
	gone := r.withdraw || r.local || r.ignore
	if r.kind == kindMAC {
		rs.applyOwn(r, dirty)
	}
	switch r.kind {
	case kindIMET:
		nk := vtepKey{r.vni, r.vtep}
		if old, ok := rs.imets[r.key]; ok {
			if !gone && old == nk {
				return evs
			}
			delete(rs.imets, r.key)
			if rs.refs[old]--; rs.refs[old] == 0 {
				delete(rs.refs, old)
				evs = append(evs, event{imet: true, vni: old.vni, vtep: old.vtep, withdrawn: true})
			}
		}
		if !gone {
			rs.imets[r.key] = nk
			if rs.refs[nk]++; rs.refs[nk] == 1 {
				evs = append(evs, event{imet: true, vni: nk.vni, vtep: nk.vtep})
			}
		}
	case kindMAC:
		if old, ok := rs.macOf[r.key]; ok {
			delete(rs.macs[old], r.key)
			if len(rs.macs[old]) == 0 {
				delete(rs.macs, old)
			}
			delete(rs.macOf, r.key)
			dirty[old] = true
		}
		if !gone {
			k := macKey{r.vni, r.mac}
			if rs.macs[k] == nil {
				rs.macs[k] = make(map[string]route)
			}
			rs.macs[k][r.key] = r
			rs.macOf[r.key] = k
			dirty[k] = true
		}
	}
	return evs
}

// applyOwn tracks our own type-2 routes: a local route is added under
// its key, a withdrawal of a key we hold removes it.
func (rs *ribState) applyOwn(r route, dirty map[macKey]bool) {
	if old, ok := rs.ownOf[r.key]; ok {
		delete(rs.own[old], r.key)
		if len(rs.own[old]) == 0 {
			delete(rs.own, old)
		}
		delete(rs.ownOf, r.key)
		dirty[old] = true
	}
	if r.local && !r.withdraw {
		k := macKey{r.vni, r.mac}
		if rs.own[k] == nil {
			rs.own[k] = make(map[string]uint32)
		}
		rs.own[k][r.key] = r.seq
		rs.ownOf[r.key] = k
		dirty[k] = true
	}
}

// localClaim sums up our own routes for a MAC: whether we advertise it,
// with what sequence number, from vtep.
func (rs *ribState) localClaim(k macKey, vtep netip.Addr) localClaim {
	c := localClaim{vtep: vtep}
	for _, seq := range rs.own[k] {
		if !c.present || seq > c.seq {
			c.seq = seq
		}
		c.present = true
	}
	return c
}

// maxRemoteSeq is the highest sequence number of the remote routes for a
// MAC, and whether there are any.
func (rs *ribState) maxRemoteSeq(k macKey) (uint32, bool) {
	var max uint32
	routes := rs.macs[k]
	for _, r := range routes {
		if r.seq > max {
			max = r.seq
		}
	}
	return max, len(routes) > 0
}

// beats reports whether a claim (seq, vtep) wins over (seq2, vtep2): RFC
// 7432 §15.1, the higher sequence number, then the lower VTEP address.
func beats(seq uint32, vtep netip.Addr, seq2 uint32, vtep2 netip.Addr) bool {
	if seq != seq2 {
		return seq > seq2
	}
	return vtep.Less(vtep2)
}

// resolve decides where a MAC lives and appends the Handler calls that
// bring what the Handler was told in line: withdrawals first, then
// additions. moved reports that a remote VTEP beat our own advertisement,
// which the caller must then withdraw.
func (rs *ribState) resolve(k macKey, local localClaim, evs []event) (_ []event, moved bool) {
	// The winning remote VTEP: each VTEP claims the MAC with the highest
	// sequence number among its routes.
	var win netip.Addr
	var winSeq uint32
	claims := make(map[netip.Addr]uint32)
	for _, r := range rs.macs[k] {
		if s, ok := claims[r.vtep]; !ok || r.seq > s {
			claims[r.vtep] = r.seq
		}
	}
	for vtep, seq := range claims {
		if !win.IsValid() || beats(seq, vtep, winSeq, win) {
			win, winSeq = vtep, seq
		}
	}
	want := make(map[netip.Addr]route)
	if win.IsValid() {
		if local.present && beats(local.seq, local.vtep, winSeq, win) {
			win = netip.Addr{} // ours wins: nothing remote to report
		} else {
			moved = local.present
		}
	}
	if win.IsValid() {
		for _, r := range rs.macs[k] {
			if r.vtep != win {
				continue
			}
			if w, ok := want[r.ip]; !ok || r.seq > w.seq {
				want[r.ip] = r
			}
		}
	}
	told := rs.told[k]
	for ip, t := range told {
		if w, ok := want[ip]; !ok || w.vtep != t.vtep {
			evs = append(evs, macEvent(k, t, true))
			delete(told, ip)
		}
	}
	for ip, w := range want {
		if t, ok := told[ip]; ok && t.seq == w.seq {
			continue
		}
		if told == nil {
			told = make(map[netip.Addr]route)
			rs.told[k] = told
		}
		told[ip] = w
		evs = append(evs, macEvent(k, w, false))
	}
	if len(told) == 0 {
		delete(rs.told, k)
	}
	return evs, moved
}

func macEvent(k macKey, r route, withdrawn bool) event {
	return event{vni: k.vni, mac: k.mac, ip: r.ip, vtep: r.vtep, seq: r.seq, withdrawn: withdrawn}
}
