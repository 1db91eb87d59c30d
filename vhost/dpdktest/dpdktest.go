// Package dpdktest drives DPDK's dpdk-testpmd as a peer of hvnet's
// vhost-user ports: as a frontend (net_virtio_user vdevs) or as a
// reference backend (net_vhost vdevs). It runs testpmd interactively (-i)
// with unbuffered output, sends commands on its stdin and parses its port
// statistics. The tests and "hvnet bench vhost" use it.
//
// PLATFORM.md: no hugepages here, so every instance runs with --no-huge
// -m 512 --no-pci, a unique --file-prefix and --total-num-mbufs=32768.
package dpdktest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Options configures one testpmd process.
type Options struct {
	// Cores are the lcores: the first is the main lcore, the others
	// forward. At least two.
	Cores []int
	// Vdevs are --vdev arguments, e.g.
	// "net_virtio_user0,path=/run/a.sock,queues=1,queue_size=1024".
	Vdevs []string
	// Args are testpmd's own flags (after "--"), e.g. "--forward-mode=txonly".
	Args []string
	// Log receives everything testpmd prints (may be nil).
	Log io.Writer
}

// Testpmd is a running dpdk-testpmd.
type Testpmd struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	log   io.Writer
	done  chan struct{}
}

var seq atomic.Uint64

// Start starts testpmd. It does not wait for its ports (see WaitReady):
// a testpmd whose virtio-user ports listen (server=1) waits for hvnet first.
func Start(o Options) (*Testpmd, error) {
	bin, err := exec.LookPath("dpdk-testpmd")
	if err != nil {
		return nil, fmt.Errorf("dpdk-testpmd not installed (apt-get install --no-install-recommends dpdk-dev librte-net-vhost23 librte-net-virtio23 librte-mempool-ring23): %w", err)
	}
	if len(o.Cores) < 2 {
		return nil, errors.New("dpdktest: want a main lcore and at least one forwarding lcore")
	}
	cores := make([]string, len(o.Cores))
	for i, c := range o.Cores {
		cores[i] = strconv.Itoa(c)
	}
	args := []string{"-o0", bin, "-l", strings.Join(cores, ","), "--main-lcore", cores[0],
		"--no-huge", "-m", "512", "--no-pci", "--log-level", "*:notice",
		"--file-prefix", fmt.Sprintf("hvnet-%d-%d", os.Getpid(), seq.Add(1))}
	for _, v := range o.Vdevs {
		args = append(args, "--vdev", v)
	}
	args = append(args, "--", "-i", "--total-num-mbufs=32768")
	args = append(args, o.Args...)
	// stdbuf: testpmd's stdout is a pipe; unbuffered, its prompt and
	// counters arrive as they are printed.
	p := &Testpmd{cmd: exec.Command("stdbuf", args...), lines: make(chan string, 4096), log: o.Log, done: make(chan struct{})}
	if p.log == nil {
		p.log = io.Discard
	}
	p.stdin, _ = p.cmd.StdinPipe()
	out, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting dpdk-testpmd: %w", err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			case <-p.done:
				return
			}
		}
	}()
	return p, nil
}

// Expect reads output until a line contains s.
func (p *Testpmd) Expect(s string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("dpdk-testpmd exited while waiting for %q", s)
			}
			fmt.Fprintln(p.log, l)
			if strings.Contains(l, s) {
				return l, nil
			}
		case <-deadline:
			return "", fmt.Errorf("dpdk-testpmd: no %q in %v", s, timeout)
		}
	}
}

// WaitReady waits until testpmd has started its ports.
func (p *Testpmd) WaitReady(timeout time.Duration) error {
	_, err := p.Expect("Checking link statuses", timeout)
	return err
}

// Pid is testpmd's process id.
func (p *Testpmd) Pid() int { return p.cmd.Process.Pid }

// Cmd sends an interactive command.
func (p *Testpmd) Cmd(c string) { fmt.Fprintln(p.stdin, c) }

var statRE = regexp.MustCompile(`(RX|TX)-packets:\s+(\d+)`)

// Stats returns the RX and TX packet counters of port.
func (p *Testpmd) Stats(port int) (rx, tx uint64, err error) {
	p.Cmd(fmt.Sprintf("show port stats %d", port))
	if _, err := p.Expect(fmt.Sprintf("NIC statistics for port %d", port), 10*time.Second); err != nil {
		return 0, 0, err
	}
	for got := 0; got < 2; {
		l, err := p.Expect("-packets:", 10*time.Second)
		if err != nil {
			return 0, 0, err
		}
		m := statRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseUint(m[2], 10, 64)
		if m[1] == "RX" {
			rx = n
		} else {
			tx = n
		}
		got++
	}
	return rx, tx, nil
}

var cyclesRE = regexp.MustCompile(`CPU cycles/packet=([0-9.]+) .* at ([0-9]+) MHz`)

// ExpectCycles reads output until the forwarding-cycles line that "stop"
// and "show fwd stats all" print when testpmd runs with
// --record-core-cycles, and returns its busy cycles per packet (TSC cycles
// spent in forwarding bursts that moved packets: idle polls are left out)
// and the TSC rate in MHz. testpmd prints no such line before its first
// packet.
func (p *Testpmd) ExpectCycles(timeout time.Duration) (perPacket, mhz float64, err error) {
	l, err := p.Expect("CPU cycles/packet=", timeout)
	if err != nil {
		return 0, 0, err
	}
	m := cyclesRE.FindStringSubmatch(l)
	if m == nil {
		return 0, 0, fmt.Errorf("dpdk-testpmd: cannot parse %q", l)
	}
	perPacket, _ = strconv.ParseFloat(m[1], 64)
	mhz, _ = strconv.ParseFloat(m[2], 64)
	return perPacket, mhz, nil
}

// FwdCycles is ExpectCycles for a testpmd that is forwarding: it asks for
// "show fwd stats all" (the counts since "start").
func (p *Testpmd) FwdCycles(timeout time.Duration) (perPacket, mhz float64, err error) {
	p.Cmd("show fwd stats all")
	return p.ExpectCycles(timeout)
}

// Kill stops testpmd at once (SIGKILL), as a crashing frontend would.
func (p *Testpmd) Kill() error {
	err := p.cmd.Process.Kill()
	p.cmd.Wait()
	return err
}

// Close asks testpmd to quit and kills it if it does not within 10 s.
func (p *Testpmd) Close() error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	p.Cmd("quit")
	p.stdin.Close()
	waited := make(chan error, 1)
	go func() { waited <- p.cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		err = <-waited
	}
	close(p.done)
	return err
}
