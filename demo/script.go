package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Guest scripts print machine-readable lines: "DEMO-REACH <to> ok|fail"
// per target, and iperf3's JSON between BEGIN-iperf and END-iperf.

// target is what a guest pings: another guest at its address in the
// pinger's subnet (g3's VLAN 10 alias for g1 and g2), or the physical
// host's address in the guest's own VLAN.
type target struct {
	name   string
	addr   netip.Addr
	expect bool // reachable: same VLAN
}

func targets(g guestSpec, all []guestSpec) []target {
	var ts []target
	for _, o := range all {
		if o.name == g.name {
			continue
		}
		a := o.addr
		if o.alias.IsValid() && !g.addr.Contains(a.Addr()) {
			a = o.alias
		}
		if g.alias.IsValid() && !g.addr.Contains(a.Addr()) && !g.alias.Contains(a.Addr()) {
			continue // no address of o on a subnet g has
		}
		ts = append(ts, target{name: o.name, addr: a.Addr(), expect: o.vlan == g.vlan})
	}
	return append(ts, target{name: "phys", addr: physAddr[g.vlan].Addr(), expect: true})
}

// script is guest g's script: reachable targets first (waiting up to 30
// tries for each, as the peers boot), then the isolated ones (3 tries
// each), then a 4-second iperf3 from the physical host (-R) to its own server
// port, retried until the server listens.
func script(g guestSpec, all []guestSpec, port int) string {
	var b strings.Builder
	writeReach(&b, g, targets(g, all))
	fmt.Fprintf(&b, `for i in $(seq 1 60); do
  if iperf3 -c %s -p %d -t %d -R -J > /tmp/iperf.json; then break; fi
  sleep 1
done
echo BEGIN-iperf
cat /tmp/iperf.json
echo END-iperf
`, physAddr[g.vlan].Addr(), port, iperfSecs)
	return b.String()
}

// iperfSecs is each guest's iperf3 run; the steady state is its second
// half (the shaper's one-time burst is spent in the first).
const iperfSecs = 4

// parsed is what a guest's console says.
type parsed struct {
	reach  map[string]bool
	bps    float64 // the whole run
	steady float64 // its second half
	err    error   // iperf3's
}

func parseConsole(console string) parsed {
	p := parsed{reach: map[string]bool{}}
	var js strings.Builder
	in, done := false, false
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(l, "DEMO-REACH "):
			f := strings.Fields(l)
			if len(f) == 3 {
				p.reach[f[1]] = f[2] == "ok"
			}
		case l == "BEGIN-iperf":
			in = true
		case l == "END-iperf":
			in, done = false, true
		case in:
			js.WriteString(l + "\n")
		}
	}
	if !done {
		p.err = fmt.Errorf("no iperf3 result in the console")
		return p
	}
	p.bps, p.steady, p.err = iperfBPS(js.String())
	return p
}

// iperfBPS parses iperf3 -J output (of -R: the client receives, and its
// intervals are the receiver's): the receiver's bits per second over the
// whole run, and over the intervals of its second half (the steady state).
func iperfBPS(out string) (whole, steady float64, err error) {
	var r struct {
		Intervals []struct {
			Sum struct {
				Start, End float64
				Bytes      float64 `json:"bytes"`
			} `json:"sum"`
		} `json:"intervals"`
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return 0, 0, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	var bytes, secs float64
	for _, iv := range r.Intervals {
		if iv.Sum.Start >= iperfSecs/2-0.01 {
			bytes += iv.Sum.Bytes
			secs += iv.Sum.End - iv.Sum.Start
		}
	}
	if secs > 0 {
		steady = bytes * 8 / secs
	}
	return r.End.SumReceived.BitsPerSecond, steady, nil
}

// writeReach writes g's pings of ts: reachable targets first (waiting up
// to 30 tries for each, as the peers boot), then the isolated ones (3
// tries each), each result a DEMO-REACH line.
func writeReach(b *strings.Builder, g guestSpec, ts []target) {
	if g.alias.IsValid() {
		fmt.Fprintf(b, "ip addr add %s dev eth0\n", g.alias)
	}
	for _, pass := range []bool{true, false} {
		for _, t := range ts {
			if t.expect != pass {
				continue
			}
			tries := 3
			if t.expect {
				tries = 30
			}
			fmt.Fprintf(b, `r=fail
for i in $(seq 1 %d); do
  if ping -c 1 -w 1000 %s; then r=ok; break; fi
done
echo "DEMO-REACH %s $r"
`, tries, t.addr, t.name)
		}
	}
}
