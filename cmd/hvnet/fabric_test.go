package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/netnstest"
)

// fabric is hvnet hosts on one underlay: each host a network namespace
// with an `hvnet switch` daemon and a veth (u0, 10.8.0.N/24) into a
// bridge in the underlay namespace, and endpoints: namespaces whose ep0
// is a veth into the host, where the daemon takes it as an uplink.
type fabric struct {
	t     *testing.T
	ul    string // the underlay namespace (bridge br0)
	dir   string
	hosts []*fabricHost
}

// fabricHost is one hvnet host of a fabric.
type fabricHost struct {
	n    int    // 1, 2, ...
	ns   string // its namespace
	addr string // its underlay address (its VTEP)
	sock string // its API socket
	d    *daemonProc
	c    *api.Client
}

// endpoint is a Linux stack behind a host: namespace ns, interface ep0.
type endpoint struct {
	name string // for messages
	ns   string
	mac  string
	ip   string
	vlan int
	host *fabricHost
}

// newFabric makes the underlay and n hosts (namespaces named with
// prefix: PREFIXu for the underlay, PREFIXh for the hosts); no daemon
// runs yet.
func newFabric(t *testing.T, prefix string, n int) *fabric {
	t.Helper()
	return newFabricOf(t, prefix, n, false)
}

// newFabricOf is newFabric over an IPv4 underlay (10.8.0.N/24) or, with
// v6, an IPv6 one (fd00:8::N/64, without duplicate address detection:
// a tentative address cannot be bound).
func newFabricOf(t *testing.T, prefix string, n int, v6 bool) *fabric {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	f := &fabric{t: t, ul: netnstest.New(t, prefix+"u"), dir: t.TempDir()}
	netnstest.Run(t, "ip", "-n", f.ul, "link", "add", "br0", "type", "bridge")
	netnstest.Run(t, "ip", "-n", f.ul, "link", "set", "br0", "up")
	for i := range n {
		h := &fabricHost{n: i + 1, ns: netnstest.New(t, prefix+"h"), addr: fmt.Sprintf("10.8.0.%d", i+1),
			sock: filepath.Join(f.dir, fmt.Sprintf("h%d.sock", i+1))}
		b := fmt.Sprintf("b%d", i)
		netnstest.Run(t, "ip", "-n", h.ns, "link", "add", "u0", "type", "veth", "peer", "name", b, "netns", f.ul)
		if v6 {
			h.addr = fmt.Sprintf("fd00:8::%d", i+1)
			netnstest.Run(t, "ip", "-n", h.ns, "addr", "add", h.addr+"/64", "dev", "u0", "nodad")
		} else {
			netnstest.Run(t, "ip", "-n", h.ns, "addr", "add", h.addr+"/24", "dev", "u0")
		}
		netnstest.Run(t, "ip", "-n", h.ns, "link", "set", "u0", "up")
		netnstest.Run(t, "ip", "-n", f.ul, "link", "set", b, "master", "br0", "up")
		f.hosts = append(f.hosts, h)
	}
	return f
}

// endpoint makes an endpoint namespace (prefix) behind host h: its ep0
// is a veth whose other end, hostIf, is in the host's namespace; ep0
// gets mac (if not ""), ip/24 and MTU 1450 (VXLAN's overhead on a
// 1500-byte underlay), and is up unless down.
func (f *fabric) endpoint(h *fabricHost, prefix, hostIf string, vlan int, mac, ip string, down bool) *endpoint {
	t := f.t
	t.Helper()
	e := &endpoint{name: fmt.Sprintf("host %d %s (VLAN %d, %s)", h.n, hostIf, vlan, ip), ns: netnstest.New(t, prefix), ip: ip, vlan: vlan, host: h}
	netnstest.Run(t, "ip", "-n", h.ns, "link", "add", hostIf, "type", "veth", "peer", "name", "ep0", "netns", e.ns)
	netnstest.Run(t, "ip", "-n", h.ns, "link", "set", hostIf, "up")
	if mac != "" {
		netnstest.Run(t, "ip", "-n", e.ns, "link", "set", "ep0", "address", mac)
	}
	netnstest.Run(t, "ip", "-n", e.ns, "addr", "add", ip+"/24", "dev", "ep0")
	netnstest.Run(t, "ip", "-n", e.ns, "link", "set", "ep0", "mtu", "1450")
	if !down {
		netnstest.Run(t, "ip", "-n", e.ns, "link", "set", "ep0", "up")
	}
	out := netnstest.Run(t, "ip", "-n", e.ns, "-br", "link", "show", "ep0")
	e.mac = strings.Fields(out)[2]
	return e
}

// start runs host h's daemon with args (after --api) and waits for its
// API.
func (f *fabric) start(h *fabricHost, args ...string) {
	f.t.Helper()
	h.d = startHvnet(f.t, []string{"ip", "netns", "exec", h.ns}, append([]string{"switch", "--api", h.sock}, args...)...)
	h.c = h.d.waitAPI(f.t, h.sock)
}

// logs are the running daemons' logs, for failure messages.
func (f *fabric) logs() string {
	var b strings.Builder
	for _, h := range f.hosts {
		if h.d != nil {
			fmt.Fprintf(&b, "host %d:\n%s\n", h.n, h.d.logs)
		}
	}
	return b.String()
}

// wait polls cond every 100 ms for up to d, then fails with what and
// the daemons' logs.
func (f *fabric) wait(what string, d time.Duration, cond func() bool) {
	f.t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not after %v\n%s", what, d, f.logs())
		}
	}
}

// tunnel is the tunnel state of host h's port.
func (f *fabric) tunnel(h *fabricHost, port string) *api.TunnelInfo {
	f.t.Helper()
	p, err := h.c.Port(context.Background(), port)
	if err != nil || p.Tunnel == nil {
		f.t.Fatalf("host %d: port %s: %+v, %v\n%s", h.n, port, p, err, h.d.logs)
	}
	return p.Tunnel
}

// ping pings ip from e (three echoes), failing the test if none comes
// back. It waits up to 30 s for the first answer (-W: only while none
// came; it returns as soon as all three are back): a loaded machine can
// hold the daemons for seconds.
func (f *fabric) ping(e *endpoint, ip string) {
	f.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", e.ns, "ping", "-c", "3", "-i", "0.2", "-W", "30", ip).CombinedOutput()
	if err != nil {
		f.t.Fatalf("ping %s from %s: %v\n%s\n%s", ip, e.name, err, out, f.logs())
	}
}

// probeType is the EtherType of probe frames (IEEE 802 local
// experimental): nothing else on the endpoints sends it.
const probeType = 0x88b5

// probe is an AF_PACKET socket on an endpoint's ep0 that sends probe
// frames and counts those it receives, by their tag.
type probe struct {
	fd  int
	idx int // ep0's index in the endpoint's namespace
	mac net.HardwareAddr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openProbe opens a probe socket on e's ep0 (made in e's namespace by a
// thread that enters it and then ends), closed at cleanup.
func openProbe(t *testing.T, e *endpoint) *probe {
	t.Helper()
	type result struct {
		p   *probe
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		nsf, err := os.Open("/var/run/netns/" + e.ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer nsf.Close()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", e.ns, err)}
			return
		}
		ifc, err := net.InterfaceByName("ep0")
		if err != nil {
			ch <- result{err: err}
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(probeType)))
		if err != nil {
			ch <- result{err: err}
			return
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(probeType), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			ch <- result{err: err}
			return
		}
		ch <- result{p: &probe{fd: fd, idx: ifc.Index, mac: ifc.HardwareAddr}}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("probe on %s: %v", e.name, r.err)
	}
	t.Cleanup(func() { unix.Close(r.p.fd) })
	return r.p
}

// send sends a probe frame tagged tag to dst (a MAC; broadcast if nil).
func (p *probe) send(t *testing.T, dst net.HardwareAddr, tag string) {
	t.Helper()
	if dst == nil {
		dst = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	fr := make([]byte, 14, 64)
	copy(fr, dst)
	copy(fr[6:], p.mac)
	binary.BigEndian.PutUint16(fr[12:], probeType)
	fr = append(fr, "probe "+tag+"\n"...)
	for len(fr) < 60 {
		fr = append(fr, 0)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(probeType), Ifindex: p.idx, Halen: 6}
	copy(sa.Addr[:], dst)
	if err := unix.Sendto(p.fd, fr, 0, sa); err != nil {
		t.Fatalf("send probe %s: %v", tag, err)
	}
}

// receivedAll drains the probes until each has at least the counts of
// want (tags to how many; up to 30 s: the wait ends as soon as they are
// there, however long a loaded machine takes to carry them), then for
// settle more, for late copies (duplicates, loops), and returns what
// each received in all. Tags beyond want are counted too, so that the
// caller can check what must not arrive.
func receivedAll[K comparable](t *testing.T, probes map[K]*probe, want map[K]map[string]int, settle time.Duration) map[K]map[string]int {
	t.Helper()
	got := map[K]map[string]int{}
	for k := range probes {
		got[k] = map[string]int{}
	}
	drain := func() {
		for k, p := range probes {
			for tag, n := range p.received(t) {
				got[k][tag] += n
			}
		}
	}
	missing := func() bool {
		for k, w := range want {
			for tag, n := range w {
				if got[k][tag] < n {
					return true
				}
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		drain()
		if !missing() || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(settle)
	drain()
	return got
}

// received drains the socket: how many probe frames of each tag arrived
// (frames the endpoint sent itself are not counted).
func (p *probe) received(t *testing.T) map[string]int {
	t.Helper()
	got := map[string]int{}
	buf := make([]byte, 2048)
	for {
		n, from, err := unix.Recvfrom(p.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return got
		}
		if err != nil {
			t.Fatalf("probe receive: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n < 14 {
			continue
		}
		tag, _, ok := strings.Cut(strings.TrimPrefix(string(buf[14:n]), "probe "), "\n")
		if ok {
			got[tag]++
		}
	}
}
