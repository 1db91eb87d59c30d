package vswitch

import (
	"bytes"
	"testing"
)

// pickyPort delivers only frames of even length, as Port.Send says:
// those in frames[:n], in order, the skipped ones moved behind them. It
// also reverses what it leaves behind, to show the switch reads nothing
// there.
type pickyPort struct{ got [][]byte }

func (p *pickyPort) Send(frames []Frame) int {
	n := 0
	for i := range frames {
		if len(frames[i].Data)%2 == 0 {
			p.got = append(p.got, append([]byte(nil), frames[i].Data...))
			frames[n], frames[i] = frames[i], frames[n]
			n++
		}
	}
	rest := frames[n:]
	for i, j := 0, len(rest)-1; i < j; i, j = i+1, j-1 {
		rest[i], rest[j] = rest[j], rest[i]
	}
	return n
}

func (*pickyPort) Caps() Caps { return 0 }

// capture keeps copies of mirrored frames.
type capture struct{ frames [][]byte }

func (c *capture) Mirror(_ string, _ Direction, _ int64, frames []Frame) {
	for _, f := range frames {
		c.frames = append(c.frames, append([]byte(nil), f.Data...))
	}
}

// A port that skips frames in the middle of a batch: the egress mirror
// shows exactly the frames it delivered, in order; tx counts them (frames
// and bytes) and no_buffer the others, once each.
func TestSendContractMirrorAndCounters(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1))
	b := access("b", 1)
	b.MirrorEgress = true
	p := &pickyPort{}
	h, err := ts.sw.AddPort(b, p)
	if err != nil {
		t.Fatal(err)
	}
	ts.h["b"] = h
	mc := &capture{}
	ts.sw.SetMirror(mc)
	ts.sw.AddStatic("b", 1, mac(2))
	var in, want [][]byte
	var wantBytes uint64
	for k := range 9 {
		f := eth(mac(2), mac(1), 0x0800, 46+k) // 60.. bytes: every other one odd
		in = append(in, f)
		if len(f)%2 == 0 {
			want = append(want, f)
			wantBytes += uint64(len(f))
		}
	}
	ts.in("a", in...)
	if len(p.got) != len(want) || len(mc.frames) != len(want) {
		t.Fatalf("port got %d, mirror %d; want %d each", len(p.got), len(mc.frames), len(want))
	}
	for k := range want {
		if !bytes.Equal(p.got[k], want[k]) || !bytes.Equal(mc.frames[k], want[k]) {
			t.Errorf("frame %d: port got %d bytes, mirror %d; want %d", k, len(p.got[k]), len(mc.frames[k]), len(want[k]))
		}
	}
	c := h.Counters()
	if c.TxPackets != uint64(len(want)) || c.TxBytes != wantBytes || c.Drops[DropNoBuffer] != uint64(len(in)-len(want)) {
		t.Errorf("b: tx %d frames %d bytes, no_buffer %d; want %d, %d, %d",
			c.TxPackets, c.TxBytes, c.Drops[DropNoBuffer], len(want), wantBytes, len(in)-len(want))
	}
}

// A PortSink mirror whose port reorders the slice it is given (Port.Send
// may) must not reorder the frames the switch then forwards: it sends a
// copy of the slice.
func TestPortSinkKeepsIngressOrder(t *testing.T) {
	a := access("a", 1)
	a.MirrorIngress = true
	ts := newTestSwitch(t, a, access("b", 1))
	ts.sw.SetMirror(PortSink{Port: &pickyPort{}})
	var in [][]byte
	for k := range 8 {
		in = append(in, eth(Broadcast, mac(1), 0x0800, 46+k))
	}
	ts.in("a", in...)
	got := ts.s["b"].take()
	if len(got) != len(in) {
		t.Fatalf("b got %d frames, want %d", len(got), len(in))
	}
	for k := range in {
		if !bytes.Equal(got[k].Data, in[k]) {
			t.Errorf("b's frame %d is %d bytes, want %d: reordered by the mirror", k, len(got[k].Data), len(in[k]))
		}
	}
}
