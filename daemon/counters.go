package daemon

import (
	"github.com/hvnet/hvnet/api"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// VirtioCounters are a virtio-net device's drops and faults, as kinds
// whose backend is one report them (DeviceReporter); its frame and byte
// counts are the switch port's too, and are left out.
func VirtioCounters(s vnet.Stats) *api.VirtioCounters {
	return &api.VirtioCounters{
		TxDropBadChain: s.TxDropBadChain, TxDropBadHeader: s.TxDropBadHeader,
		TxDropRunt: s.TxDropRunt, TxDropOversize: s.TxDropOversize,
		RxDropNoBuffer: s.RxDropNoBuffer, RxDropBadChain: s.RxDropBadChain,
		RxDropOversize: s.RxDropOversize, RxDropOffload: s.RxDropOffload,
		RxDropSourceFault: s.RxDropSourceFault,
		CtrlErrors:        s.CtrlErr, Faults: s.Faults, MemoryFaults: s.MemoryFaults, SignalErrors: s.SignalErrors,
	}
}
