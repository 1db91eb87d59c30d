// Package lab boots several guests in one process, each with a virtio-net
// device on one port of a shared built-in switch (package vswitch): the
// engine of `hvnet lab`, of the network integration tests and of the demo.
//
//	res, err := lab.Run(ctx, lab.Config{
//		Kernel: set.Kernel, Initrd: set.Initrd,
//		Guests: []lab.GuestConfig{
//			{Name: "a", Addr: netip.MustParsePrefix("10.0.0.1/24"), PVID: 10, Script: "iperf3 -s -1"},
//			{Name: "b", Addr: netip.MustParsePrefix("10.0.0.2/24"), PVID: 10, Script: "iperf3 -c 10.0.0.1"},
//		},
//	})
//
// Every guest runs hvnet's guest agent, which loads virtio-net, configures
// eth0 (and VLAN subinterfaces) from the guest's settings and runs its
// script; Run returns when every guest has ended, with each one's status
// and counters. Each console line is written to Config.Console prefixed
// with the guest's name. Config.Switch configures the lab's switch (FDB
// aging time).
//
// Boot (guest.go) starts one guest on a switch the caller owns, as the
// switch daemon does for lab ports added through its control API; the
// Guest reports its state (booting, running, exited) and Stop ends it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/images/agentcfg"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/vmm"
	"github.com/hvnet/hvnet/vmtest/event"
)

// GuestConfig is one guest and its NIC.
type GuestConfig struct {
	Name string // guest and switch port name (required, unique)

	MAC    [6]byte      // zero: derived from the guest's index
	Addr   netip.Prefix // eth0's address (zero: link up, no address)
	MTU    int          // eth0's MTU (0: 1500)
	Ifaces []agentcfg.Iface

	// Switch port: VLAN mode, PVID (access) or allowed VLANs and native
	// VLAN (trunk).
	Mode    vswitch.VLANMode
	PVID    uint16 // access VLAN, default 1
	Allowed []uint16
	Native  uint16

	Queues int   // queue pairs, default 1
	Rate   int64 // bits per second each way, 0 unlimited
	// Port, when set, is the whole switch port configuration (the
	// daemon's lab kind, hvnet lab --guest): Mode, PVID, Allowed,
	// Native, Rate and PortSecurity are then not used.
	Port *vswitch.PortConfig
	// PortSecurity: on (the default), the port accepts only MAC as source
	// (vswitch.PortConfig.PortSecurity).
	PortSecurity vswitch.PortSecurity
	// ACL and EgressACL are the port's ACLs (lab.Run sets them once the
	// port is attached; the zero ACL allows all).
	ACL, EgressACL vswitch.ACL
	// SecurityGroup, when set, is the port's stateful security group
	// (vswitch.Switch.SetSecurityGroup), set with the ACLs.
	SecurityGroup *vswitch.SecurityGroup

	MemMiB  uint64 // default 256
	CPUs    int    // default 1
	Script  string // the agent's script; its status is the guest's
	Modules []string
	Cmdline string // extra kernel parameters
}

// Config is a lab.
type Config struct {
	Kernel, Initrd string
	Guests         []GuestConfig
	Console        io.Writer // guest consoles, prefixed "name| " (default os.Stdout)
	Log            hclog.Logger
	Timeout        time.Duration // per run (0: until ctx ends)
	Attach         AttachFunc    // extra ports on the switch, before the guests boot (attach.go)
	// Switch configures the lab's switch (FDB aging time, clock); its
	// Logger defaults to Log's "switch".
	Switch vswitch.Config
	// Events, when set, is called with each event a guest sends (package
	// hvnet/vmtest/event: JSON lines on the guest's COM2) as it arrives,
	// from that guest's vCPU thread: keep it short (send on a buffered
	// channel). Each Result's Events holds them all either way.
	Events func(guest string, e event.Event)
}

// Result is one guest's outcome.
type Result struct {
	Name    string
	Status  int              // the guest agent's status (the VMM's exit status)
	Err     error            // the VMM's error, if it failed
	Agent   *agentcfg.Result // the agent's result line, if seen
	Console string           // everything the guest printed

	Features    uint64               // virtio-net features negotiated
	ActivePairs int                  // queue pairs the driver enabled (VQ_PAIRS_SET)
	Net         vnet.Stats           // dataplane counters
	PCI         vmm.VirtioPCIStats   // transport counters (per-queue kicks, interrupts)
	Port        vswitch.PortCounters // the guest's switch port

	Events        []event.Event // what the guest sent on its event channel, in order (event.MaxKept at most)
	BadEvents     int           // lines on the event channel that were not events
	DroppedEvents int           // events not kept (past event.MaxKept or MaxKeptBytes)
}

// BaseCmdline is the kernel command line of every lab guest.
const BaseCmdline = "console=ttyS0 quiet panic=-1 reboot=k"

// Failed reports whether any guest ended with a non-zero status or an error.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status != 0 || r.Err != nil {
			return true
		}
	}
	return false
}

func (g *GuestConfig) validate(i int) error {
	if g.Name == "" || strings.ContainsAny(g.Name, " \t|/") {
		return fmt.Errorf("lab: guest %d: bad name %q", i, g.Name)
	}
	if g.Queues == 0 {
		g.Queues = 1
	}
	if err := g.ACL.Validate(); err != nil {
		return fmt.Errorf("lab: guest %s: ACL: %w", g.Name, err)
	}
	if err := g.EgressACL.Validate(); err != nil {
		return fmt.Errorf("lab: guest %s: egress ACL: %w", g.Name, err)
	}
	if g.SecurityGroup != nil {
		if err := g.SecurityGroup.Validate(); err != nil {
			return fmt.Errorf("lab: guest %s: security group: %w", g.Name, err)
		}
	}
	if g.Queues < 1 || g.Queues > 16 {
		return fmt.Errorf("lab: guest %s: %d queue pairs, want 1..16", g.Name, g.Queues)
	}
	if g.Mode == vswitch.ModeAccess && g.PVID == 0 {
		g.PVID = 1
	}
	if g.Rate < 0 {
		return fmt.Errorf("lab: guest %s: negative rate", g.Name)
	}
	if g.MemMiB == 0 {
		g.MemMiB = 256
	}
	if g.MAC == ([6]byte{}) {
		g.MAC = [6]byte{0x52, 0x54, 0x00, 0x12, byte(i >> 8), byte(i + 1)}
	}
	return nil
}

// agent is the guest's agent command line.
func (g *GuestConfig) agent() agentcfg.Cmdline {
	// The agent loads 8021q itself for VLAN subinterfaces.
	mods := append([]string{"@virtio-net"}, g.Modules...)
	ifs := append([]agentcfg.Iface{{Name: "eth0", Addr: g.Addr, MTU: g.MTU}}, g.Ifaces...)
	return agentcfg.Cmdline{Modules: mods, Ifaces: ifs, Script: g.Script}
}

// PortConfig is the guest's switch port: its VLAN settings, its rate
// each way and its port security.
func (g *GuestConfig) PortConfig() vswitch.PortConfig {
	if g.Port != nil {
		pc := *g.Port
		pc.Name = g.Name
		return pc
	}
	pc := vswitch.PortConfig{Name: g.Name, Mode: g.Mode, PVID: g.PVID, AllowedVLANs: g.Allowed, NativeVLAN: g.Native,
		PortSecurity: g.PortSecurity}
	if g.Mode == vswitch.ModeTrunk {
		pc.PVID = 0
	}
	if g.Rate > 0 {
		// Bytes per second, with a burst of 64 KiB GSO frames or 10 ms.
		b := vswitch.Bucket{Rate: units.BytesPerSecond(g.Rate), Burst: max(g.Rate/8/100, 128<<10)}
		pc.Egress.Bytes = b
		pc.Ingress.Bytes = b
	}
	return pc
}

// Run boots the lab's guests and waits for all of them to end.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if len(cfg.Guests) == 0 {
		return nil, errors.New("lab: no guests")
	}
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	names := map[string]bool{}
	for i := range cfg.Guests {
		g := &cfg.Guests[i]
		if err := g.check(i); err != nil {
			return nil, err
		}
		if names[g.Name] {
			return nil, fmt.Errorf("lab: two guests named %q", g.Name)
		}
		names[g.Name] = true
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	sw := cfg.newSwitch()
	swCtx, stopSwitch := context.WithCancel(ctx)
	swDone := make(chan struct{})
	go func() { defer close(swDone); sw.Run(swCtx, time.Millisecond) }() // shapers and FDB aging

	out := &syncWriter{w: cfg.Console}
	var guests []*Guest
	defer func() {
		// Nothing may send frames into a guest whose memory is going
		// away: stop the switch's shaper and every device first.
		stopSwitch()
		<-swDone
		for _, g := range guests {
			if g.cancel != nil { // started
				g.cancel()
				<-g.done
			}
		}
		for _, g := range guests {
			g.m.StopDevices()
		}
		for _, g := range guests {
			g.m.Close()
		}
	}()
	if err := cfg.attach(sw); err != nil {
		return nil, err
	}
	for _, gc := range cfg.Guests {
		pc := gc.PortConfig()
		g, err := create(gc, cfg.Kernel, cfg.Initrd, cfg.Log, out, true, cfg.Events,
			func(p vswitch.Port) (*vswitch.PortHandle, error) { return sw.AddPort(pc, p) })
		if err != nil {
			return nil, err
		}
		guests = append(guests, g)
		if err := setACLs(sw, gc); err != nil {
			return nil, err
		}
	}
	for _, g := range guests {
		g.start(ctx)
	}
	res := make([]Result, len(guests))
	for i, g := range guests {
		res[i] = g.Wait()
	}
	return res, nil
}

// setACLs gives the guest's port its ACLs and security group, if it has
// any.
func setACLs(sw *vswitch.Switch, gc GuestConfig) error {
	if len(gc.ACL.Rules) > 0 || gc.ACL.Default != vswitch.ACLAllow {
		if err := sw.SetACL(gc.Name, gc.ACL); err != nil {
			return fmt.Errorf("lab: guest %s: %w", gc.Name, err)
		}
	}
	if len(gc.EgressACL.Rules) > 0 || gc.EgressACL.Default != vswitch.ACLAllow {
		if err := sw.SetEgressACL(gc.Name, gc.EgressACL); err != nil {
			return fmt.Errorf("lab: guest %s: %w", gc.Name, err)
		}
	}
	if gc.SecurityGroup != nil {
		if err := sw.SetSecurityGroup(gc.Name, gc.SecurityGroup, false); err != nil {
			return fmt.Errorf("lab: guest %s: %w", gc.Name, err)
		}
	}
	return nil
}

// newSwitch makes the lab's switch from cfg.Switch.
func (cfg *Config) newSwitch() *vswitch.Switch {
	sc := cfg.Switch
	if sc.Logger == nil {
		sc.Logger = cfg.Log.Named("switch")
	}
	return vswitch.New(sc)
}
