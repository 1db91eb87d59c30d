package proto

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Conn reads and writes whole vhost-user messages on a unix stream socket.
// It is not safe for concurrent use by several readers or several writers.
type Conn struct {
	c   *net.UnixConn
	hdr [HeaderSize]byte
	oob []byte
}

// NewConn wraps c.
func NewConn(c *net.UnixConn) *Conn {
	return &Conn{c: c, oob: make([]byte, unix.CmsgSpace(4*MaxFDs))}
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// CloseFDs closes every descriptor of m and forgets them.
func CloseFDs(m *Msg) {
	for _, fd := range m.FDs {
		unix.Close(fd)
	}
	m.FDs = nil
}

// ReadMsg reads one message, with the descriptors that came with its
// header. The header is checked (DecodeHeader) before the payload is read;
// on any error every received descriptor is closed. io.EOF means the peer
// closed the connection between messages.
//
// Validate is not called here: requests are validated by their reader (the
// backend), replies by the frontend.
func (c *Conn) ReadMsg() (*Msg, error) {
	n, oobn, flags, _, err := c.c.ReadMsgUnix(c.hdr[:], c.oob)
	var fds []int
	if oobn > 0 {
		fds = parseFDs(c.oob[:oobn])
	}
	m := &Msg{FDs: fds}
	if err != nil {
		CloseFDs(m)
		return nil, err
	}
	if n == 0 {
		CloseFDs(m)
		return nil, io.EOF
	}
	if flags&unix.MSG_CTRUNC != 0 {
		CloseFDs(m)
		return nil, errors.New("vhost-user: ancillary data truncated (too many descriptors)")
	}
	if n < HeaderSize {
		if _, err := io.ReadFull(c.c, c.hdr[n:]); err != nil {
			CloseFDs(m)
			return nil, fmt.Errorf("vhost-user: short header: %w", err)
		}
	}
	h, err := DecodeHeader(c.hdr[:])
	if err != nil {
		CloseFDs(m)
		return nil, err
	}
	m.Header = h
	if h.Size > 0 {
		m.Payload = make([]byte, h.Size)
		if _, err := io.ReadFull(c.c, m.Payload); err != nil {
			CloseFDs(m)
			return nil, fmt.Errorf("vhost-user %v: reading %d-byte payload: %w", h.Request, h.Size, err)
		}
	}
	return m, nil
}

// parseFDs returns every descriptor in SCM_RIGHTS messages of oob.
func parseFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

// WriteMsg sends a message with fds in one sendmsg.
func (c *Conn) WriteMsg(req Request, flags uint32, payload []byte, fds ...int) error {
	if len(payload) > MaxPayload {
		return msgErr(req, ErrTooBig, "size %d", len(payload))
	}
	b := make([]byte, HeaderSize+len(payload))
	Header{Request: req, Flags: flags, Size: uint32(len(payload))}.Encode(b)
	copy(b[HeaderSize:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.c.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return fmt.Errorf("vhost-user %v: write: %w", req, err)
	}
	if n != len(b) {
		return fmt.Errorf("vhost-user %v: short write %d of %d", req, n, len(b))
	}
	return nil
}

// Reply sends the reply to req: version 1 with the reply bit.
func (c *Conn) Reply(req Request, payload []byte) error {
	return c.WriteMsg(req, Version|FlagReply, payload)
}

// WriteRaw writes b as is (tests use it to send malformed headers).
func (c *Conn) WriteRaw(b []byte) error {
	_, err := c.c.Write(b)
	return err
}
