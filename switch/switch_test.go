package vswitch

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func names(ts *testSwitch, want map[string]int) {
	ts.t.Helper()
	for n, s := range ts.s {
		if got := len(s.take()); got != want[n] {
			ts.t.Errorf("port %s got %d frames; want %d", n, got, want[n])
		}
	}
}

func TestLearningAndFlooding(t *testing.T) {
	ts := newTestSwitch(t, access("a", 10), access("b", 10), access("c", 10), access("d", 20))
	// Unknown destination: flooded in VLAN 10, not back to a, not to d.
	ts.in("a", eth(mac(2), mac(1), 0x0800, 50))
	names(ts, map[string]int{"b": 1, "c": 1})
	// b answers: a is known, unicast.
	ts.in("b", eth(mac(1), mac(2), 0x0800, 50))
	names(ts, map[string]int{"a": 1})
	// Now b is known too.
	ts.in("a", eth(mac(2), mac(1), 0x0800, 50))
	names(ts, map[string]int{"b": 1})
	// Broadcast and multicast flood.
	ts.in("c", eth(Broadcast, mac(3), 0x0806, 28))
	names(ts, map[string]int{"a": 1, "b": 1})
	ts.in("c", eth(MAC{0x01, 0, 0x5e, 0, 0, 1}, mac(3), 0x0800, 28))
	names(ts, map[string]int{"a": 1, "b": 1})
	// A frame to a MAC on the ingress port is filtered.
	ts.in("a", eth(mac(1), mac(9), 0x0800, 50))
	names(ts, map[string]int{})
	if c := ts.h["a"].Counters(); c.RxPackets != 3 || c.TxPackets != 3 {
		t.Errorf("a counters rx %d tx %d; want 3, 3", c.RxPackets, c.TxPackets)
	}
	fdb := ts.sw.FDB()
	if len(fdb) != 4 {
		t.Fatalf("FDB has %d entries; want 4: %+v", len(fdb), fdb)
	}
	if fdb[0].VLAN != 10 || fdb[0].MAC != mac(1) || fdb[0].Port != "a" || fdb[0].Static {
		t.Errorf("FDB[0] = %+v", fdb[0])
	}
}

func TestIndependentVLANLearning(t *testing.T) {
	ts := newTestSwitch(t, trunk("t1", 0, 10, 20), trunk("t2", 0, 10, 20), trunk("t3", 0, 10, 20))
	// The same MAC in two VLANs on two ports: two entries.
	ts.in("t1", tag(eth(Broadcast, mac(1), 0x0800, 40), tpidCTag, 0, 10))
	ts.in("t2", tag(eth(Broadcast, mac(1), 0x0800, 40), tpidCTag, 0, 20))
	ts.s["t1"].take()
	ts.s["t2"].take()
	ts.s["t3"].take()
	ts.in("t3", tag(eth(mac(1), mac(3), 0x0800, 40), tpidCTag, 0, 10))
	names(ts, map[string]int{"t1": 1})
	ts.in("t3", tag(eth(mac(1), mac(3), 0x0800, 40), tpidCTag, 0, 20))
	names(ts, map[string]int{"t2": 1})
	if n := ts.sw.SwitchCounters().Moves; n != 0 {
		t.Errorf("moves = %d; want 0", n)
	}
}

func TestAgingMoveStaticFlush(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1), access("c", 1))
	ts.sw.SetAgingTime(10 * time.Second)
	ts.in("a", eth(mac(2), mac(1), 0x0800, 40))
	ts.in("b", eth(mac(1), mac(2), 0x0800, 40))
	names(ts, map[string]int{"a": 1, "b": 1, "c": 1})

	// Refreshing keeps it alive past the first aging time.
	ts.advance(8 * time.Second)
	ts.in("a", eth(mac(2), mac(1), 0x0800, 40))
	ts.advance(8 * time.Second)
	ts.in("c", eth(mac(1), mac(3), 0x0800, 40))
	names(ts, map[string]int{"a": 1, "b": 1}) // mac(1) known, mac(2) aged: b gets a's frame flooded earlier
	// mac(2) aged out: frames to it flood.
	ts.in("c", eth(mac(2), mac(3), 0x0800, 40))
	names(ts, map[string]int{"a": 1, "b": 1})
	if n := ts.sw.Expire(); n != 1 {
		t.Errorf("Expire() = %d; want 1 (mac 2)", n)
	}
	if got := ts.h["b"].Counters().LearnedMACs; got != 0 {
		t.Errorf("b learned = %d; want 0", got)
	}

	// Move: mac(1) shows up on b.
	ts.in("b", eth(Broadcast, mac(1), 0x0800, 40))
	ts.take()
	if n := ts.sw.SwitchCounters().Moves; n != 1 {
		t.Errorf("moves = %d; want 1", n)
	}
	ts.in("c", eth(mac(1), mac(3), 0x0800, 40))
	names(ts, map[string]int{"b": 1})

	// Static entry wins and never moves.
	if err := ts.sw.AddStatic("a", 1, mac(7)); err != nil {
		t.Fatal(err)
	}
	ts.in("b", eth(Broadcast, mac(7), 0x0800, 40)) // does not relearn
	ts.take()
	ts.advance(time.Hour)
	ts.in("c", eth(mac(7), mac(3), 0x0800, 40))
	names(ts, map[string]int{"a": 1})
	if err := ts.sw.DeleteStatic(1, mac(7)); err != nil {
		t.Fatal(err)
	}
	if err := ts.sw.DeleteStatic(1, mac(7)); !errors.Is(err, ErrNoSuchEntry) {
		t.Errorf("DeleteStatic twice = %v; want ErrNoSuchEntry", err)
	}

	// Flush by port and VLAN.
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 40))
	ts.in("b", eth(Broadcast, mac(2), 0x0800, 40))
	ts.take()
	if n, err := ts.sw.Flush("a", 0); err != nil || n != 1 {
		t.Errorf("Flush(a) = %d, %v; want 1", n, err)
	}
	if n, _ := ts.sw.Flush("", 1); n != 2 { // mac 2 on b, mac 3 on c
		t.Errorf("Flush(vlan 1) = %d; want 2", n)
	}
	if _, err := ts.sw.Flush("zz", 0); !errors.Is(err, ErrNoSuchPort) {
		t.Errorf("Flush(zz) = %v", err)
	}
}

func (ts *testSwitch) take() {
	for _, s := range ts.s {
		s.take()
	}
}

func TestVLANModes(t *testing.T) {
	base := eth(Broadcast, mac(1), 0x0800, 46)
	for _, tt := range []struct {
		name   string
		in     string
		frame  []byte
		want   map[string][]byte // port -> exact frame expected
		drop   DropReason
		dropOn string
	}{
		{"access untagged to trunk tagged, access same vlan untagged", "a10", base,
			map[string][]byte{"a10b": base, "t": tag(base, tpidCTag, 0, 10)}, -1, ""},
		{"access priority-tagged accepted as PVID, PCP kept", "a10", tag(base, tpidCTag, 5, 0),
			map[string][]byte{"a10b": base, "t": tag(base, tpidCTag, 5, 10)}, -1, ""},
		{"access tagged dropped", "a10", tag(base, tpidCTag, 0, 10), nil, DropVLAN, "a10"},
		{"access S-tagged dropped", "a10", tag(base, tpidSTag, 0, 0), nil, DropVLAN, "a10"},
		{"trunk tagged to access untagged", "t", tag(base, tpidCTag, 3, 10),
			map[string][]byte{"a10": base, "a10b": base}, -1, ""},
		{"trunk native untagged to access 1 and tagged to trunk without native", "t", base,
			map[string][]byte{"a1": base, "t2": tag(base, tpidCTag, 0, 1)}, -1, ""},
		{"trunk vlan not allowed", "t", tag(base, tpidCTag, 0, 30), nil, DropVLAN, "t"},
		{"trunk vid 4095", "t", tag(base, tpidCTag, 0, 4095), nil, DropVLAN, "t"},
		{"trunk priority tag is native", "t", tag(base, tpidCTag, 6, 0),
			map[string][]byte{"a1": base, "t2": tag(base, tpidCTag, 6, 1)}, -1, ""},
		{"trunk to trunk keeps tag and PCP", "t", tag(base, tpidCTag, 7, 20),
			map[string][]byte{"t2": tag(base, tpidCTag, 7, 20)}, -1, ""},
		{"trunk without native drops untagged", "t2", base, nil, DropVLAN, "t2"},
		{"truncated tag", "t", tag(base, tpidCTag, 0, 10)[:17], nil, DropMalformed, "t"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestSwitch(t, access("a10", 10), access("a10b", 10), access("a1", 1), trunk("t", 1, 10, 20), trunk("t2", 0, 1, 20))
			ts.in(tt.in, tt.frame)
			for n, s := range ts.s {
				got := s.take()
				want, ok := tt.want[n]
				switch {
				case !ok && len(got) != 0:
					t.Errorf("port %s got %d frames; want none", n, len(got))
				case ok && len(got) != 1:
					t.Errorf("port %s got %d frames; want 1", n, len(got))
				case ok && !bytes.Equal(got[0].Data, want):
					t.Errorf("port %s got\n%x\nwant\n%x", n, got[0].Data, want)
				}
			}
			if tt.dropOn != "" {
				if got := ts.drops(tt.dropOn, tt.drop); got != 1 {
					t.Errorf("drops[%v] on %s = %d; want 1", tt.drop, tt.dropOn, got)
				}
			}
		})
	}
}

func TestQinQ(t *testing.T) {
	tun := PortConfig{Name: "cust", Mode: ModeDot1QTunnel, PVID: 100}
	ts := newTestSwitch(t, tun, trunk("core", 0, 100, 200), access("a100", 100))
	cframe := tag(eth(mac(2), mac(1), 0x0800, 46), tpidCTag, 5, 42) // customer C-tag VID 42, PCP 5
	ts.in("cust", cframe)
	got := ts.s["core"].take()
	if len(got) != 1 {
		t.Fatalf("core got %d frames; want 1", len(got))
	}
	want := tag(cframe, tpidSTag, 5, 100) // S-tag pushed, PCP copied, C-tag intact
	if !bytes.Equal(got[0].Data, want) {
		t.Errorf("core got\n%x\nwant\n%x", got[0].Data, want)
	}
	if a := ts.s["a100"].take(); len(a) != 1 || !bytes.Equal(a[0].Data, cframe) {
		t.Errorf("access port in the S-VLAN got %x; want the customer frame", a)
	}
	// Way back: S-tagged from the core, popped toward the customer.
	back := tag(tag(eth(mac(1), mac(2), 0x0800, 46), tpidCTag, 3, 42), tpidSTag, 3, 100)
	ts.in("core", back)
	g := ts.s["cust"].take()
	if len(g) != 1 || !bytes.Equal(g[0].Data, append(append([]byte{}, back[:12]...), back[16:]...)) {
		t.Errorf("cust got %x; want S-tag popped", g)
	}
	// Untagged customer frame gets only the S-tag.
	u := eth(Broadcast, mac(1), 0x0800, 46)
	ts.in("cust", u)
	if c := ts.s["core"].take(); len(c) != 1 || !bytes.Equal(c[0].Data, tag(u, tpidSTag, 0, 100)) {
		t.Errorf("core got %x; want S-tagged untagged frame", c)
	}
	// Double-tagged customer frame (stacked) passes intact too.
	dd := tag(tag(eth(Broadcast, mac(1), 0x0800, 46), tpidCTag, 0, 7), tpidSTag, 1, 8)
	ts.in("cust", dd)
	if c := ts.s["core"].take(); len(c) != 1 || !bytes.Equal(c[0].Data, tag(dd, tpidSTag, 1, 100)) {
		t.Errorf("core got %x; want outer S-tag pushed on the stacked frame", c)
	}
}

func TestPortLifecycle(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	if _, err := ts.sw.AddPort(access("a", 1), newSink(0)); !errors.Is(err, ErrPortExists) {
		t.Errorf("AddPort dup = %v", err)
	}
	if _, err := ts.sw.AddPort(access("x", 4095), newSink(0)); err == nil {
		t.Errorf("AddPort pvid 4095 succeeded")
	}
	ts.in("a", eth(mac(2), mac(1), 0x0800, 46))
	ts.in("b", eth(mac(1), mac(2), 0x0800, 46))
	ts.take()
	// Move a to VLAN 2 live: its entries are flushed, b no longer reaches it.
	c := access("a", 2)
	if err := ts.sw.UpdatePort(c); err != nil {
		t.Fatal(err)
	}
	ts.in("b", eth(mac(1), mac(2), 0x0800, 46))
	names(ts, map[string]int{})
	if err := ts.sw.RemovePort("b"); err != nil {
		t.Fatal(err)
	}
	if err := ts.sw.RemovePort("b"); !errors.Is(err, ErrNoSuchPort) {
		t.Errorf("RemovePort twice = %v", err)
	}
	ts.h["b"].Input([]Frame{{Data: eth(Broadcast, mac(2), 0x0800, 46)}}) // ignored
	if n := len(ts.sw.FDB()); n != 0 {
		t.Errorf("FDB after removal has %d entries", n)
	}
	if err := ts.sw.UpdatePort(access("nope", 1)); !errors.Is(err, ErrNoSuchPort) {
		t.Errorf("UpdatePort(nope) = %v", err)
	}
}

func TestNoBuffer(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.s["b"].accept = 1
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 46), eth(Broadcast, mac(1), 0x0800, 46), eth(Broadcast, mac(1), 0x0800, 46))
	if got := ts.drops("b", DropNoBuffer); got != 2 {
		t.Errorf("no buffer drops = %d; want 2", got)
	}
	if c := ts.h["b"].Counters(); c.TxPackets != 1 || c.TxBytes != 60 {
		t.Errorf("tx = %d/%d; want 1/60", c.TxPackets, c.TxBytes)
	}
}
