package vhostkind

import (
	"strings"
	"testing"

	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/vhost"
)

func parse(t *testing.T, fields string) (*spec, error) {
	t.Helper()
	p, err := daemon.ParsePort("port", strings.Split(fields, ","))
	if err != nil {
		return nil, err
	}
	return p.Spec().(*spec), nil
}

// The text form of a vhost-user port reaches vhost.PortConfig.
func TestParse(t *testing.T) {
	s, err := parse(t, "name=a,socket=rel.sock,mode=client,queues=4,mac=52:54:00:00:00:01,mtu=9000,vlan=10")
	if err != nil {
		t.Fatal(err)
	}
	c := s.c
	if c.Mode != vhost.Client || c.QueuePairs != 4 || c.MAC != [6]byte{0x52, 0x54, 0, 0, 0, 1} || c.MTU != 9000 ||
		c.Port.PVID != 10 || !strings.HasPrefix(c.Socket, "/") || !strings.HasSuffix(c.Socket, "/rel.sock") {
		t.Errorf("config = %+v", c)
	}
	if len(s.Claims()) != 0 {
		t.Errorf("a client claims %v: its socket is the frontend's", s.Claims())
	}
	if s, err = parse(t, "name=a,socket=/x.sock"); err != nil || s.c.Mode != vhost.Server || s.c.QueuePairs != 0 ||
		len(s.Claims()) != 1 || s.Claims()[0] != "socket /x.sock" {
		t.Errorf("defaults: %+v, claims %v, %v", s, s.Claims(), err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=a", `field "socket": missing (a vhost-user port needs socket=PATH)`},
		{"name=a,socket=/x,mode=both", `field "mode": "both" is not server or client`},
		{"name=a,socket=/x,queues=17", `field "queues": "17" is not a number of queue pairs (1..16)`},
		{"name=a,socket=/x,mac=ff:ff:ff:ff:ff:ff", `field "mac"`},
		{"name=a,socket=/x,if=eth0", `field "if": unknown for kind vhost-user`},
	} {
		if _, err := parse(t, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}

// Who may connect to a server socket: socket-mode, socket-owner and
// socket-group, by name or number; not for a client's socket.
func TestParseSocketAccess(t *testing.T) {
	s, err := parse(t, "name=a,socket=/x.sock,socket-mode=0660,socket-group=nogroup,socket-owner=0")
	if err != nil {
		t.Fatal(err)
	}
	if s.c.SocketMode != 0o660 || s.c.SocketGroup == nil || *s.c.SocketGroup != 65534 || s.c.SocketOwner == nil || *s.c.SocketOwner != 0 {
		t.Errorf("access = %v %v %v", s.c.SocketMode, s.c.SocketOwner, s.c.SocketGroup)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=a,socket=/x,socket-mode=0444", `field "socket-mode": "0444" is not a socket mode`},
		{"name=a,socket=/x,socket-mode=rw", `field "socket-mode": "rw" is not a socket mode`},
		{"name=a,socket=/x,socket-group=no-such-group-hvnet", `field "socket-group": "no-such-group-hvnet" is not a group on this host`},
		{"name=a,socket=/x,socket-owner=no-such-user-hvnet", `field "socket-owner": "no-such-user-hvnet" is not a user on this host`},
		{"name=a,socket=/x,mode=client,socket-mode=0660", `are for mode=server`},
	} {
		if _, err := parse(t, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}
