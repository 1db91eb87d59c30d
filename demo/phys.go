package demo

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	nsh "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// phys is the network namespace that plays the physical network: phys0,
// the far end of the uplink's veth, untagged (the trunk's native VLAN), with
// an 802.1Q subinterface per guest VLAN. It uses netlink and setns only, no
// iproute2: the nested test host has neither `ip netns` nor VLAN links in
// its ip. The namespace is anonymous, held by a file descriptor; programs
// run in it by being started from an OS thread that joined it.
type phys struct {
	fd   nsh.NsHandle
	h    *netlink.Handle
	veth *netlink.Veth
}

// lockedThread runs f on a goroutine locked to an OS thread that is never
// unlocked, so whatever f does to the thread (setns, unshare) ends with it.
func lockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// newPhys creates the namespace and the veth pair uplink <-> phys0.
func newPhys(uplink string) (*phys, error) {
	var fd nsh.NsHandle
	err := lockedThread(func() (err error) {
		fd, err = nsh.New() // unshare(CLONE_NEWNET) of this thread
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("demo: new network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE) // only rtnetlink: L1 lacks xfrm and nfnetlink
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("demo: netlink in the phys namespace: %w", err)
	}
	p := &phys{fd: fd, h: h}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplink}, PeerName: "phys0", PeerNamespace: netlink.NsFd(fd)}
	if err := netlink.LinkAdd(v); err != nil {
		p.close()
		return nil, fmt.Errorf("demo: veth %s <-> phys0: %w", uplink, err)
	}
	p.veth = v
	if err := netlink.LinkSetUp(v); err != nil {
		p.close()
		return nil, fmt.Errorf("demo: %s up: %w", uplink, err)
	}
	for _, l := range []string{"lo", "phys0"} {
		if err := p.up(l); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *phys) close() {
	if p.veth != nil {
		netlink.LinkDel(p.veth)
	}
	p.h.Close()
	p.fd.Close()
}

func (p *phys) up(name string) error {
	l, err := p.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("demo: phys: link %s: %w", name, err)
	}
	if err := p.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("demo: phys: %s up: %w", name, err)
	}
	return nil
}

// addr adds an address to a link in phys.
func (p *phys) addr(name string, a netip.Prefix) error {
	l, err := p.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("demo: phys: link %s: %w", name, err)
	}
	na, err := netlink.ParseAddr(a.String())
	if err != nil {
		return err
	}
	if err := p.h.AddrAdd(l, na); err != nil {
		return fmt.Errorf("demo: phys: address %s on %s: %w", a, name, err)
	}
	return nil
}

// vlan creates phys0.VID (802.1Q) with addr: `ip link add link phys0 name
// phys0.VID type vlan id VID`.
func (p *phys) vlan(vid uint16, a netip.Prefix) error {
	parent, err := p.h.LinkByName("phys0")
	if err != nil {
		return fmt.Errorf("demo: phys: %w", err)
	}
	name := fmt.Sprintf("phys0.%d", vid)
	l := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index},
		VlanId: int(vid), VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
	if err := p.h.LinkAdd(l); err != nil {
		return fmt.Errorf("demo: phys: 802.1Q subinterface %s (kernel module 8021q): %w", name, err)
	}
	if err := p.up(name); err != nil {
		return err
	}
	return p.addr(name, a)
}

// start starts a program in phys. No Pdeathsig: it would fire when the
// starting thread ends, right away.
func (p *phys) start(out io.Writer, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	err := lockedThread(func() error {
		if err := nsh.Set(p.fd); err != nil {
			return fmt.Errorf("setns phys: %w", err)
		}
		return cmd.Start()
	})
	return cmd, err
}

// pinger sends ICMP echo requests from phys (from Go: the ping programs
// of the host and of the nested host take different flags).
type pinger struct {
	c  net.PacketConn
	id uint16
}

var icmpID atomic.Uint32

func (p *phys) pinger() (*pinger, error) {
	var c net.PacketConn
	err := lockedThread(func() error {
		if err := nsh.Set(p.fd); err != nil {
			return fmt.Errorf("setns phys: %w", err)
		}
		var err error
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("demo: phys: ICMP socket: %w", err)
	}
	return &pinger{c: c, id: uint16(icmpID.Add(1)) ^ uint16(os.Getpid())}, nil
}

// echo sends one echo request to dst and reports whether its reply came
// within wait.
func (pg *pinger) echo(dst netip.Addr, seq uint16, wait time.Duration) bool {
	// RFC 792: type 8 (echo), code 0, checksum, identifier, sequence.
	var req [40]byte
	req[0] = 8
	binary.BigEndian.PutUint16(req[4:], pg.id)
	binary.BigEndian.PutUint16(req[6:], seq)
	binary.BigEndian.PutUint16(req[2:], inetChecksum(req[:]))
	to := &net.IPAddr{IP: dst.AsSlice()}
	if _, err := pg.c.WriteTo(req[:], to); err != nil {
		time.Sleep(wait) // no route yet: pace the retries
		return false
	}
	pg.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	for {
		m, from, err := pg.c.ReadFrom(buf) // the IPv4 header is stripped
		if err != nil {
			return false
		}
		if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(to.IP) || m < 8 {
			continue
		}
		if buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == pg.id && binary.BigEndian.Uint16(buf[6:]) == seq {
			return true
		}
	}
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
