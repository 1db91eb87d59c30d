package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
)

// The real daemon: "hvnet switch" as a child process (in the soak's
// network namespace, like everything else) with its control API and two
// client-mode vhost-user ports, d and e, that connect to frontends the
// soak runs in server mode (they listen). Fault: the process is restarted
// under traffic, alternately by SIGTERM (a clean shutdown that must exit
// 0 within daemonTermBound) and SIGKILL, on the same sockets; the
// frontends see the hang-up, accept the new incarnation's connections and
// carry on.
//
// Accounting per incarnation (generation): the frontends count what each
// generation took (used chains) and delivered; the daemon's counters
// (scraped through the API every daemonScrapeEvery and right before a
// SIGTERM) give its counted drops. What is left is "lost in a dead
// daemon": frames inside the process when it died, at most the two
// transmit rings' worth (2*qSize) per incarnation; the traffic is windowed
// (daemonWindow) so nothing is dropped uncounted between scrapes.
const (
	daemonTermBound   = 10 * time.Second
	daemonScrapeEvery = 100 * time.Millisecond
)

// daemonLog keeps the last 64 KiB a process wrote.
type daemonLog struct {
	mu  sync.Mutex
	buf []byte
}

func (l *daemonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - 64<<10; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

func (l *daemonLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// daemonBuild builds the hvnet binary once per test.
func daemonBuild(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "hvnet")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hvnet/hvnet/cmd/hvnet").CombinedOutput()
	if err != nil {
		t.Fatalf("go build hvnet/cmd/hvnet: %v\n%s", err, out)
	}
	return bin
}

// daemonProc is the restartable hvnet process.
type daemonProc struct {
	bin, apiSock string
	args         []string
	client       *api.Client
	log          daemonLog
	gen          atomic.Int64 // the current incarnation, from 1

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
	werr error

	mu      sync.Mutex
	scrapes map[int]map[string]api.Counters // each incarnation's last scrape
	nScrape int

	terms, kills int
	termMax      time.Duration
}

func newDaemonProc(bin, dir string, ports map[string]string) *daemonProc {
	d := &daemonProc{bin: bin, apiSock: filepath.Join(dir, "api.sock"), scrapes: map[int]map[string]api.Counters{}}
	d.args = []string{"--log-level", "info", "switch", "--api", d.apiSock}
	for _, name := range []string{"d", "e"} {
		d.args = append(d.args, "--port", fmt.Sprintf("name=%s,socket=%s,mode=client", name, ports[name]))
	}
	d.client = api.NewClient(d.apiSock)
	return d
}

// start runs a new incarnation and waits until its API answers.
func (d *daemonProc) start() error {
	d.gen.Add(1)
	d.cmd = exec.Command(d.bin, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	fmt.Fprintf(&d.log, "=== soak: incarnation %d\n", d.gen.Load())
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start hvnet switch: %w", err)
	}
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		d.werr = cmd.Wait()
		close(done)
	}(d.cmd, d.done)
	// A deadlock guard, not a bound on the start: 30 s, for a loaded
	// machine (the loop ends as soon as the API answers).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if d.scrape() == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("hvnet switch exited (%v):\n%s", d.werr, d.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("hvnet switch never served its API:\n%s", d.log.String())
}

// scrape reads the current incarnation's port counters.
func (d *daemonProc) scrape() error {
	gen := int(d.gen.Load())
	// A down incarnation fails at once (no socket); a live one answers in
	// milliseconds, but a loaded machine can hold it for seconds, and a
	// failed scrape before SIGTERM fails the soak.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := d.client.Ports(ctx)
	if err != nil {
		return err
	}
	m := map[string]api.Counters{}
	for _, p := range ps {
		m[p.Name] = p.Counters
	}
	d.mu.Lock()
	d.scrapes[gen] = m
	d.nScrape++
	d.mu.Unlock()
	return nil
}

// scraper scrapes every daemonScrapeEvery until ctx ends (failures are
// expected while an incarnation is down).
func (d *daemonProc) scraper(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(daemonScrapeEvery):
				d.scrape()
			}
		}
	}()
}

// lastScrape returns incarnation gen's last scraped counters.
func (d *daemonProc) lastScrape(gen int) map[string]api.Counters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scrapes[gen]
}

// terminate scrapes the counters, sends SIGTERM and waits: the process
// must exit 0 within daemonTermBound. A hang is reported with the
// goroutine dump (SIGQUIT) and the log.
func (d *daemonProc) terminate() error {
	if err := d.scrape(); err != nil {
		return fmt.Errorf("scrape before SIGTERM: %w\n%s", err, d.log.String())
	}
	t0 := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-d.done:
	case <-time.After(daemonTermBound):
		d.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump to stderr
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		return fmt.Errorf("hvnet switch hung: no exit %v after SIGTERM; goroutines and log:\n%s", daemonTermBound, d.log.String())
	}
	d.terms++
	d.termMax = max(d.termMax, time.Since(t0))
	if d.werr != nil {
		return fmt.Errorf("hvnet switch after SIGTERM: %v (want exit 0):\n%s", d.werr, d.log.String())
	}
	return nil
}

// kill ends the process with SIGKILL.
func (d *daemonProc) kill() {
	d.cmd.Process.Kill()
	<-d.done
	d.kills++
}

// stop ends a still-running process (cleanup).
func (d *daemonProc) stop() {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.done:
	default:
		d.kill()
	}
}

// fds is the current incarnation's open file count.
func (d *daemonProc) fds() int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	return len(es)
}

// daemonWaitLive waits until both ends run a session of generation gen:
// the frontends reconnected to the new incarnation.
func daemonWaitLive(gen int, ends ...*daemonEnd) error {
	for range 1000 { // deadlock guard 10 s
		ok := true
		for _, e := range ends {
			ok = ok && e.live.Load() == int64(gen)
		}
		if ok {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("frontends did not reconnect to incarnation %d in 10 s", gen)
}

// daemonListen listens on a client-mode port's socket.
func daemonListen(sock string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", sock, err)
	}
	return ln, nil
}

// daemonAccount is the daemon path's accounting, per incarnation.
type daemonAccount struct {
	sent, delivered, drops, lost, maxLost, unaccounted uint64
	errs                                               []error
}

// account checks incarnations 1..gens: per incarnation, frames taken
// (sent) = delivered + counted drops (last scrape) + lost in the dead
// daemon, with 0 <= lost <= 2*qSize; a negative gap is chains the daemon
// took from a ring after the frontend's last look (at most what was
// queued there), sent all the same.
func (d *daemonProc) account(gens int, ends ...*daemonEnd) daemonAccount {
	var a daemonAccount
	for gen := 1; gen <= gens; gen++ {
		var s, r, inflight, drops uint64
		for _, e := range ends {
			gc := e.genCounts(gen)
			s, r, inflight = s+gc.sent, r+gc.received, inflight+gc.txInFlight
		}
		for _, c := range d.lastScrape(gen) {
			for _, n := range c.Drops {
				drops += n
			}
		}
		gap := int64(s) - int64(r) - int64(drops)
		switch {
		case gap < -int64(inflight) || gap > 2*qSize:
			a.errs = append(a.errs, fmt.Errorf("daemon incarnation %d: frontends saw %d taken (+%d queued at the end), %d delivered, daemon counted %d drops: gap %d outside [-%d, %d]",
				gen, s, inflight, r, drops, gap, inflight, 2*qSize))
			a.unaccounted += uint64(max(gap, -gap))
		case gap < 0:
			s += uint64(-gap) // taken from a dead ring: sent all the same
		default:
			a.lost += uint64(gap)
			a.maxLost = max(a.maxLost, uint64(gap))
		}
		a.sent, a.delivered, a.drops = a.sent+s, a.delivered+r, a.drops+drops
	}
	return a
}
