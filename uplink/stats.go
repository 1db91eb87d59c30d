package uplink

import "sync/atomic"

// Stats are a Port's own counters (the switch keeps per-port counters too).
type Stats struct {
	RxFrames, RxBytes uint64
	RxGSO             uint64 // frames received as GSO (gso_type set): not segmented
	RxVLANRestored    uint64 // frames whose stripped VLAN tag was put back
	RxBad             uint64 // truncated or malformed ring entries, dropped
	RxKernelDrops     uint64 // dropped by the kernel: ring full (PACKET_STATISTICS)
	RxSocketErrors    uint64 // socket errors seen (link down, interface gone)
	TxFrames, TxBytes uint64
	TxGSO             uint64 // GSO frames handed to the kernel unsegmented
	TxErrors          uint64 // frames not sent (link down, ring full, refused)
	Attaches          uint64 // times the sockets were opened (1 + re-attachments)
	Ifindex           int    // current ifindex, 0 while detached
}

type counters struct {
	rxFrames, rxBytes, rxGSO, rxVLAN, rxBad atomic.Uint64
	rxKernelDrops, rxSockErrors             atomic.Uint64
	txFrames, txBytes, txGSO, txErrors      atomic.Uint64
	attaches                                atomic.Uint64
	txErrLogged                             atomic.Bool
}

func (s *counters) addRX(c *rxCounts) {
	s.rxFrames.Add(c.frames)
	s.rxBytes.Add(c.bytes)
	if c.gso != 0 {
		s.rxGSO.Add(c.gso)
	}
	if c.vlan != 0 {
		s.rxVLAN.Add(c.vlan)
	}
	if c.bad != 0 {
		s.rxBad.Add(c.bad)
	}
}

// collectDrops adds the kernel's drop counts of a's sockets (reading them
// resets them). Caller holds lifeMu.
func (p *Port) collectDrops(a *attachment) {
	for _, r := range a.rx {
		if r.fd >= 0 {
			p.st.rxKernelDrops.Add(r.kernelDrops())
		}
	}
}

// Stats returns a snapshot of the port's counters.
func (p *Port) Stats() Stats {
	p.lifeMu.Lock()
	idx := 0
	if a := p.att; a != nil {
		idx = a.ifindex
		p.collectDrops(a)
	}
	p.lifeMu.Unlock()
	s := &p.st
	return Stats{
		RxFrames: s.rxFrames.Load(), RxBytes: s.rxBytes.Load(), RxGSO: s.rxGSO.Load(),
		RxVLANRestored: s.rxVLAN.Load(), RxBad: s.rxBad.Load(),
		RxKernelDrops: s.rxKernelDrops.Load(), RxSocketErrors: s.rxSockErrors.Load(),
		TxFrames: s.txFrames.Load(), TxBytes: s.txBytes.Load(), TxGSO: s.txGSO.Load(),
		TxErrors: s.txErrors.Load(), Attaches: s.attaches.Load(), Ifindex: idx,
	}
}
