package daemon

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestDaemonFlowExport: a daemon configured with flow export sends the
// templates at start, the API shows it on, and shutdown exports every
// flow still cached, the ports' names intact.
func TestDaemonFlowExport(t *testing.T) {
	col, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	a, _ := ParsePort("test-sink", []string{"name=a", "need=x"})
	b, _ := ParsePort("test-sink", []string{"name=b", "need=x"})
	cfg := Config{Ports: []PortSpec{a, b}, FlowExport: ipfix.Config{Enabled: true, Collectors: []string{col.LocalAddr().String()}}}
	if _, err := startDaemonErr(t, Config{Ports: []PortSpec{a}, FlowExport: ipfix.Config{Enabled: true, Collectors: []string{"nowhere"}}}); err == nil {
		t.Fatal("a daemon started with a bad collector")
	}
	sw, c, _, r := startDaemon(t, cfg)
	st, err := c.FlowExport(context.Background())
	if err != nil || !*st.Enabled || len(st.Interfaces) != 2 {
		t.Fatalf("GET /v1/flow-export: %+v %v", st, err)
	}
	frame := make([]byte, 60)
	copy(frame, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	sw.Port("a").Input([]vswitch.Frame{{Data: frame}, {Data: frame}})
	if err := r.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// The templates message, then (at shutdown) one with the flow: 2
	// frames of 60 bytes, in from port 1.
	col.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	var got bool
	for !got {
		n, err := col.Read(buf)
		if err != nil {
			t.Fatalf("no flow record: %v", err)
		}
		m := buf[:n]
		for p := m[16:]; len(p) >= 4; {
			id, l := binary.BigEndian.Uint16(p), int(binary.BigEndian.Uint16(p[2:]))
			if id == 258 { // the L2 template: start, end, packets, octets, layer2 octets, ingress ...
				rec := p[4:]
				if pk, l2, in := binary.BigEndian.Uint64(rec[16:]), binary.BigEndian.Uint64(rec[32:]), binary.BigEndian.Uint32(rec[40:]); pk != 2 || l2 != 120 || in != 1 {
					t.Fatalf("record: %d packets %d bytes in %d", pk, l2, in)
				}
				got = true
			}
			p = p[l:]
		}
	}
}

func startDaemonErr(t *testing.T, cfg Config) (*Running, error) {
	cfg.API = ""
	sw := vswitch.New(cfg.SwitchConfig())
	r, err := Start(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err == nil {
		r.Shutdown()
	}
	return r, err
}
