package agentcfg

import (
	"encoding/base64"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCmdlineRoundTrip(t *testing.T) {
	for _, c := range []Cmdline{
		{},
		{Script: "exit 3"},
		{
			Modules: []string{"@virtio-net", "8021q"},
			Ifaces: []Iface{
				{Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/24"), MTU: 9000},
				{Name: "eth0.10", Addr: netip.MustParsePrefix("fd00::1/64")},
				{Name: "eth1", Down: true},
			},
			Script:  "echo 'hi there' | cat\nexit 0\n\x00\xff",
			Timeout: 1500 * time.Millisecond,
		},
		{ScriptFile: "/etc/host.sh", Timeout: time.Hour},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v, want nil", c, err)
		}
		s := "console=ttyS0 quiet " + c.String() + " panic=-1"
		got, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(%q) = %v", s, err)
			continue
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("Parse(%q) = %+v, want %+v", s, got, c)
		}
	}
}

func TestParse(t *testing.T) {
	script := "uname -r; exit 3\n" // encodes with padding and '+' or '/'? check both alphabets
	for _, tt := range []struct {
		name, cmdline string
		want          Cmdline
	}{
		{"std padded", "hvnet.cmd=" + base64.StdEncoding.EncodeToString([]byte(script)), Cmdline{Script: script}},
		{"std raw", "hvnet.cmd=" + base64.RawStdEncoding.EncodeToString([]byte(script)), Cmdline{Script: script}},
		{"url padded", "hvnet.cmd=" + base64.URLEncoding.EncodeToString([]byte("??>>")), Cmdline{Script: "??>>"}},
		{"std alphabet", "hvnet.cmd=" + base64.StdEncoding.EncodeToString([]byte("??>>")), Cmdline{Script: "??>>"}},
		{"repeated modules", "hvnet.modules=a,b hvnet.modules=@kvm", Cmdline{Modules: []string{"a", "b", "@kvm"}}},
		{"quoted", `foo="a b" hvnet.if="eth0,none,up"`, Cmdline{Ifaces: []Iface{{Name: "eth0"}}}},
		{"stops at --", "hvnet.modules=a -- hvnet.bogus=1", Cmdline{Modules: []string{"a"}}},
		{"timeout", "hvnet.timeout=2.5", Cmdline{Timeout: 2500 * time.Millisecond}},
		{"others ignored", "root=/dev/vda hvnetfoo=1 console=ttyS0\n", Cmdline{}},
	} {
		got, err := Parse(tt.cmdline)
		if err != nil {
			t.Errorf("%s: Parse(%q) = %v", tt.name, tt.cmdline, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Parse(%q) = %+v, want %+v", tt.name, tt.cmdline, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ cmdline, wantErr string }{
		{"hvnet.bogus=1", "hvnet.bogus"},
		{"hvnet.cmd=!!!", "hvnet.cmd"},
		{"hvnet.cmd=", "hvnet.cmd"},
		{"hvnet.cmd=ZXhpdA hvnet.cmd=ZXhpdA", "hvnet.cmd given twice"},
		{"hvnet.cmd=ZXhpdA hvnet.cmdfile=/x", "exclusive"},
		{"hvnet.cmdfile=", "hvnet.cmdfile"},
		{"hvnet.timeout=soon", "hvnet.timeout"},
		{"hvnet.timeout=-1", "hvnet.timeout"},
		{"hvnet.modules=@nope", "@nope"},
		{"hvnet.modules=a/b", "hvnet.modules"},
		{"hvnet.if=eth0", "hvnet.if"},
		{"hvnet.if=eth0,10.0.0.1", "hvnet.if"},
		{"hvnet.if=eth0,10.0.0.1/24,mtu=x", "mtu"},
		{"hvnet.if=eth0,10.0.0.1/24,fast", "fast"},
		{"hvnet.if=eth0.0,none", "VLAN"},
		{"hvnet.if=eth0.4095,none", "VLAN"},
		{"hvnet.if=.10,none", "VLAN"},
		{"hvnet.if=a.b.10,none", "VLAN"},
		{"hvnet.if=averyveryverylongname,none", "interface name"},
	} {
		_, err := Parse(tt.cmdline)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.cmdline, err, tt.wantErr)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		c       Cmdline
		wantErr string
	}{
		{Cmdline{Script: "x", ScriptFile: "/y"}, "exclusive"},
		{Cmdline{ScriptFile: "/a b"}, "hvnet.cmdfile"},
		{Cmdline{Modules: []string{"@bad"}}, "@bad"},
		{Cmdline{Ifaces: []Iface{{Name: "eth0.9999"}}}, "VLAN"},
		{Cmdline{Script: strings.Repeat("x", 2000)}, "command line"},
		{Cmdline{Timeout: -time.Second}, "hvnet.timeout"},
	} {
		if err := tt.c.Validate(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tt.c, err, tt.wantErr)
		}
	}
}

func TestExpandModules(t *testing.T) {
	got, err := ExpandModules([]string{"8021q", "@vlan", "@kvm", "kvm"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"8021q", "irqbypass", "kvm", "kvm_amd"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExpandModules = %v, want %v", got, want)
	}
}

func TestIfaceVLAN(t *testing.T) {
	p, vid, ok := Iface{Name: "eth0.10"}.VLAN()
	if p != "eth0" || vid != 10 || !ok {
		t.Errorf("VLAN() = %q, %d, %v, want eth0, 10, true", p, vid, ok)
	}
	if _, _, ok := (Iface{Name: "eth0"}).VLAN(); ok {
		t.Errorf("eth0.VLAN() ok = true, want false")
	}
}

func TestFields(t *testing.T) {
	got := Fields(` a  b="c d"e "f" ` + "\n")
	want := []string{"a", "b=c de", "f"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fields = %q, want %q", got, want)
	}
}
