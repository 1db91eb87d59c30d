package backend

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/hugepages"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// Memory descriptors and the limits on what a session maps, white-box:
// the exact errors and counters behind each NACK. The end-to-end attacks
// (real sockets, several sessions at once) are vhost/memlimits_test.go's.

// scriptConn feeds a session the messages of a script, one at a time, and
// records its replies; io.EOF after the last.
type scriptConn struct {
	msgs    []*proto.Msg
	replies []reply
}

type reply struct {
	req     proto.Request
	payload []byte
}

func (c *scriptConn) ReadMsg() (*proto.Msg, error) {
	if len(c.msgs) == 0 {
		return nil, io.EOF
	}
	m := c.msgs[0]
	c.msgs = c.msgs[1:]
	return m, nil
}

func (c *scriptConn) WriteMsg(req proto.Request, flags uint32, payload []byte, fds ...int) error {
	c.replies = append(c.replies, reply{req, append([]byte(nil), payload...)})
	return nil
}

// ackMsg is req asking for a REPLY_ACK, with payload and fds (the session
// closes them: pass dups).
func ackMsg(req proto.Request, payload []byte, fds ...int) *proto.Msg {
	return &proto.Msg{Header: proto.Header{Request: req, Flags: proto.Version | proto.FlagNeedReply, Size: uint32(len(payload))},
		Payload: payload, FDs: fds}
}

// negotiate is the start of a session: REPLY_ACK, LOG_SHMFD and
// CONFIGURE_MEM_SLOTS, features, owner.
func negotiate(protocol uint64) []*proto.Msg {
	return []*proto.Msg{
		ackMsg(proto.SetProtocolFeatures, proto.PutU64(protocol)),
		ackMsg(proto.SetFeatures, proto.PutU64(virtio.Feature(virtio.FVersion1)|1<<proto.FProtocolFeatures)),
		ackMsg(proto.SetOwner, nil),
	}
}

const allProtocol = 1<<proto.PFReplyAck | 1<<proto.PFLogSHMFD | 1<<proto.PFConfigureMemSlots

// acks returns the statuses of c's REPLY_ACKs (0 ok) after the first
// skip, and a log base's empty reply as 0.
func (c *scriptConn) acks(skip int) []uint64 {
	var st []uint64
	for _, r := range c.replies[skip:] {
		if len(r.payload) == 0 {
			st = append(st, 0)
			continue
		}
		st = append(st, proto.U64(r.payload))
	}
	return st
}

// memfdOf returns a memfd of size bytes (sparse), closed at cleanup.
func memfdOf(t testing.TB, size int64, flags int) int {
	t.Helper()
	fd, err := unix.MemfdCreate("backend-test", unix.MFD_CLOEXEC|flags)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatalf("ftruncate memfd to %d: %v", size, err)
	}
	return fd
}

// fileIn returns a file of size bytes (sparse) created in dir, closed
// and removed at cleanup.
func fileIn(t testing.TB, dir string, size int64) int {
	t.Helper()
	f, err := os.CreateTemp(dir, ".hvnet-memfd-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return int(f.Fd())
}

func fsMagic(path string) (uint32, bool) {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return 0, false
	}
	return uint32(st.Type), true
}

// diskDir is a directory on a filesystem the backend must refuse:
// t.TempDir() unless that is tmpfs (as /tmp is on some CI hosts), else the
// package's own directory. The test is skipped if both are tmpfs.
func diskDir(t testing.TB) string {
	t.Helper()
	wd, _ := os.Getwd()
	for _, d := range []string{t.TempDir(), wd} {
		if m, ok := fsMagic(d); ok && m != tmpfsMagic && m != hugetlbfsMagic {
			return d
		}
	}
	t.Skip("no directory on a filesystem other than tmpfs to put a disk file in")
	return ""
}

// hugetlbfsMount is a hugetlbfs mount at /dev/hugepages, if any.
func hugetlbfsMount() (string, bool) {
	const dir = "/dev/hugepages"
	m, ok := fsMagic(dir)
	return dir, ok && m == hugetlbfsMagic
}

// hugetlbfs returns a hugetlbfs directory with at least two free huge
// pages, and the page size: /dev/hugepages when it is mounted with pages
// free; else, as root (CI), it reserves two pages (hugepages.Reserve) and
// mounts a hugetlbfs of its own in a temporary directory, both undone when
// the test ends, as `hvnet bench vhost` does for OVS-DPDK. Skipped only
// without root, or when the kernel cannot give the pages.
func hugetlbfs(t *testing.T) (string, int64) {
	t.Helper()
	p, err := hugepages.Read()
	if err != nil {
		t.Skipf("the kernel has no huge pages: %v", err)
	}
	page := int64(p.SizeKiB) << 10
	if dir, ok := hugetlbfsMount(); ok && p.Free >= 2 {
		return dir, page
	}
	if os.Geteuid() != 0 {
		t.Skip("no free huge pages, and reserving some needs root")
	}
	_, release, err := hugepages.Reserve(2)
	if err != nil {
		t.Skipf("the kernel cannot give 2 huge pages: %v", err)
	}
	t.Cleanup(release)
	dir := t.TempDir()
	if err := unix.Mount("hugetlbfs", dir, "hugetlbfs", 0, ""); err != nil {
		t.Fatalf("mount hugetlbfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir, page
}

func dup(t testing.TB, fd int) int {
	t.Helper()
	n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Every kind of descriptor a frontend could offer as memory: only regular
// files on tmpfs and hugetlbfs pass, and each refusal names what the
// descriptor is (its filesystem, by name and magic).
func TestCheckMemFD(t *testing.T) {
	const size = 2 << 20 // a huge page
	type tc struct {
		name string
		fd   func(t *testing.T) int
		ok   bool
		want []string // in the error
	}
	cases := []tc{
		{"memfd", func(t *testing.T) int { return memfdOf(t, size, 0) }, true, nil},
		{"dev-shm", func(t *testing.T) int {
			if m, ok := fsMagic("/dev/shm"); !ok || m != tmpfsMagic {
				t.Skip("/dev/shm is not a tmpfs here")
			}
			return fileIn(t, "/dev/shm", size)
		}, true, nil},
		{"memfd-hugetlb", func(t *testing.T) int {
			fd, err := unix.MemfdCreate("backend-test-huge", unix.MFD_CLOEXEC|unix.MFD_HUGETLB)
			if err != nil {
				t.Skipf("memfd_create(MFD_HUGETLB): %v", err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			if err := unix.Ftruncate(fd, size); err != nil {
				t.Skipf("ftruncate hugetlb memfd: %v", err)
			}
			return fd
		}, true, nil},
		{"hugetlbfs-file", func(t *testing.T) int {
			dir, _ := hugetlbfs(t)
			return fileIn(t, dir, size)
		}, true, nil},
		{"disk-file", func(t *testing.T) int { return fileIn(t, diskDir(t), size) }, false,
			[]string{"region at GPA 0x0: fd ", "is a file on ", "filesystem magic 0x", "not on tmpfs", "hugetlbfs"}},
		{"memfd-too-small", func(t *testing.T) int { return memfdOf(t, size-4096, 0) }, false, []string{"do not fit in fd"}},
		{"pipe", func(t *testing.T) int {
			r, w := pipe(t)
			t.Cleanup(func() { unix.Close(r); unix.Close(w) })
			return r
		}, false, []string{"is a pipe (read end), not a file on tmpfs"}},
		{"socket", func(t *testing.T) int {
			p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
			return p[0]
		}, false, []string{"is a socket"}},
		{"eventfd", func(t *testing.T) int {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			return fd
		}, false, []string{"is an eventfd"}},
		{"dev-null", func(t *testing.T) int {
			fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			return fd
		}, false, []string{"is a character device (/dev/null)"}},
		{"directory", func(t *testing.T) int {
			fd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			return fd
		}, false, []string{"is a directory"}},
	}
	if m, ok := fsMagic("/proc/self/status"); ok && m != tmpfsMagic {
		cases = append(cases, tc{"procfs-file", func(t *testing.T) int {
			fd, err := unix.Open("/proc/self/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			return fd
		}, false, []string{"is a file on proc (filesystem magic 0x9fa0)"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fd := c.fd(t)
			err := checkRegionFD(proto.MemRegion{GPA: 0, Size: size}, fd)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var fe *MemFDError
			if isFD := errors.As(err, &fe); isFD == (c.name == "memfd-too-small") {
				t.Errorf("error %v: *MemFDError = %v", err, isFD)
			}
			if c.name == "disk-file" {
				var st unix.Statfs_t
				unix.Fstatfs(fd, &st)
				if fe.Magic != uint32(st.Type) || !strings.Contains(err.Error(), fsName(fe.Magic)) {
					t.Errorf("error %v: want the file's filesystem %#x (%s)", err, uint32(st.Type), fsName(uint32(st.Type)))
				}
			}
		})
	}
}

// A session refuses memory regions and dirty logs on a disk file, through
// every message that maps one, with REPLY_ACK (NACKed, the session goes
// on) and without (the session ends with the error); every refusal is
// counted; memfd and /dev/shm memory is mapped.
func TestMemFDOnDiskRefusedBySession(t *testing.T) {
	const size = 1 << 20
	dir := diskDir(t)
	disk := fileIn(t, dir, size)
	mem := memfdOf(t, 2*size, 0)
	logFD := memfdOf(t, 4096, 0)
	cnt := new(Counters)
	s := newTestSession(t, Config{Counters: cnt, MapBudget: NewMapBudget(1 << 30)})
	c := &scriptConn{msgs: negotiate(allProtocol)}
	table := func(fd int, gpa uint64) *proto.Msg {
		return ackMsg(proto.SetMemTable, proto.EncodeMemTable([]proto.MemRegion{{GPA: gpa, Size: size, UVA: 0x7f00_0000_0000 + gpa}}), dup(t, fd))
	}
	shm := -1
	if m, ok := fsMagic("/dev/shm"); ok && m == tmpfsMagic {
		shm = fileIn(t, "/dev/shm", size)
	}
	c.msgs = append(c.msgs,
		table(disk, 0), // 0: refused
		table(mem, 0),  // 1: mapped
		ackMsg(proto.AddMemReg, proto.EncodeMemReg(proto.MemRegion{GPA: 1 << 30, Size: size, UVA: 0x7f10_0000_0000}), dup(t, disk)), // 2: refused
		ackMsg(proto.SetLogBase, proto.LogDesc{Size: 4096}.Encode(), dup(t, disk)),                                                  // 3: refused
		ackMsg(proto.SetLogBase, proto.LogDesc{Size: 4096}.Encode(), dup(t, logFD)),                                                 // 4: mapped
	)
	if shm >= 0 {
		c.msgs = append(c.msgs, table(shm, 0)) // 5: mapped
	}
	// Without REPLY_ACK asked: the session ends.
	c.msgs = append(c.msgs, &proto.Msg{Header: proto.Header{Request: proto.SetMemTable, Flags: proto.Version, Size: 8 + 32},
		Payload: proto.EncodeMemTable([]proto.MemRegion{{Size: size, UVA: 0x7f00_0000_0000}}), FDs: []int{dup(t, disk)}})
	err := s.Serve(c)
	var fe *MemFDError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "SET_MEM_TABLE") || !strings.Contains(err.Error(), fsName(fe.Magic)) {
		t.Fatalf("Serve = %v; want the SET_MEM_TABLE refused for its filesystem", err)
	}
	t.Logf("session ended: %v", err)
	got := c.acks(3)
	want := []uint64{1, 0, 1, 1, 0}
	if shm >= 0 {
		want = append(want, 0)
	}
	if len(got) != len(want) {
		t.Fatalf("acks %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ack %d = %d, want %d (all: %v)", i, got[i], want[i], got)
		}
	}
	st := cnt.Snapshot()
	if st.RefusedMemFDs != 4 || st.RejectedRequests != 4 || st.RefusedMappings != 0 {
		t.Errorf("counters %+v: want 4 memory descriptors refused, 4 requests rejected", st)
	}
	if n := s.cfg.MapBudget.InUse(); n != 0 {
		t.Errorf("%d bytes still charged after the session", n)
	}
}

// Every limit on what a session maps, one request over it at a time: the
// session's (MaxMapped), the budget's, the log's (the guest memory it
// covers); each refused before anything is mapped, with what was asked and
// the limit, counted; what stays mapped never exceeds a limit, and all of
// it is released when the session ends.
func TestMapLimitsInSession(t *testing.T) {
	const gib = 1 << 30
	mem := memfdOf(t, 1<<46+16*gib, 0) // sparse: costs nothing
	logFD := memfdOf(t, 1<<20, 0)
	budget := NewMapBudget(16 * gib)
	cnt := new(Counters)
	s := newTestSession(t, Config{Counters: cnt, MaxMapped: 8 * gib, MapBudget: budget})
	uva := uint64(0x7f00_0000_0000)
	reg := func(gpa, size uint64) proto.MemRegion { return proto.MemRegion{GPA: gpa, Size: size, UVA: uva + gpa} }
	add := func(gpa, size uint64) *proto.Msg {
		return ackMsg(proto.AddMemReg, proto.EncodeMemReg(reg(gpa, size)), dup(t, mem))
	}
	type step struct {
		msg    *proto.Msg
		ok     bool
		mapped uint64 // the session's mapped bytes after
		scope  string // of the refusal
	}
	steps := []step{
		{add(0, 6*gib), true, 6 * gib, ""},
		{add(8*gib, 6*gib), false, 6 * gib, ScopeSession},                                   // 12 GiB > 8
		{add(8*gib, 1<<46), false, 6 * gib, ScopeSession},                                   // 64 TiB
		{add(8*gib, 2*gib), true, 8 * gib, ""},                                              // exactly the limit
		{add(16*gib, 4096), false, 8 * gib, ScopeSession},                                   // one page past it
		{ackMsg(proto.RemMemReg, proto.EncodeMemReg(reg(8*gib, 2*gib))), true, 6 * gib, ""}, // released
		{ackMsg(proto.SetMemTable, proto.EncodeMemTable([]proto.MemRegion{reg(0, 5*gib), reg(8*gib, 5*gib)}),
			dup(t, mem), dup(t, mem)), false, 6 * gib, ScopeSession}, // 10 GiB > 8
		{ackMsg(proto.SetMemTable, proto.EncodeMemTable([]proto.MemRegion{reg(0, 7*gib)}), dup(t, mem)), true, 7 * gib, ""}, // replaces the 6 GiB
		// The log covers GPA 0..7 GiB: 7 GiB/32 KiB = 224 KiB, plus QEMU's 4 KiB.
		{ackMsg(proto.SetLogBase, proto.LogDesc{Size: 7*gib/32768 + 4096 + 4096}.Encode(), dup(t, logFD)), false, 7 * gib, ScopeLog},
		{ackMsg(proto.SetLogBase, proto.LogDesc{Size: 7*gib/32768 + 4096}.Encode(), dup(t, logFD)), true, 7*gib + 7*gib/32768 + 4096, ""},
	}
	c := &scriptConn{msgs: negotiate(allProtocol)}
	for _, st := range steps {
		c.msgs = append(c.msgs, st.msg)
	}
	var refused uint64
	// Dispatch the messages one at a time, to look at the session between them.
	for _, m := range c.msgs[:3] {
		if err := s.dispatch(c, m); err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range steps {
		before := len(c.replies)
		if err := s.dispatch(c, st.msg); err != nil {
			t.Fatalf("step %d: dispatch = %v", i, err)
		}
		got := c.acks(before)
		if len(got) != 1 || (got[0] == 0) != st.ok {
			t.Fatalf("step %d: acks %v, want ok=%v", i, got, st.ok)
		}
		if !st.ok {
			refused++
		}
		if m := s.mappedBytes(); m != st.mapped {
			t.Errorf("step %d: session maps %d bytes, want %d", i, m, st.mapped)
		}
		if m := s.mappedBytes(); m > s.cfg.MaxMapped || budget.InUse() != m {
			t.Errorf("step %d: session maps %d bytes (limit %d), budget charged %d", i, m, s.cfg.MaxMapped, budget.InUse())
		}
	}
	if st := cnt.Snapshot(); st.RefusedMappings != refused || st.RejectedRequests != refused {
		t.Errorf("counters %+v: want %d mappings and requests refused", st, refused)
	}
	if budget.Peak() > 7*gib+6*gib+gib { // the 7 GiB table while the 6 GiB one was still mapped, and the log
		t.Errorf("budget peaked at %d bytes", budget.Peak())
	}
	s.release()
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still charged after the session", n)
	}
}

// The errors say what was asked and the limit, and which limit.
func TestMapLimitErrors(t *testing.T) {
	const gib = 1 << 30
	mem := memfdOf(t, 8*gib, 0)
	budget := NewMapBudget(4 * gib)
	cnt := new(Counters)
	s := newTestSession(t, Config{Counters: cnt, MaxMapped: 8 * gib, MapBudget: budget})
	c := &scriptConn{}
	for _, m := range negotiate(allProtocol) {
		if err := s.dispatch(c, m); err != nil {
			t.Fatal(err)
		}
	}
	add := func(gpa, size uint64) error {
		m := ackMsg(proto.AddMemReg, proto.EncodeMemReg(proto.MemRegion{GPA: gpa, Size: size, UVA: 0x7f00_0000_0000 + gpa}), dup(t, mem))
		defer proto.CloseFDs(m)
		_, err := s.handle(m)
		return err
	}
	if err := add(0, 3*gib); err != nil {
		t.Fatal(err)
	}
	err := add(4*gib, 3*gib)
	var le *MapLimitError
	if !errors.As(err, &le) || le.Scope != ScopeProcess || le.Asked != 3*gib || le.Limit != 4*gib || le.InUse != 3*gib {
		t.Fatalf("second region: %v (%+v); want the budget's refusal", err, le)
	}
	for _, w := range []string{"region at GPA 0x100000000", "3 GiB", "4 GiB", "budget"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	err = add(4*gib, 6*gib)
	if !errors.As(err, &le) || le.Scope != ScopeSession || !strings.Contains(err.Error(), "8 GiB (MaxMapped)") {
		t.Fatalf("third region: %v; want the session's refusal naming its limit", err)
	}
	if budget.InUse() != 3*gib || budget.Peak() != 3*gib {
		t.Errorf("budget in use %d, peak %d: want 3 GiB (nothing refused was ever charged)", budget.InUse(), budget.Peak())
	}
	s.release()
}

// ADD_MEM_REG and REM_MEM_REG are for a frontend that negotiated
// CONFIGURE_MEM_SLOTS (vhost-user.rst); SET_LOG_BASE needs memory for the
// log to cover.
func TestMemSlotsNeedNegotiation(t *testing.T) {
	mem := memfdOf(t, 1<<20, 0)
	logFD := memfdOf(t, 4096, 0)
	cnt := new(Counters)
	s := newTestSession(t, Config{Counters: cnt, MapBudget: NewMapBudget(1 << 30)})
	r := proto.MemRegion{Size: 1 << 20, UVA: 0x7f00_0000_0000}
	c := &scriptConn{msgs: append(negotiate(1<<proto.PFReplyAck|1<<proto.PFLogSHMFD),
		ackMsg(proto.SetLogBase, proto.LogDesc{Size: 4096}.Encode(), dup(t, logFD)), // no memory yet
		ackMsg(proto.AddMemReg, proto.EncodeMemReg(r), dup(t, mem)),
		ackMsg(proto.SetMemTable, proto.EncodeMemTable([]proto.MemRegion{r}), dup(t, mem)),
		ackMsg(proto.RemMemReg, proto.EncodeMemReg(r)),
	)}
	if err := s.Serve(c); err != nil {
		t.Fatal(err)
	}
	got := c.acks(3)
	if want := []uint64{1, 1, 0, 1}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("acks %v, want %v", got, want)
	}
	if st := cnt.Snapshot(); st.RejectedRequests != 3 || st.RefusedMappings != 0 {
		t.Errorf("counters %+v: want 3 requests rejected", st)
	}
}

func TestMaxLogSize(t *testing.T) {
	for _, c := range []struct{ end, want uint64 }{
		{0, 0},
		{1, 8 + 4096},
		{256 << 10, 8 + 4096},
		{256<<10 + 1, 16 + 4096},
		{1 << 30, 32<<10 + 4096}, // 1 GiB: 32 KiB
		{1 << 40, 32<<20 + 4096}, // 1 TiB: 32 MiB
	} {
		if got := maxLogSize(c.end); got != c.want {
			t.Errorf("maxLogSize(%#x) = %d, want %d", c.end, got, c.want)
		}
	}
}

// Guest memory on hugetlbfs, as DPDK and QEMU with hugepages share it, is
// mapped end to end: a file on the hugetlbfs at /dev/hugepages and a
// MFD_HUGETLB memfd (each skipped where this host cannot give one; the
// filesystem check alone is TestCheckMemFD's).
func TestHugetlbfsMapped(t *testing.T) {
	dir, page := hugetlbfs(t)
	for _, src := range []struct {
		name string
		fd   func(t *testing.T) int
	}{
		{"hugetlbfs-file", func(t *testing.T) int { return fileIn(t, dir, page) }},
		{"memfd-hugetlb", func(t *testing.T) int {
			fd, err := unix.MemfdCreate("backend-test-huge", unix.MFD_CLOEXEC|unix.MFD_HUGETLB)
			if err != nil {
				t.Fatalf("memfd_create(MFD_HUGETLB) with huge pages free: %v", err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			if err := unix.Ftruncate(fd, page); err != nil {
				t.Fatal(err)
			}
			return fd
		}},
	} {
		t.Run(src.name, func(t *testing.T) {
			fd := src.fd(t)
			budget := NewMapBudget(1 << 30)
			cnt := new(Counters)
			s := newTestSession(t, Config{Counters: cnt, MapBudget: budget})
			c := &scriptConn{msgs: append(negotiate(allProtocol),
				ackMsg(proto.SetMemTable, proto.EncodeMemTable([]proto.MemRegion{{Size: uint64(page), UVA: 0x7f00_0000_0000}}), dup(t, fd)))}
			for _, m := range c.msgs {
				if err := s.dispatch(c, m); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.acks(3); len(got) != 1 || got[0] != 0 {
				t.Fatalf("SET_MEM_TABLE on hugetlbfs acked %v: %+v", got, cnt.Snapshot())
			}
			if budget.InUse() != uint64(page) {
				t.Errorf("%d bytes charged, want %d", budget.InUse(), page)
			}
			s.release()
		})
	}
}
