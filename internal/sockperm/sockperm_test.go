package sockperm

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestApply(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	gid := os.Getgid()
	if err := Apply(p, 0o660, nil, &gid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode().Perm() != 0o660 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("after Apply: %v %v", fi.Mode(), err)
	}
	if err := Apply(p, 0, nil, nil); err != nil {
		t.Errorf("Apply with nothing to do: %v", err)
	}
	if err := Apply(filepath.Join(t.TempDir(), "none"), 0o600, nil, nil); err == nil {
		t.Error("Apply on a missing file succeeded")
	}
}
