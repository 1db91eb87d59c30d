package lab

import (
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/lines"
)

// syncWriter serialises the guests' console lines onto one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// console keeps a guest's output, writes it line by line with the guest's
// name in front, and picks out the agent's result line.
type console struct {
	prefix string
	w      io.Writer
	lines  lines.Splitter
	mu     sync.Mutex // guards all, res and start
	all    bytes.Buffer
	res    *agentcfg.Result
	start  bool // the agent's START line was seen
}

func newConsole(prefix string, w io.Writer) *console {
	c := &console{prefix: prefix, w: w}
	c.lines.Line = c.line
	return c
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.all.Write(p)
	c.mu.Unlock()
	return c.lines.Write(p)
}

func (c *console) line(l string) error {
	c.mu.Lock()
	if strings.Contains(l, agentcfg.StartPrefix) {
		c.start = true
	}
	if strings.Contains(l, agentcfg.ResultPrefix) {
		if r, err := agentcfg.ParseResult(l); err == nil {
			c.res = &r
		}
	}
	c.mu.Unlock()
	io.WriteString(c.w, c.prefix+l+"\n")
	return nil
}

func (c *console) flush() { c.lines.Flush() }

func (c *console) result() *agentcfg.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.res
}

func (c *console) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start
}

func (c *console) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all.String()
}
