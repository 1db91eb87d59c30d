package vnet

import "sync/atomic"

// counters are the device's statistics, updated atomically (per batch on the
// hot paths).
type counters struct {
	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64

	txBadChain, txBadHeader, txRunt, txOversize   atomic.Uint64
	rxNoBuffer, rxBadChain, rxOversize, rxOffload atomic.Uint64
	ctrlOK, ctrlErr, faults, signalErrors         atomic.Uint64
	memFaults, rxSourceFault                      atomic.Uint64
}

// Stats is a snapshot of a Device's counters.
type Stats struct {
	TxPackets, TxBytes uint64 // frames handed to the Sink
	RxPackets, RxBytes uint64 // frames written to the guest

	TxDropBadChain  uint64 // TX chain unusable: bad address, writable buffer, ...
	TxDropBadHeader uint64 // virtio_net_hdr refused (CheckTX)
	TxDropRunt      uint64 // frame shorter than an Ethernet header
	TxDropOversize  uint64 // frame longer than MaxFrameLen

	RxDropNoBuffer uint64 // no guest RX buffer available
	RxDropBadChain uint64 // RX chain unusable: read-only buffer, too small, ...
	RxDropOversize uint64 // frame too long (MaxFrameLen, or the guest's buffer)
	RxDropOffload  uint64 // offload (GSO/partial checksum) the guest did not negotiate
	// RxDropSourceFault: frames whose payload could not be copied from
	// the sending tenant's buffer (its memory vanished under the copy).
	RxDropSourceFault uint64

	CtrlOK, CtrlErr uint64 // control commands acknowledged OK / ERR
	Faults          uint64 // queues found malformed (needs reset)
	SignalErrors    uint64 // failed used-buffer notifications
	MemoryFaults    uint64 // queues ended by a fault on guest memory (shrunk or unmapped)
}

func (c *counters) snapshot() Stats {
	return Stats{
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxDropBadChain: c.txBadChain.Load(), TxDropBadHeader: c.txBadHeader.Load(),
		TxDropRunt: c.txRunt.Load(), TxDropOversize: c.txOversize.Load(),
		RxDropNoBuffer: c.rxNoBuffer.Load(), RxDropBadChain: c.rxBadChain.Load(),
		RxDropOversize: c.rxOversize.Load(), RxDropOffload: c.rxOffload.Load(),
		RxDropSourceFault: c.rxSourceFault.Load(),
		CtrlOK:            c.ctrlOK.Load(), CtrlErr: c.ctrlErr.Load(),
		Faults: c.faults.Load(), SignalErrors: c.signalErrors.Load(),
		MemoryFaults: c.memFaults.Load(),
	}
}
