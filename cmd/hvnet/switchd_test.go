package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vswitch "hvnet/switch"
	"hvnet/vhost"
	"hvnet/vhost/frontend"
)

func TestSwitchConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	os.WriteFile(good, []byte("# two ports\nport name=a socket=/run/hvnet/a.sock vlan=10\n\n"+
		"port name=b,socket=/tmp/b.sock,mode=client,trunk=10:20,native=1,mtu=9000,rate=10M # comment\n"), 0o644)
	cs, err := loadSwitchConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Port.PVID != 10 || cs[1].Mode != vhost.Client || cs[1].Port.Mode != vswitch.ModeTrunk ||
		len(cs[1].Port.AllowedVLANs) != 2 || cs[1].Port.MTU != 9000 || cs[1].Port.Egress.Bytes.Rate != 10e6 {
		t.Fatalf("loadSwitchConfig = %+v", cs)
	}
	for _, tc := range []struct{ line, want string }{
		{"port name=a socket=/x vlan=5000", `:2: field "vlan"`},
		{"port name=a socket=/x mode=both", `:2: field "mode"`},
		{"port socket=/x", `:2: field "name": missing`},
		{"port name=a", `:2: field "socket": missing`},
		{"port name=a socket=/x colour=red", `:2: field "colour": unknown`},
		{"port name=a socket=/x mtu", `:2: field "mtu": want KEY=VALUE`},
		{"bridge name=a", `:2: unknown directive "bridge"`},
		{"port name=a socket=/x native=3", `:2: field "native": only for trunk`},
	} {
		p := filepath.Join(dir, "bad.conf")
		os.WriteFile(p, []byte("# first line\n"+tc.line+"\n"), 0o644)
		_, err := loadSwitchConfig(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.line, err, tc.want)
		}
	}
}

func TestSwitchUsageErrors(t *testing.T) {
	var out bytes.Buffer
	if st := run([]string{"switch"}, nil, &out, &out); st != 2 {
		t.Errorf("switch without ports: status %d, want 2 (%s)", st, out.String())
	}
	out.Reset()
	if st := run([]string{"switch", "--port", "name=a"}, nil, &out, &out); st != 2 || !strings.Contains(out.String(), `"socket": missing`) {
		t.Errorf("switch --port name=a: status %d, output %q", st, out.String())
	}
}

// The daemon serves vhost-user on its sockets and, on SIGTERM, exits 0
// having removed them.
func TestSwitchDaemonSIGTERM(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hvnet")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sa, sb := filepath.Join(dir, "run", "a.sock"), filepath.Join(dir, "run", "b.sock")
	cmd := exec.Command(bin, "switch", "--port", "name=a,socket="+sa+",vlan=10", "--port", "name=b,socket="+sb+",vlan=20")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var f *frontend.Frontend
	for i := 0; i < 1000; i++ { // wait for the socket (deadlock guard 10 s)
		var err error
		if f, err = frontend.Dial(sb); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f == nil {
		t.Fatalf("daemon never listened on %s\n%s", sb, logs.String())
	}
	if feats, err := f.GetFeatures(); err != nil || feats == 0 {
		t.Fatalf("GET_FEATURES = %#x, %v", feats, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exited with %v\n%s", err, logs.String())
	}
	f.Close()
	for _, s := range []string{sa, sb} {
		if _, err := os.Stat(s); !os.IsNotExist(err) {
			t.Errorf("socket %s still there after SIGTERM (%v)", s, err)
		}
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown log line:\n%s", logs.String())
	}
}
