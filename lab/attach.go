package lab

import (
	"fmt"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

// AttachFunc adds ports of the caller's own (an uplink, a mirror sink) to
// the lab's switch: Run calls it once, with the running switch, before any
// guest boots. The switch stays usable after Run returns (its counters, for
// instance); the caller closes what it attached.
type AttachFunc func(sw *vswitch.Switch) error

// attach runs cfg.Attach, if any.
func (cfg *Config) attach(sw *vswitch.Switch) error {
	if cfg.Attach == nil {
		return nil
	}
	if err := cfg.Attach(sw); err != nil {
		return fmt.Errorf("lab: attach: %w", err)
	}
	return nil
}

// UplinkAttach returns an AttachFunc that joins the host interface ifname
// to the lab's switch as the port pc (its Name, VLANs, rate), through
// AF_PACKET (package uplink): typically a veth whose peer is in a network
// namespace the test made (package hvnet/vmtest/netns), which then is a
// host on the guests' network. Call detach after Run.
func UplinkAttach(ifname string, pc vswitch.PortConfig) (attach AttachFunc, detach func() error) {
	var up *uplink.Port
	attach = func(sw *vswitch.Switch) error {
		p, err := uplink.Open(ifname, uplink.Config{})
		if err != nil {
			return err
		}
		h, err := sw.AddPort(pc, p)
		if err != nil {
			p.Close()
			return err
		}
		if err := p.Start(h); err != nil {
			p.Close()
			return fmt.Errorf("uplink %s: %w", ifname, err)
		}
		up = p
		return nil
	}
	detach = func() error {
		if up == nil {
			return nil
		}
		return up.Close()
	}
	return attach, detach
}
