package soak

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mvdan.cc/sh/v3/syntax"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/lab"
)

// The guests' scripts parse as the guests' shell (gosh: mvdan.cc/sh) reads
// them, and the schedule is the seed's.
func TestGsScripts(t *testing.T) {
	for _, dur := range []time.Duration{30 * time.Second, time.Minute, 10 * time.Minute} {
		plans := gsPlans(dur, rand.New(rand.NewPCG(7, 2)))
		again := gsPlans(dur, rand.New(rand.NewPCG(7, 2)))
		for i, p := range plans {
			s := p.script()
			if _, err := syntax.NewParser().Parse(strings.NewReader(s), p.self.name); err != nil {
				t.Fatalf("%v %s: %v\n%s", dur, p.self.name, err, s)
			}
			// lab's limit: the whole kernel command line in 2047 bytes.
			ac := agentcfg.Cmdline{Modules: []string{"@virtio-net"}, Script: s,
				Ifaces: []agentcfg.Iface{{Name: "eth0", Addr: netip.PrefixFrom(p.self.ip, 24)}}}
			if n := len(lab.BaseCmdline + " ipv6.disable=1 " + ac.String()); n > 2000 {
				t.Errorf("%v %s: kernel command line %d bytes, want at most 2000", dur, p.self.name, n)
			}
			if s != again[i].script() {
				t.Errorf("%v %s: same seed, different script", dur, p.self.name)
			}
			gaps, tail := p.resets()
			sum := tail
			for _, d := range gaps {
				sum += d
			}
			if sum != dur || len(gaps) == 0 || tail < 8*time.Second {
				t.Errorf("%v %s: resets %v tail %v: want some, summing to the duration", dur, p.self.name, gaps, tail)
			}
		}
	}
}

func TestGsParseConsole(t *testing.T) {
	con := "g1| GS-DEV 0000:00:02.0\r\ng1| GS-STATS reset 10 20 1 0\ng1| GS-PING 10.0.0.2 ok\ng1| GS-PING 10.0.0.3 FAILED\ng1| GS-STATS final 5 6 0 2\n"
	c, err := gsParseConsole(con)
	if err != nil {
		t.Fatal(err)
	}
	want := gsCounts{tx: 15, rx: 26, rxDropped: 1, txDropped: 2, resets: 2, final: true, pings: 2, pingFails: 1}
	if c != want {
		t.Errorf("gsParseConsole = %+v, want %+v", c, want)
	}
	if _, err := gsParseConsole("g1| GS-STATS reset 1 2 3 4\n"); err == nil {
		t.Error("no final line: want an error")
	}
}

// The frontend answers an ICMP echo request to its address with a valid
// reply, and ignores other frames.
func TestGsEchoReply(t *testing.T) {
	f := &gsFrontend{node: gsFE}
	src := gsGuests[0]
	req := make([]byte, 58) // ping -s 16
	copy(req[0:6], gsFE.mac[:])
	copy(req[6:12], src.mac[:])
	binary.BigEndian.PutUint16(req[12:], 0x0800)
	ip := req[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 44)
	ip[8], ip[9] = 64, 1
	a, b := src.ip.As4(), gsFE.ip.As4()
	copy(ip[12:16], a[:])
	copy(ip[16:20], b[:])
	binary.BigEndian.PutUint16(ip[10:], gsChecksum(ip))
	icmp := req[34:]
	icmp[0] = 8
	icmp[5] = 7 // id
	icmp[7] = 1 // seq
	binary.BigEndian.PutUint16(icmp[2:], gsChecksum(icmp))

	f.answer(req)
	if f.nrep != 1 || f.repN[0] != 58 {
		t.Fatalf("answer: %d replies (len %d), want one of 58 bytes", f.nrep, f.repN[0])
	}
	r := f.rep[0][:58]
	if [6]byte(r[0:6]) != src.mac || [6]byte(r[6:12]) != gsFE.mac {
		t.Errorf("reply MACs %x -> %x", r[6:12], r[0:6])
	}
	if [4]byte(r[26:30]) != b || [4]byte(r[30:34]) != a {
		t.Errorf("reply IPs %v -> %v", r[26:30], r[30:34])
	}
	if r[34] != 0 || gsChecksum(r[34:]) != 0 || gsChecksum(r[14:34]) != 0 {
		t.Errorf("reply: type %d, ICMP checksum residue %#x, IP %#x", r[34], gsChecksum(r[34:]), gsChecksum(r[14:34]))
	}
	for _, bad := range []func([]byte){
		func(p []byte) { p[34] = 0 },           // a reply, not a request
		func(p []byte) { p[33] = 11 },          // another address
		func(p []byte) { p[23] = 17 },          // UDP
		func(p []byte) { p[12] = 0x86 },        // not IPv4
		func(p []byte) { p[16], p[17] = 4, 0 }, // total length past the frame
	} {
		p := append([]byte(nil), req...)
		bad(p)
		f.nrep = 0
		f.answer(p)
		if f.nrep != 0 {
			t.Errorf("answered %x", p)
		}
	}
}
