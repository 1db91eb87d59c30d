package soak

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost"
	"github.com/hvnet/hvnet/vhost/dpdktest"
)

// DPDK peers: dpdk-testpmd attaches with net_virtio_user to two
// server-mode ports of the soak's switch, x (VLAN 10) and y (VLAN 20), and
// forwards in io mode between them: frontend f (VLAN 10) sends to g's MAC,
// which the switch's FDB puts behind x in VLAN 10; testpmd forwards x->y;
// in VLAN 20 g's MAC is g's port. g sends back the same way (y->x). The
// VLANs keep the loop from closing on itself.
//
// Fault: testpmd is killed (SIGKILL) and started again; hvnet's ports
// survive. Frames inside the dead testpmd (its rings, its mbufs in flight)
// are "lost in a dead DPDK peer": per kill, what the switch gave x and y
// less what came back from them during that incarnation, at most
// dpdkLostBound. The last incarnation is stopped cleanly and its own port
// statistics must match the switch's counters exactly.
const (
	dpdkQueueSize = 256
	// Per kill: both directions, a receive and a transmit ring each.
	dpdkLostBound = 2 * 2 * dpdkQueueSize
)

// dpdkPeer is the restartable testpmd between ports x and y.
type dpdkPeer struct {
	socks [2]string
	ports [2]*vhost.Port // x, y
	pmd   *dpdktest.Testpmd
	log   daemonLog
	up    atomic.Bool // forwarding: f and g may send

	// The switch's counters of x and y when the current incarnation
	// started forwarding.
	base     [2]vswitch.PortCounters
	starts   int
	kills    int
	lost     uint64 // in dead incarnations
	maxLost  uint64
	startMax time.Duration
}

func (p *dpdkPeer) start() error {
	t0 := time.Now()
	var vdevs []string
	for i, s := range p.socks {
		vdevs = append(vdevs, fmt.Sprintf("net_virtio_user%d,path=%s,queues=1,queue_size=%d", i, s, dpdkQueueSize))
	}
	fmt.Fprintf(&p.log, "=== soak: testpmd %d\n", p.starts+1)
	pmd, err := dpdktest.Start(dpdktest.Options{Cores: []int{0, 1}, Vdevs: vdevs, Args: []string{"--forward-mode=io", "--no-flush-rx"}, Log: &p.log})
	if err != nil {
		return err
	}
	p.pmd = pmd
	if err := pmd.WaitReady(30 * time.Second); err != nil {
		return fmt.Errorf("%w:\n%s", err, p.log.String())
	}
	for range 1000 { // deadlock guard 10 s
		if p.ports[0].Connected() && p.ports[1].Connected() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !p.ports[0].Connected() || !p.ports[1].Connected() {
		return fmt.Errorf("testpmd started but ports x, y not both attached:\n%s", p.log.String())
	}
	// --no-flush-rx: frames that arrive before forwarding starts are
	// forwarded, not flushed (which testpmd counts as received and does
	// not forward).
	pmd.Cmd("start")
	if _, err := pmd.Expect("packet forwarding", 10*time.Second); err != nil {
		return fmt.Errorf("%w:\n%s", err, p.log.String())
	}
	p.base = [2]vswitch.PortCounters{p.ports[0].Handle().Counters(), p.ports[1].Handle().Counters()}
	p.starts++
	p.startMax = max(p.startMax, time.Since(t0))
	p.up.Store(true)
	return nil
}

// delta is what the switch gave x and y (out) and took from them (in)
// since the incarnation started.
func (p *dpdkPeer) delta() (out, in [2]uint64) {
	for i, port := range p.ports {
		c := port.Handle().Counters()
		out[i], in[i] = c.TxPackets-p.base[i].TxPackets, c.RxPackets-p.base[i].RxPackets
	}
	return out, in
}

// kill ends testpmd with SIGKILL, waits until hvnet detached both ports,
// and counts the frames lost inside it.
func (p *dpdkPeer) kill() error {
	p.up.Store(false)
	p.pmd.Kill()
	p.cleanup()
	for range 1000 { // deadlock guard 10 s
		if !p.ports[0].Connected() && !p.ports[1].Connected() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.ports[0].Connected() || p.ports[1].Connected() {
		return fmt.Errorf("ports x, y still attached 10 s after testpmd was killed")
	}
	out, in := p.delta()
	// x -> testpmd -> y, and y -> testpmd -> x.
	lost := int64(out[0]+out[1]) - int64(in[0]+in[1])
	if lost < 0 || lost > dpdkLostBound {
		return fmt.Errorf("testpmd kill %d: switch gave it %v, got back %v: lost %d outside [0, %d]", p.kills+1, out, in, lost, dpdkLostBound)
	}
	p.kills++
	p.lost += uint64(lost)
	p.maxLost = max(p.maxLost, uint64(lost))
	return nil
}

// stop ends the last incarnation cleanly: its port statistics (port 0 is
// x, port 1 is y) must match the switch's counters, and what it received
// but did not send on is its own counted drop.
func (p *dpdkPeer) stop() (drops uint64, err error) {
	p.up.Store(false)
	defer p.cleanup()
	defer p.pmd.Close()
	p.pmd.Cmd("stop") // its forwarding statistics go to the log
	if _, err := p.pmd.Expect("Done.", 10*time.Second); err != nil {
		return 0, err
	}
	var rx, tx [2]uint64
	for i := range 2 {
		if rx[i], tx[i], err = p.pmd.Stats(i); err != nil {
			return 0, err
		}
	}
	out, in := p.delta()
	if rx != out || tx != in {
		return 0, fmt.Errorf("testpmd stats: rx %v tx %v; switch gave it %v, took %v", rx, tx, out, in)
	}
	return rx[0] + rx[1] - tx[0] - tx[1], nil
}

// cleanup removes the runtime directories a killed testpmd leaves.
func (p *dpdkPeer) cleanup() {
	ms, _ := filepath.Glob(fmt.Sprintf("/var/run/dpdk/hvnet-%d-*", os.Getpid()))
	for _, m := range ms {
		os.RemoveAll(m)
	}
}
