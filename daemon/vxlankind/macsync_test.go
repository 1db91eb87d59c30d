package vxlankind

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vxlan"
)

// Changes reach the routes through the FDB watch alone: only the MACs
// that changed are looked at, a binding whose MAC's change is not read
// yet is kept, and a route that failed is tried again.
func TestMACSyncChanges(t *testing.T) {
	sw := vswitch.New(vswitch.Config{MACMoveHoldDown: -1})
	a, err := sw.AddPort(vswitch.PortConfig{Name: "a", PVID: 10}, sink{})
	if err != nil {
		t.Fatal(err)
	}
	vx, err := sw.AddPort(vswitch.PortConfig{Name: "vx", PVID: 10}, sink{})
	if err != nil {
		t.Fatal(err)
	}
	w := sw.WatchFDB(100)
	defer w.Close()
	adv := &fakeAdv{adv: map[routeKey]uint32{}}
	ips := &fakeIPs{}
	m := newMACSync(sw, "vx", map[uint16]uint32{10: 100}, adv, ips, hclog.NewNullLogger(), func(uint32, [6]byte) uint32 { return 0 })
	if n := m.sync(); n != 0 {
		t.Fatalf("first sync of an empty FDB: %d changes", n)
	}
	changes := func() int {
		keys, over := w.Changes()
		if over {
			t.Fatal("watch overflow")
		}
		return m.syncKeys(keys)
	}
	mac1, mac2 := [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 2}
	from := func(h *vswitch.PortHandle, mac [6]byte) {
		f := make([]byte, 60)
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(f[6:], mac[:])
		f[12], f[13] = 0x88, 0xb5
		h.Input([]vswitch.Frame{{Data: f}})
	}
	from(a, mac1)
	if err := sw.AddStatic("a", 10, vswitch.MAC(mac2)); err != nil {
		t.Fatal(err)
	}
	if n := changes(); n != 2 || len(adv.adv) != 2 {
		t.Fatalf("after two new MACs: %d changes, advertised %v", n, adv.adv)
	}
	// A binding learned for a MAC whose entry's change is not read yet.
	mac3 := [6]byte{2, 0, 0, 0, 0, 3}
	from(a, mac3)
	ip3 := netip.MustParseAddr("10.0.0.3")
	ips.b = []vxlan.IPBinding{{VNI: 100, MAC: mac3, IP: ip3}}
	if n := m.syncIPs(); n != 2 || len(ips.b) != 1 {
		t.Fatalf("a binding before its MAC's change: %d changes, bindings %v, advertised %v", n, ips.b, adv.adv)
	}
	if n := changes(); n != 0 {
		t.Errorf("the MAC's change read after its binding: %d changes", n)
	}
	// The MAC moves behind the tunnel: its routes and binding go.
	from(vx, mac3)
	if n := changes(); n != 2 || len(ips.b) != 0 || len(adv.adv) != 2 {
		t.Errorf("after a move to the tunnel: %d changes, bindings %v, advertised %v", n, ips.b, adv.adv)
	}
	if err := sw.DeleteStatic(10, vswitch.MAC(mac2)); err != nil {
		t.Fatal(err)
	}
	if n := changes(); n != 1 || len(adv.adv) != 1 {
		t.Errorf("after a deletion: %d changes, advertised %v", n, adv.adv)
	}
	// A withdrawal that fails is tried again.
	fail := &failingAdv{fakeAdv: adv, fail: true}
	m.adv = fail
	sw.Flush("a", 0)
	if n := changes(); n != 0 || len(m.failed) != 1 {
		t.Fatalf("a failed withdrawal: %d changes, %d failed", n, len(m.failed))
	}
	fail.fail = false
	if n := m.retry(); n != 1 || len(adv.adv) != 0 || len(m.failed) != 0 {
		t.Errorf("retry: %d changes, advertised %v, %d failed", n, adv.adv, len(m.failed))
	}
	if n := m.sync(); n != 0 {
		t.Errorf("a full sync after the changes: %d changes", n)
	}
}

type failingAdv struct {
	*fakeAdv
	fail bool
}

func (f *failingAdv) WithdrawMAC(vni uint32, mac [6]byte, ip netip.Addr) error {
	if f.fail {
		return errors.New("refused")
	}
	return f.fakeAdv.WithdrawMAC(vni, mac, ip)
}

// lockedAdv is a fakeAdv for run's goroutine.
type lockedAdv struct {
	mu sync.Mutex
	f  fakeAdv
}

func (l *lockedAdv) AdvertiseMAC(vni uint32, mac [6]byte, ip netip.Addr, seq uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.AdvertiseMAC(vni, mac, ip, seq)
}

func (l *lockedAdv) WithdrawMAC(vni uint32, mac [6]byte, ip netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.WithdrawMAC(vni, mac, ip)
}

func (l *lockedAdv) routes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.f.adv)
}

// run advertises a burst of static entries as they come, without
// waiting for a poll, and withdraws everything when it ends.
func TestMACSyncRun(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "a", PVID: 10}, sink{}); err != nil {
		t.Fatal(err)
	}
	adv := &lockedAdv{f: fakeAdv{adv: map[routeKey]uint32{}}}
	m := newMACSync(sw, "vx", map[uint16]uint32{10: 100}, adv, nil, hclog.NewNullLogger(), func(uint32, [6]byte) uint32 { return 0 })
	if err := sw.AddStatic("a", 10, vswitch.MAC{2, 0, 0, 1, 0, 0}); err != nil { // before the start
		t.Fatal(err)
	}
	w := sw.WatchFDB(100) // smaller than the burst: it overflows
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.run(ctx, w, nil)
	}()
	const n = 1000
	for i := range n {
		if err := sw.AddStatic("a", 10, vswitch.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Both waits end within 25 s of the start: room for a loaded machine
	// under -race, and still short of resyncEvery (30 s), the poll this
	// test proves is not needed.
	deadline := time.Now().Add(25 * time.Second)
	for adv.routes() != n+1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := adv.routes(); got != n+1 {
		t.Fatalf("%d routes advertised; want %d", got, n+1)
	}
	for i := range n / 2 {
		if err := sw.DeleteStatic(10, vswitch.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for adv.routes() != n/2+1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := adv.routes(); got != n/2+1 {
		t.Fatalf("%d routes after half went; want %d", got, n/2+1)
	}
	cancel()
	<-done
	if got := adv.routes(); got != 0 {
		t.Errorf("%d routes left after the end", got)
	}
	adv.mu.Lock()
	defer adv.mu.Unlock()
	if slices.Contains(adv.f.log, "") {
		t.Error("empty log entry")
	}
}
