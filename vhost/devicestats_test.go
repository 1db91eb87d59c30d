package vhost

import (
	"path/filepath"
	"reflect"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// addStats adds every counter of vnet.Stats (a field added there and
// forgotten here would read 0 in the sum).
func TestAddStatsCoversEveryField(t *testing.T) {
	var a, b vnet.Stats
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		va.Field(i).SetUint(uint64(i + 1))
		vb.Field(i).SetUint(uint64(100 * (i + 1)))
	}
	sum := reflect.ValueOf(addStats(a, b))
	for i := range sum.NumField() {
		if got, want := sum.Field(i).Uint(), uint64(101*(i+1)); got != want {
			t.Errorf("addStats: %s = %d, want %d", sum.Type().Field(i).Name, got, want)
		}
	}
}

// sendBadHeader transmits one frame whose virtio_net_hdr has a flag the
// device never offered; the device drops it (TxDropBadHeader).
func (g *guest) sendBadHeader() {
	g.t.Helper()
	hdr := make([]byte, hdrLen)
	hdr[0] = 0x80 // flags: not NEEDS_CSUM (virtio 1.2 §5.1.6)
	g.tx.FreeAll()
	g.tx.Push(g.tx.AddChain(virtiotest.Buf{Data: append(hdr, ethFrame(0xff, 1, 1)...)}))
	if err := g.kick[1].Signal(); err != nil {
		g.t.Fatal(err)
	}
	g.waitTxDone()
}

// DeviceStats counts a frontend's bad headers over the port's life: the
// live session's as they happen, and every finished session's after it.
func TestDeviceStatsAcrossSessions(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	ev := newEvents()
	cfg := PortConfig{Port: vswitch.PortConfig{Name: "a", PVID: 1}, Socket: filepath.Join(t.TempDir(), "a.sock")}
	ev.hook(&cfg)
	p := startPort(t, sw, cfg)
	if st := p.DeviceStats(); st != (vnet.Stats{}) {
		t.Fatalf("DeviceStats before any session = %+v, want zeros", st)
	}
	for session := uint64(1); session <= 2; session++ {
		g := dialGuest(t, cfg.Socket)
		g.mustNegotiate()
		waitFor(t, ev.up, "the session to start")
		g.sendBadHeader()
		g.send(ethFrame(0xff, 1, 2)) // a good one: counted as transmitted
		g.waitTxDone()
		waitUntil(t, "the good frame to be counted", func() bool { return p.DeviceStats().TxPackets == session })
		if st := p.DeviceStats(); st.TxDropBadHeader != session {
			t.Errorf("session %d live: TxDropBadHeader = %d, want %d (every session so far)", session, st.TxDropBadHeader, session)
		}
		g.close()
		waitFor(t, ev.down, "the session to end")
		if st := p.DeviceStats(); st.TxDropBadHeader != session || st.TxPackets != session {
			t.Errorf("after session %d: DeviceStats = %+v, want %d bad headers and %d frames", session, st, session, session)
		}
		if last, ok := p.LastStats(); !ok || last.TxDropBadHeader != 1 {
			t.Errorf("after session %d: LastStats = %+v, %v; want that session's 1 bad header", session, last, ok)
		}
	}
	if n := p.Sessions(); n != 2 {
		t.Errorf("Sessions = %d, want 2", n)
	}
}
