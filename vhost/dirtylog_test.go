package vhost

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// With LOG_SHMFD and VHOST_F_LOG_ALL, every guest page the backend writes
// (the receive buffer, the used ring) is marked in the shared bitmap, one
// bit per 4 KiB page, so that live migration can copy it.
func TestDirtyLogMarksWrittenPages(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	a, b := dialGuest(t, sockA), dialGuest(t, sockB)
	a.mustNegotiate()
	b.mustNegotiate()

	logSize := (guestBase + guestSize) / virtio.PageSize / 8
	fd, err := unix.MemfdCreate("log", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, int64(logSize)); err != nil {
		t.Fatal(err)
	}
	bitmap, err := unix.Mmap(fd, 0, int(logSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(bitmap)
	if err := b.f.SetLogBase(uint64(logSize), 0, fd); err != nil {
		t.Fatal(err)
	}
	if err := b.f.SetFeatures(virtio.Feature(virtio.FVersion1) | 1<<proto.FProtocolFeatures | 1<<proto.FLogAll); err != nil {
		t.Fatal(err)
	}
	dirty := func(gpa uint64) bool {
		p := gpa / virtio.PageSize
		// Bit p is bit p%8 of byte p/8 (vhost-user.rst "Migration").
		return bitmap[p/8]&(1<<(p%8)) != 0
	}
	b.postRx(1)
	f := ethFrame(0xff, 1, 7)
	a.send(f)
	if got := b.recv(1); !bytes.Equal(got[0], f) {
		t.Fatalf("got % x", got[0])
	}
	buf := b.rx.BufAddr(0, 0).Addr
	for _, x := range []struct {
		what string
		gpa  uint64
	}{{"receive buffer", buf}, {"used ring", b.rx.Used}} {
		if !dirty(x.gpa) {
			t.Errorf("%s page at %#x not marked dirty", x.what, x.gpa)
		}
	}
	if dirty(b.tx.Desc) {
		t.Errorf("the transmit descriptor table (never written by the backend) is marked dirty")
	}
}
