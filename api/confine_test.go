package api

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const secret = "the target's own contents\n"

// outside is a directory outside every directory the server was given,
// holding a file the tests try to reach.
func outside(t *testing.T) (dir, target string) {
	t.Helper()
	dir = t.TempDir()
	target = filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, target
}

func wantContents(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != want {
		t.Fatalf("%s = %q, %v; want %q (untouched)", path, b, err, want)
	}
}

// wantPcap checks path is a fresh pcap file (header only or more) with
// mode 0600.
func wantPcap(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v, want a regular file with 0600", path, fi.Mode())
	}
	b, _ := os.ReadFile(path)
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b23c4d {
		t.Fatalf("%s does not start with a nanosecond pcap header: % x", path, b[:min(len(b), 24)])
	}
}

// stopMirror stops the mirror on port and fails the test if there was none.
func (e *env) stopMirror(port string) MirrorInfo {
	e.t.Helper()
	info, err := e.c.StopMirror(ctx(e.t), port)
	if err != nil {
		e.t.Fatalf("stop mirror %s: %v", port, err)
	}
	return info
}

func TestMirrorFileUnderCaptureDir(t *testing.T) {
	e := newEnv(t)
	// A relative name lands in the capture directory; the answer says where.
	if err := e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: "a.pcap"}); err != nil {
		t.Fatal(err)
	}
	if info := e.stopMirror("a"); info.File != filepath.Join(e.captureDir, "a.pcap") {
		t.Fatalf("mirror file = %q, want it under %s", info.File, e.captureDir)
	}
	wantPcap(t, filepath.Join(e.captureDir, "a.pcap"))
	// An absolute name inside it, and one in an existing subdirectory.
	if err := os.Mkdir(filepath.Join(e.captureDir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{filepath.Join(e.captureDir, "abs.pcap"), "sub/b.pcap", "./sub//c.pcap"} {
		if err := e.c.StartMirror(ctx(t), MirrorSpec{Port: "b", File: name}); err != nil {
			t.Fatalf("mirror to %q: %v", name, err)
		}
		e.stopMirror("b")
	}
	for _, f := range []string{"abs.pcap", "sub/b.pcap", "sub/c.pcap"} {
		wantPcap(t, filepath.Join(e.captureDir, f))
	}
	// Without a capture directory, file mirrors are off.
	off := newEnvWith(t, func(o *Options) { o.CaptureDir = "" })
	wantError(t, off.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: "x.pcap"}), http.StatusNotImplemented, "file")
}

func TestMirrorFileEscapesRefused(t *testing.T) {
	e := newEnv(t)
	out, target := outside(t)
	if err := os.Symlink(target, filepath.Join(e.captureDir, "evil.pcap")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, filepath.Join(e.captureDir, "evildir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(target, filepath.Join(e.captureDir, "hardlink.pcap")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(e.captureDir, "fifo.pcap"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		spec      MirrorSpec
		status    int
		msg       string
		overwrite bool
	}{
		{"dot-dot escape", MirrorSpec{File: "../x.pcap"}, http.StatusBadRequest, `".."`, false},
		{"dot-dot inside", MirrorSpec{File: "sub/../x.pcap"}, http.StatusBadRequest, `".."`, false},
		{"dot-dot to the target", MirrorSpec{File: "../../" + strings.TrimPrefix(target, "/")}, http.StatusBadRequest, `".."`, false},
		{"absolute outside", MirrorSpec{File: target}, http.StatusBadRequest, "outside", false},
		{"absolute outside, overwrite", MirrorSpec{File: target, Overwrite: true}, http.StatusBadRequest, "outside", true},
		{"absolute prefix sibling", MirrorSpec{File: e.captureDir + "x/a.pcap"}, http.StatusBadRequest, "outside", false},
		{"the directory itself", MirrorSpec{File: e.captureDir}, http.StatusBadRequest, "not a directory", false},
		{"symlink", MirrorSpec{File: "evil.pcap"}, http.StatusForbidden, "symlink", false},
		{"symlink, overwrite", MirrorSpec{File: "evil.pcap", Overwrite: true}, http.StatusForbidden, "symlink", true},
		{"symlinked directory", MirrorSpec{File: "evildir/target"}, http.StatusForbidden, "symlink", true},
		{"symlinked directory, new file", MirrorSpec{File: "evildir/new.pcap"}, http.StatusForbidden, "symlink", false},
		{"hard link, overwrite", MirrorSpec{File: "hardlink.pcap", Overwrite: true}, http.StatusForbidden, "hard links", true},
		{"hard link", MirrorSpec{File: "hardlink.pcap"}, http.StatusConflict, "overwrite", false},
		{"fifo, overwrite", MirrorSpec{File: "fifo.pcap", Overwrite: true}, http.StatusUnprocessableEntity, "not a regular file", true},
		{"NUL", MirrorSpec{File: "a\x00.pcap"}, http.StatusBadRequest, "NUL", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Port = "a"
			tc.spec.Overwrite = tc.overwrite
			err := e.c.StartMirror(ctx(t), tc.spec)
			wantError(t, err, tc.status, "file")
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			wantContents(t, target, secret)
			if ents, _ := os.ReadDir(out); len(ents) != 1 {
				t.Errorf("%s holds %d entries, want only the target", out, len(ents))
			}
			if _, err := os.Lstat(filepath.Join(e.captureDir, "x.pcap")); err == nil {
				t.Errorf("a refused request created x.pcap")
			}
			if e.sw.Port("a").Config().MirrorIngress {
				t.Errorf("a refused mirror set the port's mirror flags")
			}
		})
	}
	if fi, err := os.Lstat(filepath.Join(e.captureDir, "evil.pcap")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", fi, err)
	}
}

// An existing file is not truncated unless the request says overwrite;
// then it is replaced and made 0600.
func TestMirrorFileOverwrite(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.captureDir, "old.pcap")
	if err := os.WriteFile(path, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	err := e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: "old.pcap"})
	wantError(t, err, http.StatusConflict, "file")
	wantContents(t, path, secret)
	if err := e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: "old.pcap", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	e.send("a", mac(1), mac(2), 2)
	if info := e.stopMirror("a"); info.Frames != 2 {
		t.Fatalf("mirror info %+v, want 2 frames", info)
	}
	wantPcap(t, path)
	if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(secret)) {
		t.Fatal("the old contents survived the overwrite")
	}
}

// Symlinks swapped in and out of the capture directory while mirrors are
// requested never let a write land outside.
func TestMirrorFileSymlinkRace(t *testing.T) {
	e := newEnv(t)
	out, target := outside(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // flip race.pcap and racedir between real and symlink
		defer wg.Done()
		f, d := filepath.Join(e.captureDir, "race.pcap"), filepath.Join(e.captureDir, "racedir")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			os.Remove(f)
			os.RemoveAll(d)
			if i%2 == 0 {
				os.Symlink(target, f)
				os.Symlink(out, d)
			} else {
				os.Mkdir(d, 0o700)
			}
		}
	}()
	for i := 0; i < 200; i++ {
		for _, name := range []string{"race.pcap", "racedir/target"} {
			if err := e.c.StartMirror(ctx(t), MirrorSpec{Port: "a", File: name, Overwrite: true}); err == nil {
				e.stopMirror("a")
			}
		}
	}
	close(stop)
	wg.Wait()
	wantContents(t, target, secret)
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Fatalf("%s holds %d entries, want only the target", out, len(ents))
	}
}

// vhost-user sockets given over the API live under the socket directory.
func TestAddPortSocketConfined(t *testing.T) {
	e := newEnv(t)
	out, target := outside(t)
	if err := os.Symlink(out, filepath.Join(e.socketDir, "evildir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(out, "s.sock"), filepath.Join(e.socketDir, "evil.sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.socketDir, "file.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(e.socketDir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	spec := func(name, sock string) PortSpec {
		return PortSpec{Kind: KindVhostUser, Config: PortConfig{Name: name, Mode: "access", PVID: 1}, Options: Opts("socket", sock)}
	}
	for _, tc := range []struct {
		sock   string
		status int
		msg    string
	}{
		{filepath.Join(out, "x.sock"), http.StatusBadRequest, "outside"},
		{"/tmp/x.sock", http.StatusBadRequest, "outside"},
		{"../x.sock", http.StatusBadRequest, `".."`},
		{"a/../../x.sock", http.StatusBadRequest, `".."`},
		{"evildir/x.sock", http.StatusForbidden, "symlink"},
		{"evildir/new/x.sock", http.StatusForbidden, "symlink"},
		{"evil.sock", http.StatusForbidden, "symlink"},
		{"file.sock", http.StatusConflict, "not a socket"},
		{"file.sock/x.sock", http.StatusUnprocessableEntity, "not a directory"},
		{strings.Repeat("d/", 60) + "x.sock", http.StatusBadRequest, "longer than a unix socket path"},
	} {
		_, err := e.c.AddPort(ctx(t), spec("x", tc.sock))
		wantError(t, err, tc.status, "options.socket")
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("socket %q: error %q does not say %q", tc.sock, err, tc.msg)
		}
		if e.sw.Port("x") != nil {
			t.Fatalf("socket %q: the port was added", tc.sock)
		}
	}
	if len(e.factory.added) != 0 {
		t.Fatalf("the factory was asked for %+v", e.factory.added)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Fatalf("%s holds %d entries, want only the target", out, len(ents))
	}
	wantContents(t, target, secret)
	if _, err := os.Lstat(filepath.Join(e.socketDir, "d")); err == nil {
		t.Errorf("a refused socket path made directories")
	}

	// Relative names, absolute names inside, new subdirectories, a stale
	// socket: the factory gets the absolute path.
	for i, tc := range []struct{ sock, want string }{
		{"vm1.sock", filepath.Join(e.socketDir, "vm1.sock")},
		{filepath.Join(e.socketDir, "vm2.sock"), filepath.Join(e.socketDir, "vm2.sock")},
		{"tenant/a/vm3.sock", filepath.Join(e.socketDir, "tenant/a/vm3.sock")},
		{"stale.sock", stale},
	} {
		name := string(rune('p' + i))
		if _, err := e.c.AddPort(ctx(t), spec(name, tc.sock)); err != nil {
			t.Fatalf("socket %q: %v", tc.sock, err)
		}
		if got := e.factory.added[len(e.factory.added)-1].Options["socket"]; len(got) != 1 || got[0] != tc.want {
			t.Errorf("socket %q: factory got %q, want %q", tc.sock, got, tc.want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(e.socketDir, "tenant/a")); err != nil || !fi.IsDir() {
		t.Errorf("tenant/a: %v %v, want a directory", fi, err)
	}
	off := newEnvWith(t, func(o *Options) { o.SocketDir = "" })
	_, err = off.c.AddPort(ctx(t), spec("x", "x.sock"))
	wantError(t, err, http.StatusNotImplemented, "options.socket")
}
