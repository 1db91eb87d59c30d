// Package lines splits a byte stream (a guest's console, a child
// process's output) into lines for whoever reads them line by line.
package lines

import (
	"bytes"
	"sync"
)

// DefaultMax is Splitter.Max's default.
const DefaultMax = 64 << 10

// Splitter is an io.Writer that calls Line with each complete line written
// to it, without its "\n" or a "\r" before that. A line longer than Max
// bytes (a guest that never prints a newline) is handed over in pieces of
// Max bytes, so what it buffers is bounded. Safe for concurrent use: lines
// are handed over one at a time, in order. An error from Line is returned
// by the Write that completed the line.
type Splitter struct {
	Line func(line string) error
	Max  int // 0 means DefaultMax

	mu   sync.Mutex
	part []byte
}

// Write implements io.Writer.
func (s *Splitter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	max := s.Max
	if max <= 0 {
		max = DefaultMax
	}
	s.part = append(s.part, p...)
	var err error
	for {
		i := bytes.IndexByte(s.part, '\n')
		end, next := i, i+1
		if i < 0 {
			if len(s.part) < max {
				break
			}
			end, next = max, max
		}
		if e := s.Line(string(bytes.TrimSuffix(s.part[:end], []byte{'\r'}))); e != nil && err == nil {
			err = e
		}
		s.part = s.part[next:]
	}
	if len(s.part) == 0 {
		s.part = s.part[:0:0] // let a large buffer go
	}
	return len(p), err
}

// Flush hands a partial last line, if any, to Line.
func (s *Splitter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.part) == 0 {
		return nil
	}
	l := string(bytes.TrimSuffix(s.part, []byte{'\r'}))
	s.part = nil
	return s.Line(l)
}
