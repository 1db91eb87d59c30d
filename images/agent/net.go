package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hvnet/hvnet/images/agentcfg"
)

func setupLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// waitLink waits for an interface to appear: virtio-net probes
// asynchronously after its module loads.
func waitLink(name string, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, err := netlink.LinkByName(name)
		if err == nil {
			return l, nil
		}
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("interface %s did not appear within %v (driver module loaded? see hvnet.modules)", name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// configure sets up one hvnet.if.
func configure(i agentcfg.Iface, timeout time.Duration) error {
	var l netlink.Link
	var err error
	if parent, vid, ok := i.VLAN(); ok {
		l, err = vlan(i.Name, parent, vid, timeout)
	} else {
		l, err = waitLink(i.Name, timeout)
	}
	if err != nil {
		return err
	}
	if i.MTU != 0 {
		if err := netlink.LinkSetMTU(l, i.MTU); err != nil {
			return fmt.Errorf("interface %s: set mtu %d: %w", i.Name, i.MTU, err)
		}
	}
	if i.Addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP:   i.Addr.Addr().AsSlice(),
			Mask: net.CIDRMask(i.Addr.Bits(), i.Addr.Addr().BitLen()),
		}}
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("interface %s: add address %s: %w", i.Name, i.Addr, err)
		}
	}
	if !i.Down {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("interface %s: up: %w", i.Name, err)
		}
	}
	return nil
}

// vlan creates the IEEE 802.1Q subinterface name with VLAN ID vid on
// parent, loading 8021q first, and brings the parent up.
func vlan(name, parent string, vid int, timeout time.Duration) (netlink.Link, error) {
	if l, err := netlink.LinkByName(name); err == nil {
		return l, nil
	}
	if err := ensureModule("8021q"); err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	p, err := waitLink(parent, timeout)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(p); err != nil {
		return nil, fmt.Errorf("interface %s: parent %s up: %w", name, parent, err)
	}
	v := &netlink.Vlan{
		LinkAttrs:    netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index},
		VlanId:       vid,
		VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
	}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("interface %s: create VLAN %d on %s: %w", name, vid, parent, err)
	}
	return netlink.LinkByName(name)
}
