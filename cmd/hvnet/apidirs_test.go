package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
)

// vhostSpec is a vhost-user port of the daemon's configuration.
func vhostSpec(t *testing.T, port vswitch.PortConfig, sock string) daemon.PortSpec {
	t.Helper()
	p, err := daemon.NewPortSpec(api.KindVhostUser, port, daemon.Values{"socket": {sock}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantDir(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != perm {
		t.Fatalf("%s: %v, %v; want a directory with mode %v", path, fi, err, perm)
	}
}

// The daemon's API writes files and sockets only under its directories
// (the defaults: API socket's path without .sock, and captures/ in it);
// ports of its own configuration may be anywhere.
func TestDaemonAPIDirs(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(dir, "operator", "op.sock")
	os.Mkdir(filepath.Dir(elsewhere), 0o755)
	cfg := daemon.Config{API: filepath.Join(dir, "api.sock"),
		Ports: []daemon.PortSpec{vhostSpec(t, vswitch.PortConfig{Name: "op", PVID: 1}, elsewhere)}}
	r, err := daemon.Start(context.Background(), hclog.NewNullLogger(), vswitch.New(vswitch.Config{}), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	run, captures := filepath.Join(dir, "api"), filepath.Join(dir, "api", "captures")
	wantDir(t, run, 0o755)
	wantDir(t, captures, 0o700)
	if fi, err := os.Lstat(elsewhere); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the operator's port socket %s: %v %v", elsewhere, fi, err)
	}
	c := api.NewClient(cfg.API)
	ctx := context.Background()

	if err := c.StartMirror(ctx, api.MirrorSpec{Port: "op", File: "op.pcap"}); err != nil {
		t.Fatal(err)
	}
	if info, err := c.StopMirror(ctx, "op"); err != nil || info.File != filepath.Join(captures, "op.pcap") {
		t.Fatalf("mirror = %+v, %v; want its file in %s", info, err, captures)
	}
	err = c.StartMirror(ctx, api.MirrorSpec{Port: "op", File: filepath.Join(dir, "out.pcap")})
	wantAPIError(t, "mirror outside the capture dir", err, http.StatusBadRequest, "file", "outside")
	noFile(t, filepath.Join(dir, "out.pcap"))

	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindVhostUser,
		Config: api.PortConfig{Name: "v", Mode: "access", PVID: 1}, Options: api.Opts("socket", "t1/v.sock")}); err != nil {
		t.Fatal(err)
	}
	negotiate(t, filepath.Join(run, "t1", "v.sock")).Close()
	for _, sock := range []string{filepath.Join(dir, "new", "x.sock"), "../new/x.sock", elsewhere} {
		_, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindVhostUser,
			Config: api.PortConfig{Name: "x", Mode: "access", PVID: 1}, Options: api.Opts("socket", sock)})
		wantAPIError(t, "socket "+sock, err, http.StatusBadRequest, "options.socket", "")
	}
	noFile(t, filepath.Join(dir, "new"))
}

// hvnet switch's flags: --run-dir, --capture-dir, --api-max-conns.
func TestSwitchAPIFlags(t *testing.T) {
	dir := t.TempDir()
	sock, run, captures := filepath.Join(dir, "api.sock"), filepath.Join(dir, "r"), filepath.Join(dir, "c")
	d := startHvnet(t, nil, "switch", "--api", sock, "--run-dir", run, "--capture-dir", captures, "--api-max-conns", "2",
		"--port", "name=a,socket="+filepath.Join(run, "a.sock"))
	c := d.waitAPI(t, sock)
	wantDir(t, captures, 0o700)
	ctx := context.Background()
	if err := c.StartMirror(ctx, api.MirrorSpec{Port: "a", File: "a.pcap"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(captures, "a.pcap")); err != nil {
		t.Fatalf("mirror file not in --capture-dir: %v", err)
	}
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindVhostUser,
		Config: api.PortConfig{Name: "b", Mode: "access", PVID: 1}, Options: api.Opts("socket", "b.sock")}); err != nil {
		t.Fatal(err)
	}
	negotiate(t, filepath.Join(run, "b.sock")).Close()

	// Two connections sending half a header hold both slots: a request
	// waits until one goes.
	c.CloseIdleConnections() // a kept-alive connection holds a slot too
	var slow []net.Conn
	for range 2 {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /v1/ports HTTP/1.1\r\nHost: hvnet\r\n")
		slow = append(slow, conn)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := api.NewClient(sock).Ports(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request beyond --api-max-conns 2: %v, want it to wait", err)
	}
	slow[0].Close()
	if _, err := api.NewClient(sock).Ports(ctx); err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
	slow[1].Close()
	d.term(t)
}
