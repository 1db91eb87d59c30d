package vmtest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/vmm"
	"github.com/hvnet/hvnet/vmtest/event"
)

// Guest describes a guest to boot with hvnet's VMM.
type Guest struct {
	Agent   agentcfg.Cmdline // what the guest agent does
	Cmdline string           // extra kernel parameters
	MemMiB  uint64           // default 256
	CPUs    int              // default 1
	Timeout time.Duration    // default 5 minutes
	// Image is the guest's image (BuildImage); nil: Images(t).
	Image *images.Set
	// OnEvent, when set, is called with each event the guest sends
	// (package hvnet/vmtest/event), from its vCPU thread, as it
	// arrives. GuestResult.Events has them all either way.
	OnEvent func(event.Event)
}

// GuestResult is what came back from a guest.
type GuestResult struct {
	Status    int              // the VMM's exit status (the agent's result)
	Err       error            // from vmm.Machine.Run
	Console   string           // everything the guest printed
	Start     *agentcfg.Start  // the agent's first line, if seen
	Result    *agentcfg.Result // the agent's result line, if seen
	FirstLine time.Duration    // from vmm.New to the agent's first line
	Events    []event.Event    // what the guest sent on its event channel
	BadEvents int              // lines on the event channel that were not events
}

// BaseCmdline is the kernel command line every test guest gets.
const BaseCmdline = "console=ttyS0 quiet panic=-1 reboot=k"

// RunGuest boots a guest and waits for it to end. Its console goes to the
// test log as it arrives.
func RunGuest(t testing.TB, g Guest) GuestResult {
	t.Helper()
	set := g.Image
	if set == nil {
		set = Images(t)
	}
	if g.MemMiB == 0 {
		g.MemMiB = 256
	}
	if g.Timeout == 0 {
		g.Timeout = 5 * time.Minute
	}
	if err := g.Agent.Validate(); err != nil {
		t.Fatalf("guest agent command line: %v", err)
	}
	cmdline := strings.TrimSpace(BaseCmdline + " " + g.Cmdline + " " + g.Agent.String())
	con := &console{t: t, start: time.Now()}
	con.lines.Line = con.line
	ev := &event.Collector{On: g.OnEvent}
	m, err := vmm.New(vmm.Config{
		Kernel: set.Kernel, Initrd: set.Initrd, Cmdline: cmdline,
		MemMiB: g.MemMiB, CPUs: g.CPUs, Console: con, Events: ev,
	})
	if err != nil {
		t.Fatalf("vmm.New: %v", err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), g.Timeout)
	defer cancel()
	status, err := m.Run(ctx)
	r := con.result(status, err)
	r.Events, r.BadEvents = ev.Events(), ev.Malformed()
	return r
}

// console collects guest output and picks out the agent's lines.
type console struct {
	t     testing.TB
	start time.Time
	mu    sync.Mutex // guards all and what line records
	all   bytes.Buffer
	lines lines.Splitter
	first time.Duration
	st    *agentcfg.Start
	res   *agentcfg.Result
}

var _ io.Writer = (*console)(nil)

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.all.Write(p)
	c.mu.Unlock()
	return c.lines.Write(p)
}

// line logs one console line and picks out the agent's.
func (c *console) line(line string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Log("guest| " + line)
	if c.st == nil && strings.Contains(line, agentcfg.StartPrefix) {
		if s, err := agentcfg.ParseStart(line); err == nil {
			c.st = &s
			c.first = time.Since(c.start)
		}
	}
	if strings.Contains(line, agentcfg.ResultPrefix) {
		if r, err := agentcfg.ParseResult(line); err == nil {
			c.res = &r
		}
	}
	return nil
}

func (c *console) result(status int, err error) GuestResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return GuestResult{Status: status, Err: err, Console: c.all.String(), Start: c.st, Result: c.res, FirstLine: c.first}
}
