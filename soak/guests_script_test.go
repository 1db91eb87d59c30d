package soak

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The lab guests' part of TestSoakGuests: a script per guest, generated
// here from the seeded schedule, and the parsing of what it prints.
//
// Each guest: IPv6 off (ipv6.disable=1) and a permanent neighbour entry for
// every peer, so that it sends no broadcast or multicast at all: every
// frame is unicast to a MAC with a static FDB entry, and the switch's
// books balance exactly (Σ rx = Σ tx + counted drops; a flood would send
// one frame out several times).
//
// A driver reset (gsReset) under traffic: eth0 is set down first (no more
// transmits handed to the device, no more receive processing), the
// kernel's counters are printed (stable now), then the virtio-pci driver
// is unbound (virtio 1.2 §2.4: the driver resets the device, with its
// rings still holding the frames the device wrote but the driver never
// processed, and transmitted chains it never reclaimed) and bound again
// (a new eth0, counters from 0, configured again). So per reset the VMM
// may count up to one queue's worth of frames more than the guest, each
// way: "lost in a reset's rings", bounded and reported apart. The end of
// the script is one more such reset, so that the final counters are read
// from a quiet interface.

// gsNode is one station on the soak's VLAN: a lab guest or the in-process
// vhost-user frontend.
type gsNode struct {
	name string
	ip   netip.Addr
	mac  [6]byte
}

func (n gsNode) hw() string { return net.HardwareAddr(n.mac[:]).String() }

// gsPlan is what one guest does.
type gsPlan struct {
	self    gsNode
	peers   []gsNode      // every other station (neighbour entries)
	pingTo  []gsNode      // guests to wait for at the start and ping at the end
	servers []string      // background commands that run until the guest ends
	traffic []string      // background loops, each one bounded command run until the stop
	dur     time.Duration // traffic time
	seed    int           // the guest's reset schedule (gsLCG)
	lo      int           // ms: gaps between resets are lo..lo+span
	span    int
}

// The guest draws its reset times itself (the schedule does not fit the
// kernel command line at long durations) with an LCG (the ZX81's: short
// to write), seeded from the test's seed; resets replays it.
const (
	gsLCGMul = 75
	gsLCGAdd = 74
	gsLCGMod = 1<<16 + 1
)

// resets returns the gaps before each reset, and the traffic time after
// the last, as the guest's script draws them, were resets instantaneous
// (they are not: a guest does fewer).
func (p gsPlan) resets() ([]time.Duration, time.Duration) {
	var gaps []time.Duration
	x, t, end := p.seed, 0, int(p.dur.Milliseconds())
	for {
		x = (x*gsLCGMul + gsLCGAdd) % gsLCGMod
		g := p.lo + x%p.span
		if t+g >= end-8000 {
			break
		}
		gaps = append(gaps, time.Duration(g)*time.Millisecond)
		t += g
	}
	return gaps, time.Duration(end-t) * time.Millisecond
}

// gsLinger is how long after the soak's end (dur after GS-READY) a guest
// keeps answering its peers' final pings.
const gsLinger = 90 * time.Second

// script renders the plan for the guest agent (u-root's gosh). It travels
// on the kernel command line (base64, 2047 bytes in all): hence the short
// names. N: neighbour entries; Q ADDR TRIES: ping until answered; R
// reset|final: a driver reset (final: unbind only); L I CMD...: run CMD
// until /tmp/stop exists, then leave /tmp/dI.
func (p gsPlan) script() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("B=/sys/bus/pci/drivers/virtio-pci")
	w("S=/sys/class/net/eth0/statistics")
	w("D=$(ls $B|grep 0000)")
	// Addresses 10.0.0.N and MACs 52:54:00:50:00:N for N in gsIDs,
	// the guest's own included (unused: its address is local).
	w("N() { for n in %s; do ip neigh replace 10.0.0.$n lladdr 52:54:00:50:00:$n dev eth0; done; }", gsIDs) // nud permanent: u-root's default
	// Q's failures show on the console (u-root's ping reads the first
	// ICMP message to arrive: another guest's echo request fails a try).
	w("Q() { for i in $(seq 1 $2); do ping -c 1 -w 1000 $1 >/dev/null && return 0; sleep 0.5; done; return 1; }")
	w("R() { ip link set eth0 down; echo GS-STATS $1 $(cd $S;cat tx_packets rx_packets rx_dropped tx_dropped); echo $D >$B/unbind; [ $1 = final ] && return 0; "+
		"echo $D >$B/bind; until [ -e $S ]; do sleep 0.05; done; ip addr add %s/24 dev eth0; N; ip link set eth0 up; }", p.self.ip)
	w("T() { read u v </proc/uptime; t=${u%%.*}${u#*.}0; }")
	w("Z() { T; [ $t -lt $1 ] && sleep $(($1-t))ms; }") // sleep until uptime $1 ms
	w("L() { n=$1; shift; while [ ! -e /tmp/stop ]; do \"$@\" >/dev/null 2>&1; sleep 0.1; done; touch /tmp/d$n; }")
	w("N; echo GS-UP")
	var peers []string
	for _, n := range p.pingTo {
		peers = append(peers, n.ip.String())
	}
	w("for h in %s; do Q $h 120; done", strings.Join(peers, " "))
	w("T; E=$((t+%d)); echo GS-READY", p.dur.Milliseconds())
	for _, c := range p.servers {
		w("%s", c)
	}
	// gosh runs a background job as a goroutine: no $!, no kill; each
	// loop leaves a file when it has stopped.
	var done []string
	for i, c := range p.traffic {
		w("L %d %s &", i, c)
		done = append(done, fmt.Sprintf("[ -e /tmp/d%d ]", i))
	}
	// The resets: gaps of lo+x%span ms, x from an LCG (gsLCG) seeded
	// per guest, none within 8 s of the end, which is dur after
	// GS-READY by the guest's clock (T: uptime in ms), however long the
	// resets themselves took: the guests end within their boot skew.
	w("x=%d; while :; do x=$(((x*%d+%d)%%%d)); g=$((%d+x%%%d)); T; [ $((t+g)) -lt $((E-8000)) ] || break; sleep ${g}ms; R reset; done; Z $E",
		p.seed, gsLCGMul, gsLCGAdd, gsLCGMod, p.lo, p.span)
	w("echo GS-STOP; touch /tmp/stop")
	if len(done) > 0 {
		w("for i in $(seq 1 120); do %s && break; sleep 0.25; done", strings.Join(done, " && "))
	}
	// The final ping: every peer guest must still answer (retried: a
	// peer may be in its last reset). Then let the others finish theirs
	// before going quiet: stay up until gsLinger after the end (by the
	// guest's clock). A peer can come to its pings half a minute late
	// (its loops' last commands run on: an iperf3 client in a stalled
	// stream); leaving 8 s after one's own pings, a guest was gone when
	// its peer came to ping it.
	w("F=0; for h in %s; do r=ok; Q $h 20 || { r=FAILED; F=1; }; echo GS-PING $h $r; done", strings.Join(peers, " "))
	w("Z $((E+%d)); R final; echo GS-END; exit $F", gsLinger.Milliseconds())
	return b.String()
}

// gsCounts are a guest's kernel counters, summed over its driver's lives.
type gsCounts struct {
	tx, rx, rxDropped, txDropped uint64
	resets                       int // GS-STATS lines: resets, the final one included
	final                        bool
	pings, pingFails             int
}

// gsParseConsole sums a guest's GS-STATS lines and counts its final pings.
func gsParseConsole(console string) (gsCounts, error) {
	var c gsCounts
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		i := strings.Index(l, "GS-")
		if i < 0 {
			continue
		}
		f := strings.Fields(l[i:])
		switch f[0] {
		case "GS-STATS":
			if len(f) != 6 {
				return c, fmt.Errorf("bad line %q", l)
			}
			var v [4]uint64
			for k := range v {
				n, err := strconv.ParseUint(f[2+k], 10, 64)
				if err != nil {
					return c, fmt.Errorf("bad line %q: %w", l, err)
				}
				v[k] = n
			}
			c.tx += v[0]
			c.rx += v[1]
			c.rxDropped += v[2]
			c.txDropped += v[3]
			c.resets++
			if f[1] == "final" {
				c.final = true
			}
		case "GS-PING":
			c.pings++
			if len(f) < 3 || f[2] != "ok" {
				c.pingFails++
			}
		}
	}
	if !c.final {
		return c, fmt.Errorf("no final GS-STATS line")
	}
	return c, nil
}
