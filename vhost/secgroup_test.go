package vhost

import (
	"bytes"
	"encoding/binary"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// udp4 builds an Ethernet/IPv4/UDP frame from MAC 02:..:src to 02:..:dst,
// 10.0.0.src:sport to 10.0.0.dst:dport, carrying seq.
func udp4(dst, src byte, sport, dport uint16, seq byte) []byte {
	b := make([]byte, 14+20+8+4)
	copy(b, []byte{2, 0, 0, 0, 0, dst})
	copy(b[6:], []byte{2, 0, 0, 0, 0, src})
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 20+8+4)
	copy(ip[12:], []byte{10, 0, 0, src})
	copy(ip[16:], []byte{10, 0, 0, dst})
	u := ip[20:]
	binary.BigEndian.PutUint16(u, sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], 12)
	u[8] = seq
	return b
}

// Two vhost-user frontends through the switch, one behind the clouds'
// default security group: its datagrams get their replies, an unsolicited
// datagram to it is dropped and counted on its port, and its connection
// is listed.
func TestSecurityGroupThroughFrontends(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	pa, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	ga, gb := dialGuest(t, sockA), dialGuest(t, sockB)
	ga.mustNegotiate()
	gb.mustNegotiate()
	def := vswitch.DefaultSecurityGroup()
	if err := sw.SetSecurityGroup("a", &def, false); err != nil {
		t.Fatal(err)
	}
	ga.postRx(8)
	gb.postRx(8)
	// a asks, b answers.
	ga.send(udp4(2, 1, 40000, 53, 1))
	if got := gb.recv(1); !bytes.Equal(got[0], udp4(2, 1, 40000, 53, 1)) {
		t.Fatalf("b got %x", got[0])
	}
	ga.waitTxDone()
	gb.send(udp4(1, 2, 53, 40000, 2))
	if got := ga.recv(1); !bytes.Equal(got[0], udp4(1, 2, 53, 40000, 2)) {
		t.Fatalf("a got %x", got[0])
	}
	gb.waitTxDone()
	// b sends unsolicited to another port of a's, then answers again: a
	// receives the answer only (frames from one port stay in order).
	gb.send(udp4(1, 2, 53, 41000, 3), udp4(1, 2, 53, 40000, 4))
	if got := ga.recv(1); !bytes.Equal(got[0], udp4(1, 2, 53, 40000, 4)) {
		t.Fatalf("a got %x, want the reply (seq 4), not the unsolicited datagram", got[0])
	}
	if d := pa.Handle().Counters().Drops[vswitch.DropSecurityGroup]; d != 1 {
		t.Fatalf("security_group drops on a = %d, want 1", d)
	}
	z := pa.Handle().Conntrack()
	if n := z.Len(); n != 1 {
		t.Fatalf("a's zone holds %d connections, want 1", n)
	}
}
