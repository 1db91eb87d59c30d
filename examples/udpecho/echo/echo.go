// Package echo is a tiny UDP echo service: the example of a user's own
// network software that hvnet's vmtest runs in guests (see ../README.md).
package echo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Server answers every datagram with the same bytes and counts, per
// source address, what it answered.
type Server struct {
	conn   *net.UDPConn
	mu     sync.Mutex
	served map[netip.Addr]int
}

// Listen starts a server on addr ("host:port" or ":port").
func Listen(addr string) (*Server, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	return &Server{conn: c, served: map[netip.Addr]int{}}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Serve answers datagrams until ctx ends or the server is closed.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("echo: %w", err)
		}
		if _, err := s.conn.WriteToUDPAddrPort(buf[:n], from); err != nil {
			continue // the client went away: nothing to answer
		}
		s.mu.Lock()
		s.served[from.Addr().Unmap()]++
		s.mu.Unlock()
	}
}

// Served returns how many datagrams were answered, by client address.
func (s *Server) Served() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for a, n := range s.served {
		m[a.String()] = n
	}
	return m
}

// Close stops the server.
func (s *Server) Close() error { return s.conn.Close() }

// ErrNoReply is Ping's error when nothing came back in time.
var ErrNoReply = errors.New("echo: no reply")

// Ping sends msg to a server and waits up to timeout for it to come back.
func Ping(addr string, msg []byte, timeout time.Duration) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("echo: send: %w", err)
	}
	buf := make([]byte, len(msg)+1)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrNoReply
	}
	if err != nil {
		return fmt.Errorf("echo: receive: %w", err)
	}
	if !bytes.Equal(buf[:n], msg) {
		return fmt.Errorf("echo: sent %q, got %q back", msg, buf[:n])
	}
	return nil
}
