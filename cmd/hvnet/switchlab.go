package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/hashicorp/go-hclog"

	"hvnet/api"
	"hvnet/images"
	"hvnet/images/agentcfg"
	"hvnet/internal/lines"
	"hvnet/lab"
	"hvnet/vmm"
)

// Lab guest ports: POST /v1/ports with kind "lab" boots a guest with
// hvnet's VMM (package lab) whose virtio-net NIC becomes the port.

// labMACBase offsets the default MACs of guests added through the API
// from those of a lab run's own guests (lab derives both from a position).
const labMACBase = 0x1000

// guestImages is where the daemon's lab guests boot from: the kernel and
// initramfs given, else the image cache (built on first use).
type guestImages struct {
	kernel, initrd string
	build          func(context.Context) (*images.Set, error) // nil: none
}

func (gi guestImages) resolve(ctx context.Context) (string, string, error) {
	if gi.kernel != "" && gi.initrd != "" {
		return gi.kernel, gi.initrd, nil
	}
	if gi.build == nil {
		return "", "", errors.New("no guest images configured (hvnet switch --kernel K --initrd I)")
	}
	set, err := gi.build(ctx)
	if err != nil {
		return "", "", fmt.Errorf("no guest images: --kernel/--initrd not given and the image cache failed: %w", err)
	}
	k, i := gi.kernel, gi.initrd
	if k == "" {
		k = set.Kernel
	}
	if i == "" {
		i = set.Initrd
	}
	return k, i, nil
}

// labGuest turns a checked lab port spec into the guest's configuration.
// The port itself is configured from the spec's config by attach.
func labGuest(spec api.PortSpec) (lab.GuestConfig, error) {
	gs := spec.Guest
	gc := lab.GuestConfig{Name: spec.Config.Name, MTU: gs.MTU, Queues: spec.Queues, CPUs: gs.CPUs, Script: gs.Script}
	var err error
	if gc.Addr, err = netip.ParsePrefix(gs.IP); err != nil {
		return gc, fmt.Errorf("guest.ip: %w", err)
	}
	if spec.MAC != "" {
		hw, err := net.ParseMAC(spec.MAC)
		if err != nil || len(hw) != 6 {
			return gc, fmt.Errorf("mac %q: not a MAC address", spec.MAC)
		}
		copy(gc.MAC[:], hw)
	}
	if gs.Mem != "" {
		n, e := api.ParseMemMiB("guest.mem", gs.Mem)
		if e != nil {
			return gc, e
		}
		gc.MemMiB = n
	}
	for i, v := range gs.VIFs {
		name, addr, _ := strings.Cut(v, ":")
		f := agentcfg.Iface{Name: name}
		if addr != "" {
			if f.Addr, err = netip.ParsePrefix(addr); err != nil {
				return gc, fmt.Errorf("guest.vifs[%d]: %w", i, err)
			}
		}
		gc.Ifaces = append(gc.Ifaces, f)
	}
	return gc, nil
}

// addLab boots a lab guest whose NIC is the new port; it runs until it
// ends by itself, the port is removed or the daemon stops.
func (d *daemon) addLab(ctx context.Context, spec api.PortSpec, attach attachFunc) error {
	name := spec.Config.Name
	if spec.Guest == nil {
		return errors.New("guest: missing")
	}
	gc, err := labGuest(spec)
	if err != nil {
		return err
	}
	if err := d.probe(); err != nil {
		return fmt.Errorf("this daemon cannot boot lab guests: %w; run the daemon inside the nested test host "+
			"(hvnet up FILE does so by itself for a topology with lab guests)", err)
	}
	kernel, initrd, err := d.images.resolve(ctx)
	if err != nil {
		return fmt.Errorf("lab guest ports: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reserve(name, "", ""); err != nil {
		return err
	}
	log := d.log.Named("lab")
	g, err := lab.Boot(d.ctx, gc, lab.BootConfig{Kernel: kernel, Initrd: initrd, Log: log,
		Console: lineLog(log.With("guest", name)), Index: labMACBase + d.guests, Attach: attach})
	if err != nil {
		return err
	}
	d.guests++
	d.setPort(name, &backendPort{guest: g})
	go func() {
		<-g.Done()
		info := g.Info()
		log.Info("guest ended", "guest", name, "status", info.Status, "error", info.Err)
	}()
	log.Info("port ready", "port", name, "kind", api.KindLab, "ip", gc.Addr.String(), "mem_mib", gc.MemMiB)
	return nil
}

// Guest reports the state of the lab guest behind a port (api.GuestReporter).
func (d *daemon) Guest(name string) *api.GuestInfo {
	d.mu.Lock()
	bp := d.ports[name]
	d.mu.Unlock()
	if bp == nil || bp.guest == nil {
		return nil
	}
	return guestInfo(bp.guest.Info())
}

func guestInfo(in lab.Info) *api.GuestInfo {
	out := &api.GuestInfo{State: string(in.State)}
	if in.State == lab.StateExited {
		st := in.Status
		out.Status = &st
		if in.Err != nil {
			out.Error = in.Err.Error()
		}
	}
	return out
}

var _ api.GuestReporter = (*daemon)(nil)

// lineLog logs a guest's console lines at debug level.
func lineLog(log hclog.Logger) *lines.Splitter {
	return &lines.Splitter{Line: func(l string) error { log.Debug("console", "line", l); return nil }}
}

// probeKVM says whether this host's KVM can boot the guests (a variable
// for tests on hosts whose KVM can).
var probeKVM = func() error { return vmm.Probe("") }
