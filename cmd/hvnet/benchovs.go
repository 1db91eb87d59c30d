package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/hugepages"
)

// OVS-DPDK as a forwarder of "hvnet bench vhost": Debian's
// openvswitch-switch-dpdk (OVS 3.1, DPDK 22.11), run privately: its own
// ovsdb-server and database in a temporary directory (OVS_RUNDIR,
// OVS_DBDIR, OVS_LOGDIR), a netdev bridge with NORMAL forwarding (MAC
// learning, both ports access VLAN 10 as hvnet's) and two dpdkvhostuser
// ports, OVS being the vhost-user server and the generator's virtio-user
// ports its clients. Its PMD thread busy-polls its core even when idle, so
// ovs-vswitchd runs only while it is measured: started before, stopped
// after (the database and bridge configuration stay between runs).
// PLATFORM.md ("OVS-DPDK 3.1") has the same steps as shell commands.

const (
	ovsVswitchdDPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
	ovsSchema       = "/usr/share/openvswitch/vswitch.ovsschema"
	// ovsSocketMem is dpdk-socket-mem (MiB); ovsHugeMiB is what the
	// benchmark makes sure is free in hugepages: 600 2 MiB pages, the
	// socket memory and some room.
	ovsSocketMem = 1024
	ovsHugeMiB   = 1200
	ovsBridge    = "br0"
)

// errOVSMissing says OVS-DPDK is not installed: the benchmark then
// measures the other forwarders and says so.
var errOVSMissing = errors.New("OVS-DPDK is not installed (apt-get install openvswitch-switch-dpdk)")

// ovsTool finds an OVS program: on PATH, else where Debian installs it
// (/usr/sbin is not on every user's PATH).
func ovsTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no %s", errOVSMissing, name)
}

// ovsInstalled reports errOVSMissing (wrapped) when a program or the
// schema OVS-DPDK needs is absent.
func ovsInstalled() error {
	for _, f := range []string{ovsVswitchdDPDK, ovsSchema} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w: no %s", errOVSMissing, f)
		}
	}
	for _, t := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vsctl"} {
		if _, err := ovsTool(t); err != nil {
			return err
		}
	}
	return nil
}

// ovsCanRun says why OVS-DPDK cannot run here, or nil: not installed, or
// hugepages missing and no root to set them up.
func ovsCanRun() error {
	if err := ovsInstalled(); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return nil
	}
	h, err := hugepages.Read()
	if err != nil {
		return err
	}
	if h.Free*h.SizeKiB < ovsHugeMiB<<10 || !hugepages.Mounted() {
		return errHugeNotRoot(h)
	}
	return nil
}

func errHugeNotRoot(h hugepages.Pool) error {
	return fmt.Errorf("OVS-DPDK needs %d MiB of free hugepages on a mounted hugetlbfs (have %d free %d KiB pages, hugetlbfs mounted: %v) and this is not root: as root, echo %d > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages; or pass --skip-ovs",
		ovsHugeMiB, h.Free, h.SizeKiB, hugepages.Mounted(), ovsHugeMiB<<10/max(h.SizeKiB, 1))
}

// ensureHugepages makes ovsHugeMiB of default-size hugepages free and a
// hugetlbfs mounted, as root, and returns a function undoing what it
// changed (the pool size it raised, the mount it made). OVS-DPDK cannot
// run without them: ovs-vswitchd always passes --in-memory to DPDK's EAL,
// which refuses it together with --no-huge.
func ensureHugepages(log io.Writer) (restore func(), err error) {
	var undo []func()
	restore = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	h, err := hugepages.Read()
	if err != nil {
		return nil, err
	}
	need := (ovsHugeMiB<<10 + h.SizeKiB - 1) / h.SizeKiB
	root := os.Geteuid() == 0
	if h.Free < need {
		if !root {
			return nil, errHugeNotRoot(h)
		}
		added, release, err := hugepages.Reserve(need)
		if err != nil {
			return nil, err
		}
		undo = append(undo, release)
		fmt.Fprintf(log, "hugepages: %d more (%d KiB each), given back at the end\n", added, h.SizeKiB)
	}
	if !hugepages.Mounted() {
		if !root {
			restore()
			return nil, errHugeNotRoot(h)
		}
		const dir = "/dev/hugepages"
		made := false
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				restore()
				return nil, fmt.Errorf("mounting hugetlbfs: %w", err)
			}
			made = true
		}
		if err := unix.Mount("nodev", dir, "hugetlbfs", 0, ""); err != nil {
			if made {
				os.Remove(dir)
			}
			restore()
			return nil, fmt.Errorf("mounting hugetlbfs on %s: %w", dir, err)
		}
		undo = append(undo, func() {
			unix.Unmount(dir, 0)
			if made {
				os.Remove(dir)
			}
		})
		fmt.Fprintf(log, "hugetlbfs mounted on %s, unmounted at the end\n", dir)
	}
	return restore, nil
}

// ovsDPDK is a private OVS-DPDK: ovsdb-server running for the whole
// benchmark, ovs-vswitchd only while measured.
type ovsDPDK struct {
	dir  string
	env  []string
	core int
	log  io.Writer
	db   *child
	sw   *child
	undo func() // the hugepage changes, undone by Close
}

// startOVS creates the database and the bridge, and starts ovsdb-server.
func startOVS(core int, log io.Writer) (_ *ovsDPDK, err error) {
	if err := ovsInstalled(); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	dir, err := os.MkdirTemp("", "hvnet-bench-ovs-")
	if err != nil {
		return nil, err
	}
	x := &ovsDPDK{dir: dir, core: core, log: log,
		env: append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_DBDIR="+dir, "OVS_LOGDIR="+dir)}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	if err := x.run("ovsdb-tool", "create", x.path("conf.db"), ovsSchema); err != nil {
		return nil, err
	}
	db, err := ovsTool("ovsdb-server")
	if err != nil {
		return nil, err
	}
	c := x.command(db, x.path("conf.db"), "--remote=punix:"+x.path("db.sock"),
		"--pidfile="+x.path("ovsdb-server.pid"), "--unixctl="+x.path("ovsdb-server.ctl"),
		"--log-file="+x.path("ovsdb-server.log"), "-vconsole:off")
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("starting ovsdb-server: %w", err)
	}
	x.db = watch(c)
	if err := x.waitFiles(x.db, 30*time.Second, "db.sock"); err != nil {
		return nil, fmt.Errorf("ovsdb-server: %w", err)
	}
	mask := fmt.Sprintf("%#x", uint64(1)<<core)
	// dpdk-extra=--no-pci: no NIC is used, and probing PCI needs
	// devices bound to a DPDK driver. Both masks on the forwarding core:
	// the PMD polls there, and the lcore mask keeps DPDK's main lcore
	// off the generator's core.
	if err := x.vsctl("--no-wait", "init", "--", "set", "Open_vSwitch", ".",
		"other_config:dpdk-init=true", "other_config:dpdk-extra=--no-pci",
		"other_config:dpdk-socket-mem="+strconv.Itoa(ovsSocketMem),
		"other_config:dpdk-lcore-mask="+mask, "other_config:pmd-cpu-mask="+mask); err != nil {
		return nil, err
	}
	// NORMAL is the default flow of a new bridge: MAC learning and
	// flooding, as hvnet's switch. dpdkvhostuser: OVS is the vhost-user
	// server, its socket OVS_RUNDIR/<port>.
	args := []string{"--no-wait", "add-br", ovsBridge, "--", "set", "bridge", ovsBridge, "datapath_type=netdev"}
	for _, p := range []string{"a", "b"} {
		args = append(args, "--", "add-port", ovsBridge, p, "tag=10", "--", "set", "Interface", p, "type=dpdkvhostuser")
	}
	if err := x.vsctl(args...); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *ovsDPDK) path(name string) string { return filepath.Join(x.dir, name) }

// Sockets are the vhost-user sockets of ports a and b.
func (x *ovsDPDK) Sockets() (string, string) { return x.path("a"), x.path("b") }

// command is an OVS program run in the foreground as a child that dies
// with this process (Pdeathsig: a benchmark killed midway must not leave
// a PMD spinning on a shared core).
func (x *ovsDPDK) command(bin string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = x.env
	c.Stdout, c.Stderr = x.log, x.log
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return c
}

func (x *ovsDPDK) run(tool string, args ...string) error {
	bin, err := ovsTool(tool)
	if err != nil {
		return err
	}
	c := exec.Command(bin, args...)
	c.Env = x.env
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (x *ovsDPDK) vsctl(args ...string) error {
	return x.run("ovs-vsctl", append([]string{"--db=unix:" + x.path("db.sock"), "--timeout=30"}, args...)...)
}

// waitFiles waits until the files exist in the run directory, failing
// early if c exits.
func (x *ovsDPDK) waitFiles(c *child, timeout time.Duration, names ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		missing := ""
		for _, n := range names {
			if _, err := os.Stat(x.path(n)); err != nil {
				missing = n
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("exited (%v) before creating %s", c.cmd.ProcessState, missing)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %v", missing, timeout)
		}
	}
}

// StartSwitch starts ovs-vswitchd-dpdk pinned to the forwarding core
// (every thread: the PMD, and the handlers and revalidators that learn
// MACs) and waits for its vhost-user sockets.
func (x *ovsDPDK) StartSwitch() error {
	if x.sw != nil {
		return errors.New("ovs-vswitchd already running")
	}
	a, b := x.Sockets()
	os.Remove(a) // a previous ovs-vswitchd's, if it did not unlink them
	os.Remove(b)
	c := x.command(ovsVswitchdDPDK, "unix:"+x.path("db.sock"), "--pidfile="+x.path("ovs-vswitchd.pid"),
		"--unixctl="+x.path("ovs-vswitchd.ctl"), "--log-file="+x.path("ovs-vswitchd.log"), "-vconsole:off")
	if err := startPinned(c, x.core); err != nil {
		return fmt.Errorf("starting ovs-vswitchd-dpdk: %w", err)
	}
	x.sw = watch(c)
	// DPDK's EAL maps the socket memory first: seconds on a busy host.
	if err := x.waitFiles(x.sw, 120*time.Second, "a", "b"); err != nil {
		x.StopSwitch()
		return fmt.Errorf("ovs-vswitchd-dpdk: %w; log:\n%s", err, x.logTail("ovs-vswitchd.log", 15))
	}
	return nil
}

// StopSwitch stops ovs-vswitchd (SIGTERM: it removes its sockets and
// pidfile; SIGKILL after 10 s).
func (x *ovsDPDK) StopSwitch() {
	if x.sw == nil {
		return
	}
	x.sw.stop(10 * time.Second)
	x.sw = nil
}

// Pid is ovs-vswitchd's process id (0 when it is not running).
func (x *ovsDPDK) Pid() int {
	if x.sw == nil {
		return 0
	}
	return x.sw.cmd.Process.Pid
}

// Close stops both daemons and removes the run directory.
func (x *ovsDPDK) Close() {
	x.StopSwitch()
	if x.db != nil {
		x.db.stop(10 * time.Second)
		x.db = nil
	}
	os.RemoveAll(x.dir)
	if x.undo != nil {
		x.undo()
		x.undo = nil
	}
}

// Stats returns OVS's own view of the last run (PMD statistics), for -v.
func (x *ovsDPDK) Stats() string {
	bin, err := ovsTool("ovs-appctl")
	if err != nil || x.sw == nil {
		return ""
	}
	c := exec.Command(bin, "-t", x.path("ovs-vswitchd.ctl"), "dpif-netdev/pmd-stats-show")
	c.Env = x.env
	out, _ := c.CombinedOutput()
	return string(out)
}

// ovsCyclesPerPacket reads the first PMD thread's "avg processing cycles
// per packet" from pmd-stats-show output (0 if absent).
func ovsCyclesPerPacket(stats string) float64 {
	for _, l := range strings.Split(stats, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "avg processing cycles per packet:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				c, _ := strconv.ParseFloat(f[0], 64)
				return c
			}
		}
	}
	return 0
}

func (x *ovsDPDK) logTail(name string, n int) string {
	b, _ := os.ReadFile(x.path(name))
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// child is a started OVS daemon; done is closed when it has exited (and
// been reaped).
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func watch(c *exec.Cmd) *child {
	ch := &child{cmd: c, done: make(chan struct{})}
	go func() { c.Wait(); close(ch.done) }()
	return ch
}

// stop sends SIGTERM, waits up to timeout, then kills.
func (c *child) stop(timeout time.Duration) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// startPinned starts c with its affinity set to core: the child inherits
// the affinity of the thread that forks it, so this goroutine's thread is
// pinned for the fork and restored after.
func startPinned(c *exec.Cmd, core int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return err
	}
	set.Set(core)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning to core %d: %w", core, err)
	}
	defer unix.SchedSetaffinity(0, &old)
	return c.Start()
}
