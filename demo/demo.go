// Package demo is hvnet's demonstration of the whole system, the engine of
// `hvnet demo` and of `./run.sh`: the built-in switch with an AF_PACKET
// uplink (trunk: VLANs 10 and 20 tagged, VLAN 1 native) into a network
// namespace that plays the physical network, and three guests booted by
// hvnet's VMM on access ports:
//
//	g1  VLAN 10  10.0.10.1/24
//	g2  VLAN 10  10.0.10.2/24  rate limited (Config.Rate)
//	g3  VLAN 20  10.0.20.3/24, and 10.0.10.3/24: VLAN 10's subnet on the
//	             wrong VLAN, so isolation is the switch's doing, not routing's
//	phys         phys0 10.0.1.254/24 (native), phys0.10 10.0.10.254/24,
//	             phys0.20 10.0.20.254/24, an iperf3 server
//
// Each guest pings the others and the physical host, then runs iperf3 -R
// (the physical host sends, so the guest's egress shaper is what limits a
// rate-limited guest); the physical host pings each guest. The uplink's
// traffic is mirrored into a pcap file. Run returns a Report: the
// reachability matrix against the expected isolation, throughput against
// each guest's rate, the switch's port counters, and a list of failed
// expectations.
//
// Run needs root, /dev/kvm that boots Linux, 802.1Q in the kernel and
// iperf3; it creates the veth "upl0" in the caller's network namespace, so
// callers run it in a private one (hvnet demo does).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/lab"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

// Config is a demo run.
type Config struct {
	Kernel, Initrd string
	Rate           int64     // g2's rate limit, bits per second (default DefaultRate)
	Pcap           io.Writer // the uplink's capture (nil: none)
	MaxFrames      int       // frames kept in the capture (default 3000)
	Console        io.Writer // guest consoles, prefixed "name| " (default: discarded)
	Log            hclog.Logger
	Timeout        time.Duration // the guests' run (default 4 minutes)
}

// DefaultRate is g2's rate limit: well under what an unlimited guest gets
// inside the nested test host, so the limit is what shows.
const DefaultRate = 2_000_000

// iperfPort is guest i's iperf3 server port in phys.
func iperfPort(i int) int { return 5201 + i }

// UplinkIf is the host end of the veth pair into the physical network.
const UplinkIf = "upl0"

// guestSpec is one demo guest.
type guestSpec struct {
	name  string
	vlan  uint16
	addr  netip.Prefix
	alias netip.Prefix // a second address (zero: none)
	rate  int64
}

// physAddr is the physical host's address in each VLAN (1: native).
var physAddr = map[uint16]netip.Prefix{
	1:  netip.MustParsePrefix("10.0.1.254/24"),
	10: netip.MustParsePrefix("10.0.10.254/24"),
	20: netip.MustParsePrefix("10.0.20.254/24"),
}

func topology(rate int64) []guestSpec {
	return []guestSpec{
		{name: "g1", vlan: 10, addr: netip.MustParsePrefix("10.0.10.1/24")},
		{name: "g2", vlan: 10, addr: netip.MustParsePrefix("10.0.10.2/24"), rate: rate},
		{name: "g3", vlan: 20, addr: netip.MustParsePrefix("10.0.20.3/24"), alias: netip.MustParsePrefix("10.0.10.3/24")},
	}
}

// Run runs the demo. An error means it could not run; failed expectations
// are in Report.Failures.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, errors.New("demo: no guest kernel or initrd")
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("demo: negative rate %d", cfg.Rate)
	}
	if cfg.MaxFrames == 0 {
		cfg.MaxFrames = 3000
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 4 * time.Minute
	}
	specs := topology(cfg.Rate)

	ph, err := newPhys(UplinkIf)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	if err := ph.addr("phys0", physAddr[1]); err != nil {
		return nil, err
	}
	for _, vid := range []uint16{10, 20} {
		if err := ph.vlan(vid, physAddr[vid]); err != nil {
			return nil, err
		}
	}
	// One iperf3 server per guest (one server runs one test at a time).
	for i := range specs {
		srv, err := ph.start(nil, "iperf3", "-s", "-p", fmt.Sprint(iperfPort(i)))
		if err != nil {
			return nil, fmt.Errorf("demo: iperf3 server in phys: %w", err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
	}

	var capt *capture
	if cfg.Pcap != nil {
		w, err := vswitch.NewPcapWriter(cfg.Pcap, vswitch.PcapOptions{SnapLen: 256}) // headers
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		capt = &capture{w: w, max: cfg.MaxFrames}
	}

	// The physical host pings each guest while they run.
	pingCtx, stopPings := context.WithCancel(ctx)
	defer stopPings()
	var pings sync.WaitGroup
	physReach := make([]bool, len(specs))

	var sw *vswitch.Switch
	var up *uplink.Port
	attach := func(s *vswitch.Switch) error {
		sw = s
		p, err := uplink.Open(UplinkIf, uplink.Config{Logger: cfg.Log.Named("uplink")})
		if err != nil {
			return err
		}
		h, err := s.AddPort(vswitch.PortConfig{Name: "uplink", Mode: vswitch.ModeTrunk,
			AllowedVLANs: []uint16{10, 20}, NativeVLAN: 1, MirrorIngress: true, MirrorEgress: true}, p)
		if err != nil {
			p.Close()
			return err
		}
		if err := p.Start(h); err != nil {
			p.Close()
			return err
		}
		up = p
		if capt != nil {
			s.SetMirror(capt)
		}
		for i, g := range specs {
			pg, err := ph.pinger()
			if err != nil {
				return err
			}
			pings.Add(1)
			go func() {
				defer pings.Done()
				defer pg.c.Close()
				for seq := uint16(0); pingCtx.Err() == nil; seq++ {
					if pg.echo(g.addr.Addr(), seq, time.Second) {
						physReach[i] = true
						return
					}
				}
			}()
		}
		return nil
	}
	var gcs []lab.GuestConfig
	for _, g := range specs {
		gcs = append(gcs, lab.GuestConfig{Name: g.name, Addr: g.addr, PVID: g.vlan, Rate: g.rate,
			Script: script(g, specs, iperfPort(len(gcs)))})
	}
	start := time.Now()
	res, err := lab.Run(ctx, lab.Config{Kernel: cfg.Kernel, Initrd: cfg.Initrd, Guests: gcs,
		Console: cfg.Console, Log: cfg.Log.Named("lab"), Timeout: cfg.Timeout, Attach: attach})
	stopPings()
	pings.Wait()
	if up != nil {
		up.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	rep := report(specs, res, physReach, cfg.Rate)
	rep.Elapsed = time.Since(start)
	if sw != nil {
		rep.Counters = sw.Counters()
	}
	if capt != nil {
		rep.PcapFrames = capt.frames()
		if err := capt.w.Flush(); err != nil {
			return nil, fmt.Errorf("demo: pcap: %w", err)
		}
	}
	return rep, nil
}

// capture keeps the first max mirrored frames in a pcap file: enough to
// show ARP, ICMP and the start of each TCP transfer, small enough to copy
// out of the nested test host over its console.
type capture struct {
	w   *vswitch.PcapWriter
	mu  sync.Mutex
	n   int
	max int
}

var _ vswitch.MirrorSink = (*capture)(nil)

// Mirror implements vswitch.MirrorSink.
func (c *capture) Mirror(port string, dir vswitch.Direction, ts int64, frames []vswitch.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := min(len(frames), c.max-c.n)
	if k <= 0 {
		return
	}
	c.n += k
	c.w.Mirror(port, dir, ts, frames[:k])
}

func (c *capture) frames() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
