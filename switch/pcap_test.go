package vswitch

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// recSink records mirrored frames.
type recSink struct {
	dirs  []Direction
	ports []string
}

func (r *recSink) Mirror(port string, dir Direction, _ int64, frames []Frame) {
	for range frames {
		r.dirs = append(r.dirs, dir)
		r.ports = append(r.ports, port)
	}
}

func TestMirror(t *testing.T) {
	a := access("a", 1)
	a.MirrorIngress = true
	b := access("b", 1)
	b.MirrorEgress = true
	ts := newTestSwitch(t, a, b, access("c", 1))
	r := &recSink{}
	ts.sw.SetMirror(r)
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 46), make([]byte, 5)) // the runt is mirrored too: ingress is as received
	ts.in("c", eth(Broadcast, mac(3), 0x0800, 46))
	want := "a/ingress a/ingress b/egress b/egress"
	var got []string
	for i := range r.dirs {
		got = append(got, r.ports[i]+"/"+r.dirs[i].String())
	}
	if strings.Join(got, " ") != want {
		t.Errorf("mirrored %q; want %q", got, want)
	}
	ts.sw.SetMirror(nil)
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 46))
	if len(r.dirs) != 4 {
		t.Errorf("mirroring went on after SetMirror(nil)")
	}
	// A Port as sink.
	s := newSink(0)
	ts.sw.SetMirror(PortSink{Port: s})
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 46))
	if len(s.take()) != 2 {
		t.Errorf("port sink did not get ingress+egress copies")
	}
}

// TestPcapReadBack writes a capture through the mirror and reads it back
// with tcpdump and tshark. ./run.sh installs both (apt-get install -y
// tcpdump tshark); the test does not install anything itself.
func TestPcapReadBack(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatal("tcpdump not found: install it (apt-get install -y tcpdump tshark; ./run.sh does)")
	}
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal("tshark not found: install it (apt-get install -y tcpdump tshark; ./run.sh does)")
	}
	for _, nano := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "cap.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		pw, err := NewPcapWriter(f, PcapOptions{Nanosecond: nano})
		if err != nil {
			t.Fatal(err)
		}
		a := access("a", 7)
		a.MirrorIngress = true
		tr := trunk("t", 0, 7)
		tr.MirrorEgress = true
		ts := newTestSwitch(t, a, tr)
		ts.clock.Set(1_700_000_000_123_456_789)
		ts.sw.SetMirror(pw)
		seg := tcpFrame(false, nil, 3000, 1448, 0x18)
		ts.h["a"].Input([]Frame{seg, {Data: eth(Broadcast, mac(1), 0x0806, 28)}})
		if err := pw.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// 2 ingress + 3 TCP segments + 1 ARP egress (tagged VLAN 7).
		out, err := exec.Command(tcpdump, "-nn", "-e", "-r", path).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpdump -r: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var pkts []string
		for _, l := range lines {
			if strings.Contains(l, "02:00:00:00:00:01") {
				pkts = append(pkts, l)
			}
		}
		if len(pkts) != 6 || !strings.Contains(string(out), "vlan 7") || !strings.Contains(string(out), "10.0.0.1.40000 > 10.0.0.2.5201") {
			t.Errorf("tcpdump read back %d packets:\n%s", len(pkts), out)
		}
		ts0 := "22:13:20.123456"
		if nano {
			ts0 = "22:13:20.123456789"
		}
		if tcpdumpTZ(t, tcpdump, path, nano) != ts0 {
			t.Errorf("timestamp mismatch (nano=%v)", nano)
		}
		out, err = exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.len", "-e", "vlan.id", "-e", "tcp.checksum.status", "-o", "tcp.check_checksum:TRUE").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark -r: %v\n%s", err, out)
		}
		var rows []string
		for _, l := range strings.Split(string(out), "\n") {
			if len(l) > 0 && l[0] >= '0' && l[0] <= '9' {
				rows = append(rows, l)
			}
		}
		if len(rows) != 6 {
			t.Fatalf("tshark read %d rows; want 6:\n%s", len(rows), out)
		}
		// The segments tshark verified: checksum status 1 = good (0 bad, 2 unverified).
		good := 0
		for _, r := range rows {
			if strings.HasSuffix(r, "\t7\t1") {
				good++
			}
		}
		if good != 3 {
			t.Errorf("tshark: %d tagged segments with good TCP checksums; want 3:\n%s", good, out)
		}
	}
}

func tcpdumpTZ(t *testing.T, tcpdump, path string, nano bool) string {
	args := []string{"-nn", "-r", path, "-c", "1"}
	if nano {
		args = append(args, "--time-stamp-precision=nano")
	}
	cmd := exec.Command(tcpdump, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Count(f[0], ":") == 2 {
			return f[0]
		}
	}
	return ""
}

func TestPcapFormat(t *testing.T) {
	var buf bytes.Buffer
	pw, err := NewPcapWriter(&buf, PcapOptions{SnapLen: 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := pw.WriteFrame(2_500_000_000, make([]byte, 60)); err != nil {
		t.Fatal(err)
	}
	if err := pw.Flush(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b) != 24+16+20 {
		t.Fatalf("file is %d bytes", len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b) != 0xa1b2c3d4 || le.Uint32(b[20:]) != 1 || le.Uint32(b[16:]) != 20 {
		t.Errorf("bad header %x", b[:24])
	}
	if le.Uint32(b[24:]) != 2 || le.Uint32(b[28:]) != 500000 || le.Uint32(b[32:]) != 20 || le.Uint32(b[36:]) != 60 {
		t.Errorf("bad record header %x", b[24:40])
	}
}
