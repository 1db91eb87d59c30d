package vmm

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// vhostTestNet is a NetDevice in vhost-user mode over real memfd RAM, with
// mock drivers for its first queue pair; MSI-X vectors 1 (RX) and 2 (TX)
// and 0 for configuration changes.
type vhostTestNet struct {
	testNet
	v      *VhostNetDevice
	ram    *Memory
	rx, tx *virtiotest.Driver
}

func newVhostTestNet(t *testing.T, sock string) *vhostTestNet {
	t.Helper()
	ram, err := NewMemory(2 << 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	r := ram.Regions()[0]
	mem, err := virtio.NewMemory(virtio.Region{GPA: r.GPA, Data: ram.Host(r)})
	if err != nil {
		t.Fatal(err)
	}
	tn := &vhostTestNet{testNet: testNet{t: t, plat: newFakePlatform(), mem: mem, raw: ram.Host(r)}, ram: ram}
	tn.v, err = newVhostNetDevice(sock, NetConfig{QueueSize: 64, MAC: [6]byte{2, 0, 0, 0, 0, 1},
		Log: hclog.New(&hclog.LoggerOptions{Name: "vhostnet", Level: hclog.Warn})}, mem, ram, tn.plat, testBAR)
	if err != nil {
		t.Fatal(err)
	}
	tn.d = tn.v.pci
	t.Cleanup(func() {
		if err := tn.v.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	const base = 0x10_0000
	tn.rx = virtiotest.NewIn(mem, tn.raw[base:base+0x40000], base, 64)
	tn.tx = virtiotest.NewIn(mem, tn.raw[base+0x40000:base+0x80000], base+0x40000, 64)
	return tn
}

// start runs the driver's initialisation to DRIVER_OK with MSI-X on.
func (tn *vhostTestNet) start() {
	f := virtio.Feature(virtio.FVersion1) | vnet.Features(vnet.FMrgRxbuf, vnet.FStatus)
	if st := tn.negotiate(f); st&virtio.StatusFeaturesOK == 0 {
		tn.t.Fatalf("status %#x after FEATURES_OK", st)
	}
	tn.d.ConfigWrite(capMSIXOff+2, 2, msixMsgEnable)
	for v := range 3 {
		tn.write(vpciMSIXOff+uint64(v)*16, 4, 0xfee00000)
		tn.write(vpciMSIXOff+uint64(v)*16+8, 4, uint64(0x40+v))
		tn.write(vpciMSIXOff+uint64(v)*16+12, 4, 0) // unmask
	}
	tn.write(ccConfigMSIXVector, 2, 0)
	tn.setupQueue(0, tn.rx, 1)
	tn.setupQueue(1, tn.tx, 2)
	tn.write(ccDeviceStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	if st := tn.read(ccDeviceStatus, 1); st&virtio.StatusDeviceNeedsReset != 0 {
		tn.t.Fatalf("status %#x after DRIVER_OK", st)
	}
}

// waitVector blocks until MSI-X vector v's eventfd (the irqfd KVM would
// read) fires; false after 10 s (a deadlock guard, not a timing check).
func (tn *vhostTestNet) waitVector(v int) bool {
	fd := tn.d.msix.fds[v]
	fds := []unix.PollFd{{Fd: int32(fd.FD()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return false
		}
		fd.Read()
		return true
	}
}

func startVhostPort(t *testing.T, sw *vswitch.Switch, name string) (*vhost.Port, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), name+".sock")
	p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: name, PVID: 1}, Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Remove()
	})
	return p, sock
}

// TestVhostNetForward joins two vhost-user-mode devices through hvnet's
// own backend and switch: a frame the first device's driver transmits
// (kick on the queue's ioeventfd, read by the backend) arrives in the
// second's receive queue, with the backend raising the MSI-X vector's
// eventfd itself.
func TestVhostNetForward(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	pa, sockA := startVhostPort(t, sw, "a")
	pb, sockB := startVhostPort(t, sw, "b")
	a, b := newVhostTestNet(t, sockA), newVhostTestNet(t, sockB)
	if off := a.v.offered(); !virtio.HasFeature(off, vnet.FCtrlVQ) || !virtio.HasFeature(off, virtio.FVersion1) {
		t.Errorf("offered %#x: want VERSION_1 and CTRL_VQ", off)
	}
	a.start()
	b.start()
	for range 8 {
		b.rx.Push(b.rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
	}
	b.write(vpciNotifyOff, 2, 0)
	frame := make([]byte, 60)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00})
	for i := 14; i < len(frame); i++ {
		frame[i] = byte(i)
	}
	a.tx.Push(a.tx.AddChain(virtiotest.Buf{Data: append(make([]byte, vnet.HdrLen), frame...)}))
	a.write(vpciNotifyOff+vpciNotifyMult, 2, 1)
	var got []byte
	for got == nil {
		if u, ok := b.rx.PopUsed(); ok {
			d := b.rx.BufAddr(uint16(u.ID), 0)
			got = b.rx.Bytes(d.Addr, uint64(u.Len))[vnet.HdrLen:]
			break
		}
		if !b.waitVector(1) {
			t.Fatal("no receive interrupt in 10 s")
		}
	}
	if !bytes.Equal(got, frame) {
		t.Errorf("received % x\nwant % x", got, frame)
	}
	// The switch adds a batch to its counters after delivering it, so the
	// frame can reach B a moment before the counters show it: wait for
	// them (a condition, not a timing assertion).
	ca, cb := pa.Handle().Counters(), pb.Handle().Counters()
	for deadline := time.Now().Add(10 * time.Second); (ca.RxPackets != 1 || cb.TxPackets != 1) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		ca, cb = pa.Handle().Counters(), pb.Handle().Counters()
	}
	if ca.RxPackets != 1 || cb.TxPackets != 1 {
		t.Errorf("port counters a %+v b %+v: want 1 frame in at a, 1 out at b", ca, cb)
	}
	if a.tx.UsedIdx() != 1 {
		t.Errorf("tx used idx %d, want 1", a.tx.UsedIdx())
	}
	// A device reset stops the rings (GET_VRING_BASE); the device starts
	// again afterwards.
	b.write(ccDeviceStatus, 1, 0)
	if st := b.read(ccDeviceStatus, 1); st != 0 {
		t.Errorf("status after reset %#x", st)
	}
}

// TestVhostNetBackendLost: when the backend goes away, the device needs a
// reset, its link is down and the driver gets a configuration interrupt.
func TestVhostNetBackendLost(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	p, sock := startVhostPort(t, sw, "a")
	a := newVhostTestNet(t, sock)
	a.start()
	p.Close()
	if !a.waitVector(0) {
		t.Fatal("no configuration interrupt in 10 s")
	}
	if st := a.read(ccDeviceStatus, 1); st&virtio.StatusDeviceNeedsReset == 0 {
		t.Errorf("status %#x, want DEVICE_NEEDS_RESET", st)
	}
	if got := a.read(vpciDeviceOff+netCfgStatus, 2); got&netStatusLinkUp != 0 {
		t.Errorf("net status %#x, want link down", got)
	}
	// The guest's reset and a new start fail cleanly (NEEDS_RESET again).
	a.write(ccDeviceStatus, 1, 0)
	a.start2()
}

// start2 re-initialises after a lost backend: DRIVER_OK must end in
// DEVICE_NEEDS_RESET, without hanging.
func (tn *vhostTestNet) start2() {
	tn.negotiate(virtio.Feature(virtio.FVersion1))
	tn.setupQueue(0, tn.rx, 1)
	tn.write(ccDeviceStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	if st := tn.read(ccDeviceStatus, 1); st&virtio.StatusDeviceNeedsReset == 0 {
		tn.t.Errorf("status %#x after DRIVER_OK with no backend, want DEVICE_NEEDS_RESET", st)
	}
}

// TestVhostNetDialError: a missing socket fails AddVhostNet with the
// path; no socket, or a Sink (the frames are the backend's), is refused.
func TestVhostNetDialError(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := newVhostNetDevice(sock, NetConfig{}, nil, &Memory{}, newFakePlatform(), testBAR)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(sock)) {
		t.Errorf("err = %v, want one naming %s", err, sock)
	}
	if _, err := newVhostNetDevice("", NetConfig{}, nil, &Memory{}, newFakePlatform(), testBAR); err == nil || !strings.Contains(err.Error(), "socket") {
		t.Errorf("no socket: err = %v, want one saying a socket is needed", err)
	}
	sink := sinkFunc(func([]vnet.Frame) {})
	if _, err := newVhostNetDevice(sock, NetConfig{Sink: sink}, nil, &Memory{}, newFakePlatform(), testBAR); err == nil || !strings.Contains(err.Error(), "Sink") {
		t.Errorf("with a Sink: err = %v, want one refusing it", err)
	}
}
