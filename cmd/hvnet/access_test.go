package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the unprivileged user the test runs peers as (Debian's
// nobody:nogroup).
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// A QEMU that is not root (as libvirt runs it) attaches to a vhost-user
// socket whose group is its own and whose mode is 0660, and is refused
// by a socket left to root; hvnet ctl run by a member of the API
// socket's group works, and one refused says what to do.
func TestUnprivilegedPeers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run peers as another user")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 not installed (apt-get install qemu-system-x86): %v", err)
	}
	dir, err := os.MkdirTemp("", "hvnet-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // nobody reaches the sockets; the sockets decide
	api, open, closed := filepath.Join(dir, "api.sock"), filepath.Join(dir, "open.sock"), filepath.Join(dir, "closed.sock")
	d := startHvnet(t, nil, "switch", "--api", api, "--api-group", "nogroup", "--api-mode", "0660",
		"--port", "name=open,socket="+open+",socket-group=nogroup,socket-mode=0660", "--port", "name=closed,socket="+closed)
	c := d.waitAPI(t, api)
	for _, s := range []struct {
		path string
		mode os.FileMode
		gid  uint32
	}{{api, 0o660, 65534}, {open, 0o660, 65534}} {
		fi, err := os.Stat(s.path)
		if err != nil || fi.Mode().Perm() != s.mode || fi.Sys().(*syscall.Stat_t).Gid != s.gid {
			t.Errorf("%s: %v, %v; want mode %v, group %d", s.path, fi.Mode(), err, s.mode, s.gid)
		}
	}
	qemu := func(sock string) *exec.Cmd {
		cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-nographic", "-nodefaults", "-S",
			"-machine", "q35,memory-backend=mem", "-object", "memory-backend-memfd,id=mem,size=128M,share=on",
			"-chardev", "socket,id=c0,path="+sock, "-netdev", "vhost-user,id=n0,chardev=c0",
			"-device", "virtio-net-pci,netdev=n0,vectors=0,romfile=", "-monitor", "none", "-serial", "none")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		return cmd
	}
	q := qemu(open)
	var qout bytes.Buffer
	q.Stdout, q.Stderr = &qout, &qout
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { q.Process.Kill(); q.Wait() }()
	waitCond(t, "QEMU as nobody to attach", func() bool {
		p, err := c.Port(context.Background(), "open")
		return err == nil && p.Device != nil && p.Device.Connected
	})
	out, err := qemu(closed).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("QEMU as nobody on a root-only socket: %v\n%s", err, out)
	}

	// This test binary, where nobody may run it, as hvnet.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hvnet")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"ctl", "--socket", api}, args...)...)
		cmd.Env = append(os.Environ(), mainEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := ctl("ports"); err != nil || !strings.Contains(out, "open") {
		t.Errorf("hvnet ctl ports as a member of the API socket's group: %v\n%s", err, out)
	}
	os.Chmod(api, 0o600)
	if out, err := ctl("ports"); err == nil || !strings.Contains(out, "permission denied on "+api) || !strings.Contains(out, "--api-group") {
		t.Errorf("hvnet ctl ports refused: %v\n%s; want what to do", err, out)
	}
	q.Process.Kill()
	q.Wait()
	d.term(t)
}
