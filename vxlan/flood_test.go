package vxlan

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// floodPort opens a port on the loopback (VNI 100 = VLAN 10, VNI 200 =
// VLAN 20, flooding statically to 127.0.0.2) with a bound on the VTEPs
// added to a VNI, its log in out.
func floodPort(t testing.TB, max int, out *lines.Buffer) *Port {
	t.Helper()
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	cfg := Config{Local: netip.MustParseAddr("127.0.0.1"), Port: uint16(4900 + udpSeq.Add(1)), VNIs: map[uint32]uint16{100: 10, 200: 20},
		Remotes: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.2")}, MaxFloodVTEPs: max, NoUDPGSO: true}
	if out != nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Warn})
	}
	vx, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vx.Close() })
	return vx
}

// floodAddr is a VTEP address on the loopback, 127.a.b.c.
func floodAddr(a byte, n int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, a, byte(n >> 8), byte(n)})
}

// checkList checks that vni's flood list is want (in any order), each
// VTEP once.
func checkList(t *testing.T, vx *Port, vni uint32, want []netip.Addr) {
	t.Helper()
	got := vx.RemoteVTEPs()[vni]
	slices.SortFunc(got, netip.Addr.Compare)
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("VNI %d's flood list: %d VTEPs %v\nwant %d: %v", vni, len(got), got, len(want), want)
	}
}

// A control plane's VTEPs per VNI are bounded: past the bound each is
// refused (ErrFloodListFull, naming the VNI and the VTEP), counted, and
// logged at the first refusal and each power of two; the list holds
// the bound and the static VTEPs, each once; duplicates change nothing;
// a VNI's bound is its own; a removal makes room; a flooded frame leaves
// once per VTEP of the list, no more.
func TestFloodVTEPBound(t *testing.T) {
	var log lines.Buffer
	vx := floodPort(t, 8, &log)
	static := netip.MustParseAddr("127.0.0.2")
	var want []netip.Addr
	for i := range 20 {
		a := floodAddr(1, i+1)
		err := vx.AddFloodVTEP(100, a)
		if i < 8 {
			if err != nil {
				t.Fatalf("VTEP %d: %v", i+1, err)
			}
			want = append(want, a)
			continue
		}
		if !errors.Is(err, ErrFloodListFull) || !strings.Contains(err.Error(), "VNI 100") || !strings.Contains(err.Error(), a.String()) {
			t.Errorf("VTEP %d past the bound: %v; want ErrFloodListFull naming VNI 100 and %v", i+1, err, a)
		}
	}
	checkList(t, vx, 100, append(want, static))
	if st := vx.Stats(); st.FloodVTEPsFull != 12 {
		t.Errorf("FloodVTEPsFull = %d, want 12", st.FloodVTEPsFull)
	}
	if n := strings.Count(log.String(), "flood list full"); n != 4 { // refusals 1, 2, 4, 8
		t.Errorf("%d log lines for 12 refusals, want 4:\n%s", n, log.String())
	}
	// Duplicates: nothing changes, nothing is counted.
	for _, a := range want[:3] {
		if err := vx.AddFloodVTEP(100, a); err != nil {
			t.Errorf("adding %v again: %v", a, err)
		}
	}
	checkList(t, vx, 100, append(want, static))
	if st := vx.Stats(); st.FloodVTEPsFull != 12 {
		t.Errorf("FloodVTEPsFull = %d after duplicates, want 12", st.FloodVTEPsFull)
	}
	// One flooded frame: one copy per VTEP of its VNI's list.
	before := vx.Stats()
	if n := vx.Send([]vswitch.Frame{{Data: tagged2(1, 0x8100, 10)}}); n != 1 {
		t.Errorf("Send = %d", n)
	}
	if st := vx.Stats(); st.TxPackets+st.TxErrors-before.TxPackets-before.TxErrors != 9 {
		t.Errorf("one broadcast became %d packets, want 9 (8 added, 1 static)", st.TxPackets+st.TxErrors-before.TxPackets-before.TxErrors)
	}
	// Another VNI has its own bound; a static VTEP added counts towards
	// it but is flooded to once, and stays when withdrawn.
	if err := vx.AddFloodVTEP(200, static); err != nil {
		t.Fatal(err)
	}
	want200 := []netip.Addr{static}
	for i := range 8 {
		err := vx.AddFloodVTEP(200, floodAddr(2, i+1))
		if i < 7 {
			if err != nil {
				t.Fatal(err)
			}
			want200 = append(want200, floodAddr(2, i+1))
		} else if !errors.Is(err, ErrFloodListFull) {
			t.Errorf("VNI 200's 9th VTEP: %v", err)
		}
	}
	checkList(t, vx, 200, want200)
	vx.DelFloodVTEP(200, static)
	checkList(t, vx, 200, want200)
	if err := vx.AddFloodVTEP(200, floodAddr(2, 8)); err != nil {
		t.Errorf("after a withdrawal, the VNI has room: %v", err)
	}
	// A removal makes room for one.
	vx.DelFloodVTEP(100, want[0])
	vx.DelFloodVTEP(100, want[0]) // twice: nothing more
	if err := vx.AddFloodVTEP(100, floodAddr(1, 50)); err != nil {
		t.Errorf("after a removal: %v", err)
	}
	if err := vx.AddFloodVTEP(100, floodAddr(1, 51)); !errors.Is(err, ErrFloodListFull) {
		t.Errorf("past the bound again: %v", err)
	}
	checkList(t, vx, 100, append(append(want[1:], floodAddr(1, 50)), static))
	// Bad input names what was wrong.
	if err := vx.AddFloodVTEP(300, floodAddr(1, 60)); err == nil || !strings.Contains(err.Error(), "VNI 300 is not mapped") {
		t.Errorf("unmapped VNI: %v", err)
	}
	if err := vx.AddFloodVTEP(100, netip.MustParseAddr("::1")); err == nil || !strings.Contains(err.Error(), "want an IPv4 address") {
		t.Errorf("IPv6 VTEP on an IPv4 port: %v", err)
	}
	if _, err := Open(Config{Local: netip.MustParseAddr("127.0.0.1"), VNIs: map[uint32]uint16{1: 10}, MaxFloodVTEPs: -1}); err == nil ||
		!strings.Contains(err.Error(), "max flood VTEPs -1") {
		t.Errorf("Open with a negative bound: %v", err)
	}
}

// The flood lists change while Send floods through them (-race): every
// flooded frame leaves at most once per VTEP its VNI may have, the lists
// never hold a VTEP twice or more than the bound, and the end state is
// what the control planes left, with no reference to a VTEP removed.
func TestFloodVTEPConcurrent(t *testing.T) {
	const bound = 16
	vx := floodPort(t, bound, nil)
	static := netip.MustParseAddr("127.0.0.2")
	stop := make(chan struct{})
	var wg, senders sync.WaitGroup
	senders.Add(2)
	go func() { // Send: two frames a batch, one per VNI
		defer senders.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			before := vx.Stats()
			vx.Send([]vswitch.Frame{{Data: tagged2(1, 0x8100, 10)}, {Data: tagged2(2, 0x8100, 20)}})
			st := vx.Stats()
			if n := st.TxPackets + st.TxErrors - before.TxPackets - before.TxErrors; n > 2*(bound+1) {
				t.Errorf("two flooded frames became %d packets, past 2×(%d+1)", n, bound)
				return
			}
		}
	}()
	go func() { // a reader of the lists
		defer senders.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for vni, l := range vx.RemoteVTEPs() {
				seen := map[netip.Addr]bool{}
				for _, a := range l {
					if seen[a] {
						t.Errorf("VNI %d: %v twice", vni, a)
						return
					}
					seen[a] = true
				}
				if len(l) > bound+1 {
					t.Errorf("VNI %d: %d VTEPs, past %d+1", vni, len(l), bound)
					return
				}
			}
		}
	}()
	// Control planes: per VNI two, each adding and removing its own 24
	// VTEPs (more than fit), tracking what it holds.
	type cp struct {
		vni  uint32
		a    byte
		have map[netip.Addr]bool
	}
	var cps []*cp
	for i, vni := range []uint32{100, 100, 200, 200} {
		cps = append(cps, &cp{vni: vni, a: byte(10 + i), have: map[netip.Addr]bool{}})
	}
	for _, c := range cps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1500 {
				a := floodAddr(c.a, (i*7)%24)
				if i%3 == 2 || c.have[a] {
					vx.DelFloodVTEP(c.vni, a)
					delete(c.have, a)
					continue
				}
				err := vx.AddFloodVTEP(c.vni, a)
				switch {
				case err == nil:
					c.have[a] = true
				case !errors.Is(err, ErrFloodListFull):
					t.Errorf("VNI %d, %v: %v", c.vni, a, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	senders.Wait()
	for _, vni := range []uint32{100, 200} {
		want := []netip.Addr{static}
		for _, c := range cps {
			if c.vni == vni {
				for a := range c.have {
					want = append(want, a)
				}
			}
		}
		checkList(t, vx, vni, want)
	}
	for _, c := range cps {
		for a := range c.have {
			vx.DelFloodVTEP(c.vni, a)
		}
	}
	checkList(t, vx, 100, []netip.Addr{static})
	checkList(t, vx, 200, []netip.Addr{static})
	vx.tabMu.RLock()
	known := len(vx.known)
	vx.tabMu.RUnlock()
	if known != 1 {
		t.Errorf("%d known VTEPs after every added one went, want the static one", known)
	}
	if st := vx.Stats(); st.FloodVTEPsFull == 0 {
		t.Error("no refusal counted: the test never reached the bound")
	}
}

// Many VTEPs under a high bound: each addition and removal changes one
// VNI's list in linear time at most, so 5,000 additions and 1,000
// removals finish (the old rebuild of every VNI's list with a quadratic
// duplicate check on each took a minute for 6,000 additions).
func TestFloodVTEPMany(t *testing.T) {
	vx := floodPort(t, 10000, nil)
	const n = 5000
	for i := range n {
		if err := vx.AddFloodVTEP(100, floodAddr(20, i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if l := vx.RemoteVTEPs(); len(l[100]) != n+1 || len(l[200]) != 1 {
		t.Fatalf("flood lists of %d and %d VTEPs, want %d and 1", len(l[100]), len(l[200]), n+1)
	}
	for i := range n / 5 {
		vx.DelFloodVTEP(100, floodAddr(20, 5*i+1))
	}
	if l := vx.RemoteVTEPs()[100]; len(l) != n-n/5+1 || slices.Contains(l, floodAddr(20, 1)) || !slices.Contains(l, floodAddr(20, 2)) {
		t.Errorf("after removing every fifth: %d VTEPs, want %d", len(l), n-n/5+1)
	}
}

// Static remotes given twice are flooded to once.
func TestFloodStaticOnce(t *testing.T) {
	vx := floodPort(t, 0, nil)
	for _, vni := range []uint32{100, 200} {
		checkList(t, vx, vni, []netip.Addr{netip.MustParseAddr("127.0.0.2")})
	}
	if vx.cfg.MaxFloodVTEPs != DefaultMaxFloodVTEPs {
		t.Errorf("the bound's default: %d", vx.cfg.MaxFloodVTEPs)
	}
}
