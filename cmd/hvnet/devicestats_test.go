package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/daemon/uplinkkind"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// badFrontend is a vhost-user frontend with one queue pair whose transmit
// ring carries what the test puts there.
type badFrontend struct {
	f          *frontend.Frontend
	mem        *frontend.Memory
	rx, tx     *virtiotest.Driver
	kick, call [2]*virtio.EventFD
}

const (
	bfBase  = 0x10_0000
	bfSize  = 1 << 20
	bfQSize = 64
	bfHdr   = 12 // virtio_net_hdr_v1
)

func dialBadFrontend(t *testing.T, sock string) *badFrontend {
	t.Helper()
	f, err := frontend.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	b := &badFrontend{f: f}
	t.Cleanup(b.close)
	if b.mem, err = frontend.NewMemory(bfSize, bfBase); err != nil {
		t.Fatal(err)
	}
	vm, err := b.mem.Virtio()
	if err != nil {
		t.Fatal(err)
	}
	b.rx = virtiotest.NewIn(vm, b.mem.Data[:bfSize/2], bfBase, bfQSize)
	b.tx = virtiotest.NewIn(vm, b.mem.Data[bfSize/2:], bfBase+bfSize/2, bfQSize)
	for i := range 2 {
		if b.kick[i], err = virtio.NewEventFD(true); err != nil {
			t.Fatal(err)
		}
		if b.call[i], err = virtio.NewEventFD(true); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b *badFrontend) close() {
	b.f.Close()
	for i := range 2 {
		for _, e := range []*virtio.EventFD{b.kick[i], b.call[i]} {
			if e != nil && e.FD() >= 0 {
				e.Close()
			}
		}
	}
	if b.mem != nil {
		b.mem.Close()
		b.mem = nil
	}
}

// start runs QEMU's start-up sequence: features, memory, both rings.
func (b *badFrontend) start(t *testing.T) {
	t.Helper()
	f := b.f
	steps := []func() error{
		f.SetOwner,
		func() error { return f.SetFeatures(virtio.Feature(virtio.FVersion1) | 1<<proto.FProtocolFeatures) },
		func() error { return f.SetMemTable(b.mem.Region()) },
	}
	for i, d := range []*virtiotest.Driver{b.rx, b.tx} {
		q := uint32(i)
		steps = append(steps,
			func() error { return f.SetVringNum(q, bfQSize) },
			func() error { return f.SetVringBase(q, 0) },
			func() error {
				return f.SetVringAddr(proto.VringAddr{Index: q, Desc: b.mem.UVA(d.Desc), Avail: b.mem.UVA(d.Avail), Used: b.mem.UVA(d.Used)})
			},
			func() error { return f.SetVringCall(q, b.call[i].FD()) },
			func() error { return f.SetVringKick(q, b.kick[i].FD()) },
			func() error { return f.SetVringEnable(q, true) },
		)
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
}

// sendBadHeaders transmits n frames whose virtio_net_hdr has a flag the
// device never offered, and waits until the backend used them.
func (b *badFrontend) sendBadHeaders(t *testing.T, n int) {
	t.Helper()
	for range n {
		hdr := make([]byte, bfHdr)
		hdr[0] = 0x80 // flags other than NEEDS_CSUM (virtio 1.2 §5.1.6)
		fr := make([]byte, 60)
		copy(fr, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
		b.tx.Push(b.tx.AddChain(virtiotest.Buf{Data: append(hdr, fr...)}))
	}
	if err := b.kick[1].Signal(); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "the backend to use the bad chains", func() bool { return b.tx.UsedIdx() == b.tx.AvailIdx() })
}

// waitCond polls cond (a 10 s deadlock guard, not a speed assertion).
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The daemon shows what a hostile frontend did to its own port: a pipe
// handed over as a call descriptor (refused, the session ended) and then,
// in a second session, frames with bad virtio-net headers, in the API's
// device counters (totals over both sessions), hvnet ctl port and
// /metrics; the neighbour port's counters stay zero.
func TestDaemonShowsDeviceCounters(t *testing.T) {
	dir := t.TempDir()
	sock, run := filepath.Join(dir, "api.sock"), filepath.Join(dir, "run")
	evil, calm := filepath.Join(run, "evil.sock"), filepath.Join(run, "calm.sock")
	cfg := daemon.Config{API: sock, RunDir: run, Ports: []daemon.PortSpec{
		vhostSpec(t, vswitch.PortConfig{Name: "evil", PVID: 10}, evil),
		vhostSpec(t, vswitch.PortConfig{Name: "calm", PVID: 10}, calm),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, hclog.NewNullLogger(), cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon.Run: %v", err)
		}
	})
	c := api.NewClient(sock)
	waitCond(t, "the API", func() bool { _, err := c.Ports(context.Background()); return err == nil })
	port := func(name string) api.Port {
		t.Helper()
		p, err := c.Port(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Device == nil || p.Device.VirtioCounters == nil || p.Device.VhostCounters == nil || p.Device.UplinkCounters != nil {
			t.Fatalf("port %s: device = %+v, want vhost-user's counters", name, p.Device)
		}
		return p
	}

	// Session 1: a pipe as the call descriptor is refused and ends it
	// (a refused descriptor, and a rejected request).
	b1 := dialBadFrontend(t, evil)
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	if err := b1.f.SetOwner(); err != nil {
		t.Fatal(err)
	}
	b1.f.SetVringCall(0, pipe[1]) // no REPLY_ACK: the backend hangs up
	waitCond(t, "the refused descriptor to end session 1", func() bool {
		d := port("evil").Device
		return d.RefusedFDs == 1 && d.Sessions == 1 && !d.Connected
	})

	// Session 2: bad headers, counted while it lasts and after.
	b2 := dialBadFrontend(t, evil)
	b2.start(t)
	b2.sendBadHeaders(t, 3)
	waitCond(t, "session 2", func() bool { return port("evil").Device.Connected })
	p := port("evil")
	want := api.DeviceCounters{Kind: api.KindVhostUser, VirtioCounters: &api.VirtioCounters{TxDropBadHeader: 3},
		VhostCounters: &api.VhostCounters{Sessions: 2, Connected: true, RefusedFDs: 1, RejectedRequests: 1, Features: []string{"VERSION_1"}, ActivePairs: 1}}
	if !deviceEqual(p.Device, &want) {
		t.Errorf("evil's device = %s, want %s", deviceJSON(p.Device), deviceJSON(&want))
	}
	if p.Counters.RxPackets != 0 {
		t.Errorf("the switch got %d frames from evil, want none", p.Counters.RxPackets)
	}
	b2.close()
	waitCond(t, "session 2 to end", func() bool { return !port("evil").Device.Connected })
	want.Connected, want.Features, want.ActivePairs = false, nil, 0 // no session: nothing negotiated
	if p := port("evil"); !deviceEqual(p.Device, &want) {
		t.Errorf("after session 2, evil's device = %s, want %s (totals over both sessions)", deviceJSON(p.Device), deviceJSON(&want))
	}
	if p := port("calm"); !deviceEqual(p.Device, &api.DeviceCounters{Kind: api.KindVhostUser,
		VirtioCounters: &api.VirtioCounters{}, VhostCounters: &api.VhostCounters{}}) {
		t.Errorf("calm's device = %s, want zeros", deviceJSON(p.Device))
	}

	code, out, errs := runCtl(t, sock, "port", "evil")
	if code != 0 {
		t.Fatalf("ctl port evil = %d %q", code, errs)
	}
	for _, line := range []string{"device:", "vhost-user, 2 sessions, no frontend", "device tx_drop_bad_header:", "device refused_fds:", "device memory_faults:"} {
		if !strings.Contains(out, line) {
			t.Errorf("ctl port evil does not show %q:\n%s", line, out)
		}
	}
	if got := ctlValue(out, "device tx_drop_bad_header:"); got != "3" {
		t.Errorf("ctl port evil: tx_drop_bad_header %q, want 3:\n%s", got, out)
	}
	if got := ctlValue(out, "device refused_fds:"); got != "1" {
		t.Errorf("ctl port evil: refused_fds %q, want 1:\n%s", got, out)
	}

	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, m := range []struct {
		fam, port, label, value string
		want                    float64
	}{
		{"hvnet_port_device_drops_total", "evil", "reason", "tx_bad_header", 3},
		{"hvnet_port_device_faults_total", "evil", "kind", "refused_fd", 1},
		{"hvnet_port_device_faults_total", "evil", "kind", "rejected_request", 1},
		{"hvnet_port_device_faults_total", "evil", "kind", "refused_mem_fd", 0},
		{"hvnet_port_device_drops_total", "calm", "reason", "tx_bad_header", 0},
		{"hvnet_port_vhost_sessions_total", "evil", "", "", 2},
	} {
		if got, ok := sample(fams[m.fam], m.port, m.label, m.value); !ok || got != m.want {
			t.Errorf("%s{port=%s,%s=%s} = %v (found %v), want %v", m.fam, m.port, m.label, m.value, got, ok, m.want)
		}
	}
}

// sample finds a counter's or gauge's value by its port and one more label.
func sample(f *dto.MetricFamily, port, label, value string) (float64, bool) {
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if got["port"] != port || label != "" && got[label] != value {
			continue
		}
		if m.Counter != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

// ctlValue is the value after label on a line of hvnet ctl port's table.
func ctlValue(out, label string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, label); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func deviceEqual(a, b *api.DeviceCounters) bool { return deviceJSON(a) == deviceJSON(b) }

func deviceJSON(d *api.DeviceCounters) string {
	b, err := json.Marshal(d)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// The daemon's conversions carry every counter to the API's names.
func TestDeviceCounterConversions(t *testing.T) {
	v := daemon.VirtioCounters(vnet.Stats{TxDropBadChain: 1, TxDropBadHeader: 2, TxDropRunt: 3, TxDropOversize: 4,
		RxDropNoBuffer: 5, RxDropBadChain: 6, RxDropOversize: 7, RxDropOffload: 8,
		CtrlOK: 100, CtrlErr: 9, Faults: 10, SignalErrors: 11, MemoryFaults: 12, TxPackets: 1000})
	want := api.VirtioCounters{TxDropBadChain: 1, TxDropBadHeader: 2, TxDropRunt: 3, TxDropOversize: 4,
		RxDropNoBuffer: 5, RxDropBadChain: 6, RxDropOversize: 7, RxDropOffload: 8,
		CtrlErrors: 9, Faults: 10, SignalErrors: 11, MemoryFaults: 12}
	if *v != want {
		t.Errorf("VirtioCounters = %+v, want %+v", *v, want)
	}
	u := uplinkkind.Counters(uplink.Stats{RxBad: 1, RxKernelDrops: 2, RxSocketErrors: 3, TxErrors: 4, Attaches: 5, RxFrames: 99})
	if *u != (api.UplinkCounters{RxDropBad: 1, RxDropKernel: 2, RxSocketErrors: 3, TxErrors: 4, Attaches: 5}) {
		t.Errorf("Counters = %+v", *u)
	}
	d := daemon.New(context.Background(), hclog.NewNullLogger(), vswitch.New(vswitch.Config{}), "")
	if dc := d.DeviceCounters("nosuch"); dc != nil {
		t.Errorf("DeviceCounters of an unknown port = %+v, want nil", dc)
	}
}

// hvnet ctl port's one-line summary of a backend: a vhost-user port's
// sessions and, only when there are any, the goroutines its earlier
// frontends left stuck (the port refuses frontends at 4).
func TestDeviceString(t *testing.T) {
	for _, c := range []struct {
		dc   api.DeviceCounters
		want string
	}{
		{api.DeviceCounters{Kind: api.KindVhostUser, VhostCounters: &api.VhostCounters{Sessions: 3, Connected: true}},
			"vhost-user, 3 sessions, frontend attached"},
		{api.DeviceCounters{Kind: api.KindVhostUser, VhostCounters: &api.VhostCounters{Sessions: 9, Stuck: 4}},
			"vhost-user, 9 sessions, no frontend, 4 stuck goroutines of earlier frontends"},
		{api.DeviceCounters{Kind: api.KindUplink, UplinkCounters: &api.UplinkCounters{Attaches: 2}}, "uplink, 2 attaches"},
	} {
		if got := deviceString(&c.dc); got != c.want {
			t.Errorf("deviceString = %q, want %q", got, c.want)
		}
	}
}
