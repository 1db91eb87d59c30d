package main

import (
	"hvnet/api"
	"hvnet/uplink"
	"hvnet/vhost"
	vnet "hvnet/virtio/net"
)

// Device counters: the daemon reports what each port's backend counts
// itself (api.DeviceReporter): a vhost-user port's virtio-net device over
// all its sessions and its notification-descriptor counters, a lab
// guest's NIC, an uplink's own losses. The API reads them on every GET of
// a port and every scrape, so they come from d.byName, never waiting on
// d.mu (held while a port is added, which may boot a guest).

var _ api.DeviceReporter = (*daemon)(nil)

// setPort records a port's backend; d.mu is held.
func (d *daemon) setPort(name string, bp *backendPort) {
	d.ports[name] = bp
	d.byName.Store(name, bp)
}

// deletePort forgets a port's backend; d.mu is held.
func (d *daemon) deletePort(name string) {
	delete(d.ports, name)
	d.byName.Delete(name)
}

// DeviceCounters returns the named port's backend counters
// (api.DeviceReporter): nil for a port that is not the daemon's.
func (d *daemon) DeviceCounters(name string) *api.DeviceCounters {
	v, ok := d.byName.Load(name)
	if !ok {
		return nil
	}
	bp := v.(*backendPort)
	switch {
	case bp.vh != nil:
		return vhostDeviceCounters(bp.vh)
	case bp.guest != nil:
		return &api.DeviceCounters{Kind: api.KindLab, VirtioCounters: virtioCounters(bp.guest.DeviceStats())}
	case bp.up != nil:
		return &api.DeviceCounters{Kind: api.KindUplink, UplinkCounters: uplinkCounters(bp.up.Stats())}
	}
	return nil
}

// vhostDeviceCounters are a vhost-user port's totals: its device over
// every session and its notification descriptors.
func vhostDeviceCounters(p *vhost.Port) *api.DeviceCounters {
	n := p.NotifyStats()
	return &api.DeviceCounters{Kind: api.KindVhostUser, VirtioCounters: virtioCounters(p.DeviceStats()),
		VhostCounters: &api.VhostCounters{
			Sessions: p.Sessions(), Connected: p.Connected(),
			RefusedFDs: n.RefusedFDs, NotifyStalls: n.NotifyStalls, NotifyErrors: n.NotifyErrors,
			NotifiersAbandoned: n.NotifiersAbandoned, WorkersAbandoned: n.WorkersAbandoned, KickHangups: n.KickHangups,
			SessionsRefused: n.SessionsRefused, Stuck: n.Stuck,
		}}
}

// virtioCounters are a virtio-net device's drops and faults (its frame
// and byte counts are the switch port's too, and are left out).
func virtioCounters(s vnet.Stats) *api.VirtioCounters {
	return &api.VirtioCounters{
		TxDropBadChain: s.TxDropBadChain, TxDropBadHeader: s.TxDropBadHeader,
		TxDropRunt: s.TxDropRunt, TxDropOversize: s.TxDropOversize,
		RxDropNoBuffer: s.RxDropNoBuffer, RxDropBadChain: s.RxDropBadChain,
		RxDropOversize: s.RxDropOversize, RxDropOffload: s.RxDropOffload,
		RxDropSourceFault: s.RxDropSourceFault,
		CtrlErrors:        s.CtrlErr, Faults: s.Faults, MemoryFaults: s.MemoryFaults, SignalErrors: s.SignalErrors,
	}
}

// uplinkCounters are an uplink's own losses and re-attachments.
func uplinkCounters(s uplink.Stats) *api.UplinkCounters {
	return &api.UplinkCounters{RxDropBad: s.RxBad, RxDropKernel: s.RxKernelDrops, RxSocketErrors: s.RxSocketErrors,
		TxErrors: s.TxErrors, Attaches: s.Attaches}
}
