package vhost

import (
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/lines"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost/backend"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// The memory a frontend makes the daemon map: only tmpfs and hugetlbfs
// files (a file on FUSE or NFS could block a page fault forever and, with
// it, every garbage collection of the daemon), and never more than the
// session's and the process's limits (a sparse memfd can claim the whole
// address space); and the log lines a frontend can make the daemon write.
// White-box checks of each refusal are vhost/backend/mem_test.go's.

const gib = 1 << 30

// ackReq sends req asking for a REPLY_ACK and returns the status (0 ok;
// SET_LOG_BASE's reply, which has no payload, counts as 0).
func ackReq(f *frontend.Frontend, req proto.Request, payload []byte, fds ...int) (uint64, error) {
	c := f.Conn()
	if err := c.WriteMsg(req, proto.Version|proto.FlagNeedReply, payload, fds...); err != nil {
		return 0, err
	}
	m, err := c.ReadMsg()
	if err != nil {
		return 0, fmt.Errorf("%v: reading reply: %w", req, err)
	}
	proto.CloseFDs(m)
	if m.Request != req || !m.IsReply() {
		return 0, fmt.Errorf("%v: got %v in reply", req, m.Request)
	}
	if len(m.Payload) == 0 {
		return 0, nil
	}
	return proto.U64(m.Payload), nil
}

// memFrontend dials sock and negotiates what a memory attack needs:
// REPLY_ACK, LOG_SHMFD and CONFIGURE_MEM_SLOTS.
func memFrontend(sock string) (*frontend.Frontend, error) {
	f, err := frontend.Dial(sock)
	if err != nil {
		return nil, err
	}
	for _, step := range []func() error{
		func() error {
			return f.SetProtocolFeatures(1<<proto.PFReplyAck | 1<<proto.PFLogSHMFD | 1<<proto.PFConfigureMemSlots)
		},
		func() error { return f.SetFeatures(virtio.Feature(virtio.FVersion1) | 1<<proto.FProtocolFeatures) },
		f.SetOwner,
	} {
		if err := step(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func tableOf(r proto.MemRegion) []byte { return proto.EncodeMemTable([]proto.MemRegion{r}) }

// sparseMemfd is a memfd of size bytes that costs nothing until touched.
func sparseMemfd(t testing.TB, size int64) int {
	t.Helper()
	fd, err := unix.MemfdCreate("vhost-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	return fd
}

// diskFile is a file of size bytes on a filesystem other than tmpfs and
// hugetlbfs: in t.TempDir() unless /tmp is a tmpfs there (on some CI
// hosts), else in the package's directory; skipped if neither will do.
func diskFile(t testing.TB, size int64) int {
	t.Helper()
	wd, _ := os.Getwd()
	for _, dir := range []string{t.TempDir(), wd} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) != nil || uint32(st.Type) == unix.TMPFS_MAGIC || uint32(st.Type) == unix.HUGETLBFS_MAGIC {
			continue
		}
		f, err := os.CreateTemp(dir, ".hvnet-disk-memory-*")
		if err != nil {
			continue
		}
		t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		return int(f.Fd())
	}
	t.Skip("no directory on a filesystem other than tmpfs for a disk file")
	return -1
}

// vaMapped is the address space this process maps (/proc/self/maps; 0
// if unreadable).
func vaMapped() uint64 {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0
	}
	var n uint64
	for _, l := range strings.Split(string(b), "\n") {
		r, _, _ := strings.Cut(l, " ")
		lo, hi, ok := strings.Cut(r, "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil {
			n += e - a
		}
	}
	return n
}

// vaSlack is what the rest of the test process may map meanwhile (heap,
// stacks, the race detector's bookkeeping).
const vaSlack = 512 << 20

// forwards checks that a fresh guest on sockFrom reaches a fresh guest on
// sockTo.
func forwards(t *testing.T, sockFrom, sockTo string) {
	t.Helper()
	from, to := dialGuest(t, sockFrom), dialGuest(t, sockTo)
	from.mustNegotiate()
	to.mustNegotiate()
	to.postRx(1)
	fr := ethFrame(0xff, 0x42, 1)
	from.send(fr)
	if got := to.recv(1); !bytes.Equal(got[0], fr) {
		t.Fatalf("got % x, want % x", got[0], fr)
	}
	from.close()
	to.close()
}

// Frontends on four ports at once offer memory regions and dirty logs in
// a file on a disk filesystem through every message that maps memory,
// while two other ports forward: every one is refused, NACKed or ending
// the session with an error naming the filesystem, and counted on the
// port; memfd memory is still mapped; the other ports never stop; each
// attacked port serves a well-behaved frontend afterwards.
func TestMemFDOnDiskRefused(t *testing.T) {
	const attackers, rounds, size = 4, 20, 2 << 20
	disk := diskFile(t, size)
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	a, b := dialGuest(t, sockA), dialGuest(t, sockB)
	a.mustNegotiate()
	b.mustNegotiate()

	var log lines.Buffer
	ports := make([]*Port, attackers)
	evs := make([]*events, attackers)
	socks := make([]string, attackers)
	dir := t.TempDir()
	for i := range ports {
		name := fmt.Sprintf("x%d", i)
		socks[i] = filepath.Join(dir, name+".sock")
		cfg := PortConfig{Port: vswitch.PortConfig{Name: name, PVID: 1}, Socket: socks[i],
			Logger: hclog.New(&hclog.LoggerOptions{Name: name, Output: &log, Level: hclog.Error})}
		evs[i] = newEvents()
		evs[i].hook(&cfg)
		ports[i] = startPort(t, sw, cfg)
	}
	errs := make(chan error, attackers)
	var wg sync.WaitGroup
	for i := range attackers {
		mem := sparseMemfd(t, size)
		wg.Go(func() {
			errs <- func() error {
				f, err := memFrontend(socks[i])
				if err != nil {
					return err
				}
				defer f.Close()
				uva := uint64(0x7f00_0000_0000)
				for r := range rounds {
					for _, x := range []struct {
						req     proto.Request
						payload []byte
						fd      int
						want    uint64
					}{
						{proto.SetMemTable, tableOf(proto.MemRegion{Size: size, UVA: uva}), disk, 1},
						{proto.SetMemTable, tableOf(proto.MemRegion{Size: size, UVA: uva}), mem, 0},
						{proto.AddMemReg, proto.EncodeMemReg(proto.MemRegion{GPA: 1 << 30, Size: size, UVA: uva + 1<<30}), disk, 1},
						{proto.SetLogBase, proto.LogDesc{Size: 4096}.Encode(), disk, 1},
						{proto.SetLogBase, proto.LogDesc{Size: 4096}.Encode(), mem, 0},
					} {
						st, err := ackReq(f, x.req, x.payload, x.fd)
						if err != nil {
							return fmt.Errorf("attacker %d round %d: %w", i, r, err)
						}
						if st != x.want {
							return fmt.Errorf("attacker %d round %d: %v acked %d, want %d", i, r, x.req, st, x.want)
						}
					}
				}
				// Without REPLY_ACK the refusal ends the session.
				if err := f.Conn().WriteMsg(proto.SetMemTable, proto.Version, tableOf(proto.MemRegion{Size: size, UVA: uva}), disk); err != nil {
					return err
				}
				if _, err := f.GetFeatures(); err == nil {
					return fmt.Errorf("attacker %d: session still served after a disk-file memory table", i)
				}
				return nil
			}()
		})
	}
	// The other ports forward all along.
	for i := range 50 {
		b.postRx(1)
		fr := ethFrame(0xff, 1, byte(i))
		a.send(fr)
		if got := b.recv(1); !bytes.Equal(got[0], fr) {
			t.Fatalf("frame %d: got % x", i, got[0])
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i, p := range ports {
		waitFor(t, evs[i].down, "the attacker's session to end")
		st := p.NotifyStats()
		if want := uint64(3*rounds + 1); st.RefusedMemFDs != want || st.RejectedRequests != want || st.RefusedMappings != 0 {
			t.Errorf("port %s: counters %+v: want %d memory descriptors refused, as many requests rejected", p.Name(), st, want)
		}
	}
	out := log.String()
	for _, w := range []string{"closing vhost-user connection", "SET_MEM_TABLE", "is a file on ", "filesystem magic 0x",
		"not on tmpfs (a memfd, /dev/shm) or hugetlbfs"} {
		if !strings.Contains(out, w) {
			t.Errorf("the ports' log does not say %q:\n%s", w, out)
		}
	}
	a.close()
	b.close()
	forwards(t, socks[0], sockB)
}

// The audit's attack: a sparse memfd of 64 TiB and ADD_MEM_REG with
// REPLY_ACK, from 64 TiB down by halves to 1 GiB, as long as slots
// remain. With the default limits the first region that fits
// DefaultMaxMapped is mapped and every other is refused (the second huge
// region, and every smaller one, would pass it); the address space taken
// stays below the limit, is given back when the session ends, and the
// port then serves a well-behaved frontend.
func TestHugeRegionsRefused(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	p, sock := testPort(t, sw, "x", 1)
	_, sockB := testPort(t, sw, "b", 1)
	mem := sparseMemfd(t, 1<<46)
	budgetBefore := backend.DefaultMapBudget.InUse()
	va0 := vaMapped()
	f, err := memFrontend(sock)
	if err != nil {
		t.Fatal(err)
	}
	var accepted, refused, total uint64
	gpa := uint64(0)
	for size := uint64(1 << 46); size >= gib && accepted < backend.MaxMemSlots; size /= 2 {
		st, err := ackReq(f, proto.AddMemReg, proto.EncodeMemReg(proto.MemRegion{GPA: gpa, Size: size, UVA: 0x1000_0000_0000 + gpa}), mem)
		if err != nil {
			t.Fatal(err)
		}
		if st != 0 {
			refused++
			continue
		}
		accepted++
		total += size
		gpa += size
	}
	va := vaMapped()
	t.Logf("%d regions mapped (%d GiB), %d refused; address space %d GiB -> %d GiB", accepted, total/gib, refused, va0/gib, va/gib)
	if total > backend.DefaultMaxMapped || accepted != 1 || refused != 16 {
		t.Errorf("%d regions of %d bytes in all mapped, %d refused: want one of at most %d, 16 refused",
			accepted, total, refused, backend.DefaultMaxMapped)
	}
	if va > va0+backend.DefaultMaxMapped+vaSlack {
		t.Errorf("address space grew by %d bytes, more than the session's limit of %d", va-va0, backend.DefaultMaxMapped)
	}
	if st := p.NotifyStats(); st.RefusedMappings != refused || st.RejectedRequests != refused {
		t.Errorf("counters %+v: want %d mappings and requests refused", st, refused)
	}
	f.Close()
	g := dialGuest(t, sock) // served once the attacker's session has ended
	g.mustNegotiate()
	if n := backend.DefaultMapBudget.InUse(); n > budgetBefore+guestSize+4096 { // the guest's memory
		t.Errorf("%d bytes charged to the process after the attacker left (%d before)", n, budgetBefore)
	}
	if va := vaMapped(); va > va0+vaSlack {
		t.Errorf("address space %d bytes above where it was after the attacker left", va-va0)
	}
	g.close()
	forwards(t, sock, sockB)
}

// Six sessions on six ports share a MapBudget of 3 GiB, each allowed
// 2 GiB: in each round all of them ask for two 1 GiB regions at once.
// Exactly 3 GiB is mapped, the rest refused and counted; a watcher finds
// the address space never more than the budget above where it was; what
// is removed or left at session end is given back; a well-behaved
// frontend is served afterwards.
func TestMapBudgetAcrossSessions(t *testing.T) {
	const sessions, rounds = 6, 4
	budget := backend.NewMapBudget(3 * gib)
	sw := vswitch.New(vswitch.Config{})
	dir := t.TempDir()
	ports := make([]*Port, sessions)
	socks := make([]string, sessions)
	evs := make([]*events, sessions)
	for i := range ports {
		name := fmt.Sprintf("s%d", i)
		socks[i] = filepath.Join(dir, name+".sock")
		cfg := PortConfig{Port: vswitch.PortConfig{Name: name, PVID: 1}, Socket: socks[i], MaxMapped: 2 * gib, MapBudget: budget}
		evs[i] = newEvents()
		evs[i].hook(&cfg)
		ports[i] = startPort(t, sw, cfg)
	}
	fs := make([]*frontend.Frontend, sessions)
	mems := make([]int, sessions)
	for i := range fs {
		f, err := memFrontend(socks[i])
		if err != nil {
			t.Fatal(err)
		}
		fs[i], mems[i] = f, sparseMemfd(t, 2*gib)
	}
	va0 := vaMapped()
	if va0 == 0 {
		t.Fatal("cannot read /proc/self/maps")
	}
	var maxVA atomic.Uint64
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Go(func() {
		for {
			if v := vaMapped(); v > va0 && v-va0 > maxVA.Load() {
				maxVA.Store(v - va0)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond): // pacing, not a deadline
			}
		}
	})
	region := func(i int) proto.MemRegion {
		return proto.MemRegion{GPA: uint64(i) * gib, Size: gib, UVA: 0x1000_0000_0000 + uint64(i)*gib, MmapOffset: uint64(i) * gib}
	}
	// each runs fn for every session at once and reports the errors.
	each := func(fn func(i int) error) {
		var wg sync.WaitGroup
		errs := make([]error, sessions)
		for i := range sessions {
			wg.Go(func() { errs[i] = fn(i) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var nacks atomic.Uint64
	held := make([][]int, sessions)
	for round := range rounds {
		each(func(i int) error {
			for r := range 2 {
				st, err := ackReq(fs[i], proto.AddMemReg, proto.EncodeMemReg(region(r)), mems[i])
				if err != nil {
					return err
				}
				if st == 0 {
					held[i] = append(held[i], r)
				} else {
					nacks.Add(1)
				}
			}
			return nil
		})
		var n int
		for i := range held {
			n += len(held[i])
		}
		if n != 3 || budget.InUse() != 3*gib {
			t.Fatalf("round %d: %d regions of 1 GiB mapped, %d bytes charged: want 3, 3 GiB", round, n, budget.InUse())
		}
		if round == rounds-1 {
			break // leave them mapped: ending the sessions must unmap them
		}
		each(func(i int) error {
			for _, r := range held[i] {
				if st, err := ackReq(fs[i], proto.RemMemReg, proto.EncodeMemReg(region(r))); err != nil || st != 0 {
					return fmt.Errorf("session %d: REM_MEM_REG: %d, %v", i, st, err)
				}
			}
			held[i] = nil
			return nil
		})
		if n := budget.InUse(); n != 0 {
			t.Fatalf("round %d: %d bytes charged after every region was removed", round, n)
		}
	}
	for i, f := range fs {
		f.Close()
		waitFor(t, evs[i].down, "a session to end")
	}
	close(stop)
	watcher.Wait()
	t.Logf("address space peaked %d MiB above its start; budget peak %d MiB", maxVA.Load()>>20, budget.Peak()>>20)
	if m := maxVA.Load(); m > budget.Max()+vaSlack {
		t.Errorf("address space grew by %d bytes, more than the budget of %d", m, budget.Max())
	}
	if budget.Peak() > budget.Max() || budget.InUse() != 0 {
		t.Errorf("budget peak %d (max %d), %d still charged after every session ended", budget.Peak(), budget.Max(), budget.InUse())
	}
	var refused uint64
	for _, p := range ports {
		refused += p.NotifyStats().RefusedMappings
	}
	if want := uint64(rounds * (2*sessions - 3)); nacks.Load() != want || refused != want {
		t.Errorf("%d NACKs, %d refusals counted: want %d", nacks.Load(), refused, want)
	}
	forwards(t, socks[0], socks[1])
}

// countLines counts the lines of out that contain s.
func countLines(out, s string) int {
	var n int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// maxSparse is how many of n occurrences sparse logging writes: those
// numbered 1, 2, 4, ... n.
func maxSparse(n int) int { return bits.Len(uint(n)) }

// Frontends on four ports at once send thousands of invalid requests with
// REPLY_ACK, and of NET_SET_MTU; then one reconnects over and over, half
// of its sessions ending with an error. Each port counts every rejected
// request, and the log gets O(log n) lines of each kind of refusal, the
// first ones with the error's text, and a line a second of the sessions'
// attach, detach and error lines.
func TestRejectedRequestsLoggedSparsely(t *testing.T) {
	const ports, n, mtus, reconnects = 4, 2000, 300, 64
	var log lines.Buffer
	sw := vswitch.New(vswitch.Config{})
	dir := t.TempDir()
	ps := make([]*Port, ports)
	socks := make([]string, ports)
	var ev *events
	for i := range ps {
		name := fmt.Sprintf("r%d", i)
		socks[i] = filepath.Join(dir, name+".sock")
		cfg := PortConfig{Port: vswitch.PortConfig{Name: name, PVID: 1}, Socket: socks[i],
			Logger: hclog.New(&hclog.LoggerOptions{Name: name, Output: &log, Level: hclog.Info})}
		if i == 0 {
			ev = newEvents()
			ev.hook(&cfg)
		}
		ps[i] = startPort(t, sw, cfg)
	}
	var wg sync.WaitGroup
	errs := make([]error, ports)
	for i := range ports {
		wg.Go(func() {
			errs[i] = func() error {
				f, err := memFrontend(socks[i])
				if err != nil {
					return err
				}
				defer f.Close()
				for range n {
					if err := f.SetVringNum(0, 3); err == nil {
						return fmt.Errorf("port %d: ring size 3 accepted", i)
					}
				}
				for range mtus {
					if st, err := ackReq(f, proto.NetSetMTU, proto.PutU64(1500)); err != nil || st != 0 {
						return fmt.Errorf("port %d: NET_SET_MTU: %d, %v", i, st, err)
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ps {
		if st := p.NotifyStats(); st.RejectedRequests != n {
			t.Errorf("port %s: %d requests rejected, want %d", p.Name(), st.RejectedRequests, n)
		}
	}
	waitFor(t, ev.down, "the first session to end")
	// Port r0: sessions 2..reconnects+1, every other one ending with a
	// protocol error.
	start := time.Now()
	for i := range reconnects {
		f, err := frontend.Dial(socks[0])
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			f.Conn().WriteMsg(proto.Request(99), proto.Version, nil)
		}
		f.GetFeatures() // served (or refused: the error ended it)
		f.Close()
		waitFor(t, ev.down, "a session to end")
	}
	out := log.String()
	// The session lines: a line a second of each kind and port (the
	// first of each port, then at most one a second of r0's loop).
	perSecond := 2 + int(time.Since(start)/time.Second)
	for _, c := range []struct {
		what string
		max  int
	}{
		{"request failed, reported by REPLY_ACK", ports * maxSparse(n)},
		{"frontend set MTU", ports * maxSparse(mtus)},
		{"frontend attached", ports - 1 + perSecond},
		{"frontend detached", ports - 1 + perSecond},
		{"closing vhost-user connection", perSecond},
	} {
		got := countLines(out, c.what)
		t.Logf("%q: %d lines", c.what, got)
		if got == 0 || got > c.max {
			t.Errorf("%d lines %q, want 1..%d", got, c.what, c.max)
		}
	}
	for _, w := range []string{"size 3 is not a power of two", "rejected=1\n", "rejected=1024\n", "unknown request"} {
		if !strings.Contains(out, w) {
			t.Errorf("the log does not say %q", w)
		}
	}
	if strings.Contains(out, "rejected=1000\n") {
		t.Errorf("the 1000th rejected request was logged")
	}
	if total := strings.Count(out, "\n"); total > 200 {
		t.Errorf("%d log lines for %d rejected requests", total, ports*n)
	}
}
