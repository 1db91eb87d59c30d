package soak

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/lab"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestSoakGuests' books: the switch's, each guest's (kernel <-> VMM <->
// switch port) and the frontend's.

type gsTotals struct {
	dur                          time.Duration
	seed                         uint64
	resets, kills, blocks, flaps int
	uplink                       *uplinkBooks // nil without an uplink
}

// gsAccount checks the books and prints the result line.
func gsAccount(t *testing.T, sw *vswitch.Switch, results []lab.Result, fe *gsFrontend, floods *gsFloods, tot gsTotals) {
	var unaccounted uint64
	diff := func(a, b uint64) uint64 { return max(a, b) - min(a, b) }
	// The switch: every frame in is out, dropped (with a reason) or still
	// queued in a shaper.
	pcs := map[string]vswitch.PortCounters{}
	var in, out, drops, queued uint64
	var byReason [vswitch.NumDropReasons]uint64
	for _, pc := range sw.Counters() {
		pcs[pc.Name] = pc
		in += pc.RxPackets
		out += pc.TxPackets
		queued += uint64(pc.ShaperQueued)
		for r, d := range pc.Drops {
			drops += d
			byReason[r] += d
		}
	}
	// Frames to no station: dropped by the guests' ACLs (counted); from
	// the frontend (no ACL) they would flood and break the books.
	t.Logf("frames to no station's MAC (dropped by the ACL on guest ports): %v", floods)
	if in != out+drops+queued {
		t.Errorf("switch: %d in, %d out + %d dropped + %d queued", in, out, drops, queued)
		unaccounted += diff(in, out+drops+queued)
	}
	var reasons []string
	for r, d := range byReason {
		if d != 0 {
			reasons = append(reasons, fmt.Sprintf("%v %d", vswitch.DropReason(r), d))
		}
	}

	// Each guest: kernel <-> VMM <-> switch port.
	var lostTx, lostRx, guestResets uint64
	var guestTx, guestRx uint64
	for _, r := range results {
		pc := pcs[r.Name]
		if r.Status != 0 || r.Err != nil {
			t.Errorf("%s: VMM exit status %d, error %v", r.Name, r.Status, r.Err)
		}
		if r.Err != nil && strings.Contains(r.Err.Error(), "triple fault") {
			// The VMM's counters were read when the guest died; frames
			// the switch delivered after that are not in them.
			t.Errorf("%s died in a triple fault: the nested test host's emulated SVM (RELIABILITY.md, the test bed); no accounting for it", r.Name)
			continue
		}
		if r.Net.TxPackets != pc.RxPackets {
			t.Errorf("%s: VMM transmitted %d frames, its switch port received %d", r.Name, r.Net.TxPackets, pc.RxPackets)
			unaccounted += diff(r.Net.TxPackets, pc.RxPackets)
		}
		if r.Net.RxPackets != pc.TxPackets {
			t.Errorf("%s: switch port sent %d frames, the VMM wrote %d into the guest", r.Name, pc.TxPackets, r.Net.RxPackets)
			unaccounted += diff(r.Net.RxPackets, pc.TxPackets)
		}
		gc, err := gsParseConsole(r.Console)
		if err != nil {
			t.Errorf("%s: %v", r.Name, err)
			continue
		}
		if gc.pingFails != 0 || gc.pings != len(gsGuests)-1 {
			t.Errorf("%s: final pings: %d of %d failed (%d done)", r.Name, gc.pingFails, len(gsGuests)-1, gc.pings)
		}
		bound := uint64(gc.resets) * gsQueueSize
		dtx, drx := int64(r.Net.TxPackets)-int64(gc.tx), int64(r.Net.RxPackets)-int64(gc.rx)
		if dtx < 0 || uint64(dtx) > bound {
			t.Errorf("%s: VMM took %d frames from the guest, the guest counted %d sent (%d resets, bound %d)", r.Name, r.Net.TxPackets, gc.tx, gc.resets, bound)
			unaccounted += uint64(max(dtx, -dtx))
		} else {
			lostTx += uint64(dtx)
		}
		if drx < 0 || uint64(drx) > bound {
			t.Errorf("%s: VMM wrote %d frames into the guest, the guest counted %d received (%d resets, bound %d)", r.Name, r.Net.RxPackets, gc.rx, gc.resets, bound)
			unaccounted += uint64(max(drx, -drx))
		} else {
			lostRx += uint64(drx)
		}
		guestResets += uint64(gc.resets)
		guestTx += gc.tx
		guestRx += gc.rx
		t.Logf("%s: status %d; guest kernel tx %d rx %d (rx_dropped %d tx_dropped %d) over %d driver lives; VMM tx %d rx %d (%.1f MB / %.1f MB), lost in reset rings tx %d rx %d; switch port rx %d tx %d drops %v; net %+v; notifications lost and recovered: kicks %d, interrupts %d",
			r.Name, r.Status, gc.tx, gc.rx, gc.rxDropped, gc.txDropped, gc.resets, r.Net.TxPackets, r.Net.RxPackets,
			float64(r.Net.TxBytes)/1e6, float64(r.Net.RxBytes)/1e6, max(dtx, 0), max(drx, 0), pc.RxPackets, pc.TxPackets, pc.Drops, r.Net,
			r.PCI.LostKicks, r.PCI.LostIRQs)
	}

	// The frontend, as TestSoak's endpoints.
	pc := pcs[gsFE.name]
	s, rcv, inflight := fe.c.sent.Load(), fe.c.received.Load(), fe.c.txInFlight.Load()
	var feLost uint64
	if pc.RxPackets < s || pc.RxPackets > s+inflight {
		t.Errorf("frontend: saw %d sent (+%d queued at kills), switch received %d", s, inflight, pc.RxPackets)
		unaccounted += diff(s, pc.RxPackets)
	}
	gap := int64(pc.TxPackets) - int64(rcv)
	if gap < 0 || uint64(gap) > uint64(fe.kills+1)*qSize {
		t.Errorf("frontend: switch sent %d, frontend received %d (%d kills)", pc.TxPackets, rcv, fe.kills)
		unaccounted += uint64(max(gap, -gap))
	} else {
		feLost = uint64(gap)
	}
	t.Logf("frontend: sessions %d kills %d sent %d (echo replies %d) received %d lost in dead rings %d; switch port rx %d tx %d drops %v",
		fe.sessions, fe.kills, s, fe.replies.Load(), rcv, feLost, pc.RxPackets, pc.TxPackets, pc.Drops)

	var upSent, upDelivered, upKernel, upLinkLost uint64
	if ub := tot.uplink; ub != nil {
		unaccounted += ub.unaccounted
		upSent, upDelivered, upKernel, upLinkLost = ub.sent, ub.delivered, ub.kdrops, ub.linkLost
		if ub.sent == 0 || ub.delivered == 0 {
			t.Errorf("uplink: the peer sent %d and received %d frames: no traffic through the uplink", ub.sent, ub.delivered)
		}
	}

	if fe.sessions == 0 {
		t.Error("the frontend never ran: the guests never all got ready")
	}
	if tot.resets == 0 || guestResets < uint64(len(results)) {
		t.Errorf("no driver resets happened")
	}
	t.Logf("SOAK GUESTS RESULT: duration %v seed %d guests %d faults %d (guest driver resets %d, switch port blocks %d, frontend kills %d, uplink flaps %d) "+
		"frames into switch %d out %d counted drops %d (%s) queued %d; guest kernels sent %d received %d; lost in reset rings %d (tx %d, rx %d; bound %d per reset and direction) "+
		"lost in dead frontend rings %d; uplink peer sent %d received %d, kernel drops %d, lost at link-down uncounted %d (within its bound); frames lost unaccounted %d (%.0f frames/s)",
		tot.dur, tot.seed, len(results), tot.resets+tot.kills+tot.blocks+tot.flaps, tot.resets, tot.blocks, tot.kills, tot.flaps,
		in, out, drops, strings.Join(reasons, ", "), queued, guestTx, guestRx, lostTx+lostRx, lostTx, lostRx, gsQueueSize,
		feLost, upSent, upDelivered, upKernel, upLinkLost, unaccounted, float64(in)/tot.dur.Seconds())
	if unaccounted != 0 {
		t.Errorf("frames lost unaccounted: %d", unaccounted)
	}
}
