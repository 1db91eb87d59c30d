package evpn

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func goodConfig() Config {
	return Config{
		ASN:        65000,
		RouterID:   netip.MustParseAddr("10.0.0.1"),
		VTEP:       netip.MustParseAddr("192.0.2.1"),
		ListenPort: -1,
	}
}

func TestStartBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // in the error
	}{
		{"no ASN", func(c *Config) { c.ASN = 0 }, "ASN"},
		{"no router ID", func(c *Config) { c.RouterID = netip.Addr{} }, "RouterID"},
		{"IPv6 router ID", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, "RouterID 2001:db8::1"},
		{"zero router ID", func(c *Config) { c.RouterID = netip.MustParseAddr("0.0.0.0") }, "RouterID 0.0.0.0"},
		{"no VTEP", func(c *Config) { c.VTEP = netip.Addr{} }, "VTEP"},
		{"multicast VTEP", func(c *Config) { c.VTEP = netip.MustParseAddr("239.1.1.1") }, "VTEP 239.1.1.1"},
		{"bad port", func(c *Config) { c.ListenPort = 70000 }, "ListenPort 70000"},
		{"bad hold time", func(c *Config) { c.HoldTime = time.Second }, "HoldTime 1s"},
		{"fractional hold time", func(c *Config) { c.HoldTime = 3500 * time.Millisecond }, "HoldTime 3.5s"},
		{"bad connect retry", func(c *Config) { c.ConnectRetry = time.Millisecond }, "ConnectRetry 1ms"},
		{"negative route limit", func(c *Config) { c.MaxRoutesPerPeer = -1 }, "MaxRoutesPerPeer -1"},
		{"neighbor without address", func(c *Config) { c.Neighbors = []Neighbor{{}} }, "Neighbors[0].Addr"},
		{"neighbor twice", func(c *Config) {
			a := netip.MustParseAddr("10.0.0.2")
			c.Neighbors = []Neighbor{{Addr: a}, {Addr: a}}
		}, "Neighbors[1].Addr 10.0.0.2: listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := goodConfig()
			tc.edit(&cfg)
			s, err := Start(context.Background(), cfg, newRecorder("x"))
			if err == nil {
				s.Close()
				t.Fatalf("Start(%s) = nil error; want one naming %q", tc.name, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start(%s) = %q; want it to name %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestStartReportsEveryBadField(t *testing.T) {
	_, err := Start(context.Background(), Config{}, newRecorder("x"))
	if err == nil {
		t.Fatal("Start(Config{}) = nil error")
	}
	for _, f := range []string{"ASN", "RouterID", "VTEP"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("Start(Config{}) = %q; want it to name %s", err, f)
		}
	}
	if _, err := Start(context.Background(), goodConfig(), nil); err == nil {
		t.Error("Start with a nil Handler = nil error")
	}
}

func TestNoListenAndBadInput(t *testing.T) {
	// ListenPort -1: no listener, so no root and no network are needed.
	s := startSpeaker(t, goodConfig(), newRecorder("x"))
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	if err := s.AdvertiseMAC(100, mac, netip.Addr{}, 0); !errors.Is(err, ErrUnknownVNI) {
		t.Errorf("AdvertiseMAC in a VNI not added = %v; want ErrUnknownVNI", err)
	}
	for _, vni := range []uint32{0, MaxVNI + 1} {
		if err := s.AddVNI(vni); err == nil {
			t.Errorf("AddVNI(%d) = nil error", vni)
		}
	}
	if err := s.AddVNI(100); err != nil {
		t.Fatalf("AddVNI(100): %v", err)
	}
	if err := s.AddVNI(100); err != nil {
		t.Errorf("AddVNI(100) again: %v", err)
	}
	for _, bad := range [][6]byte{{}, {1, 0, 0x5e, 0, 0, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if err := s.AdvertiseMAC(100, bad, netip.Addr{}, 0); err == nil {
			t.Errorf("AdvertiseMAC(%x) = nil error; want a refusal of a non-unicast MAC", bad)
		}
	}
	if err := s.AdvertiseMAC(100, mac, netip.MustParseAddr("224.0.0.1"), 0); err == nil {
		t.Error("AdvertiseMAC with a multicast IP = nil error")
	}
	if err := s.AdvertiseMAC(100, mac, netip.MustParseAddr("10.1.1.1"), 0); err != nil {
		t.Errorf("AdvertiseMAC: %v", err)
	}
	if err := s.WithdrawMAC(100, mac, netip.MustParseAddr("10.1.1.2")); err != nil {
		t.Errorf("WithdrawMAC of a route never advertised: %v", err)
	}
	if err := s.DelVNI(100); err != nil {
		t.Errorf("DelVNI: %v", err)
	}
	if err := s.DelVNI(100); err != nil {
		t.Errorf("DelVNI again: %v", err)
	}
	if len(s.Neighbors()) != 0 {
		t.Errorf("Neighbors() = %v; want none", s.Neighbors())
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.AddVNI(200); !errors.Is(err, ErrClosed) {
		t.Errorf("AddVNI after Close = %v; want ErrClosed", err)
	}
}
