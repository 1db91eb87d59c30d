package lab

import (
	"bytes"
	"io"
	"strings"
	"sync"

	"hvnet/images/agentcfg"
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
	mu     sync.Mutex
	all    bytes.Buffer
	part   []byte
	res    *agentcfg.Result
	start  bool // the agent's START line was seen
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all.Write(p)
	c.part = append(c.part, p...)
	for {
		i := bytes.IndexByte(c.part, '\n')
		if i < 0 {
			break
		}
		c.line(string(c.part[:i]))
		c.part = c.part[i+1:]
	}
	return len(p), nil
}

func (c *console) line(l string) {
	l = strings.TrimRight(l, "\r")
	if strings.Contains(l, agentcfg.StartPrefix) {
		c.start = true
	}
	if strings.Contains(l, agentcfg.ResultPrefix) {
		if r, err := agentcfg.ParseResult(l); err == nil {
			c.res = &r
		}
	}
	io.WriteString(c.w, c.prefix+l+"\n")
}

func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.part) > 0 {
		c.line(string(c.part))
		c.part = nil
	}
}

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
