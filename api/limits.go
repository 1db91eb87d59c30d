package api

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of Limits' fields.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxConns          = 64
	DefaultMaxCaptures       = 16
	DefaultMaxPorts          = 4096
	DefaultMaxStaticEntries  = 4096
)

// maxHeaderBytes bounds a request's header (net/http's default is 1 MiB);
// the API's requests have a handful of short header lines.
const maxHeaderBytes = 64 << 10

// Limits bound what API clients can hold of the server; a zero field
// takes its default. A client that connects and sends nothing, or half a
// header (slow loris), loses its connection after ReadHeaderTimeout; one
// that opens more than MaxConns connections makes the newest wait in the
// socket's listen backlog, not the server hold more.
type Limits struct {
	// ReadHeaderTimeout: a request's header must arrive within it
	// (default 5 s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout: the whole request, body included (default 30 s). Once
	// it is read, the handler's own time no longer counts.
	ReadTimeout time.Duration
	// WriteTimeout: from the end of the request's header until the answer
	// is written (default 60 s). POST /v1/ports (a lab guest may wait for
	// its images to build) has none; a live capture instead has this long
	// to take each batch of records, so a reader that stops reading is
	// cut off while one that waits for frames is not.
	WriteTimeout time.Duration
	// IdleTimeout: a kept-alive connection waiting for its next request
	// (default 120 s).
	IdleTimeout time.Duration
	// MaxConns: connections served at once, captures included (default
	// 64). Past it, new connections wait in the listen backlog until one
	// closes; each time that starts is counted
	// (hvnet_api_limit_reached_total{limit="connections"}).
	MaxConns int
	// MaxCaptures: live captures (GET /v1/capture/{port}) at once
	// (default 16, and at most MaxConns-1 so captures cannot take every
	// connection); more are answered 429 and counted
	// (hvnet_api_limit_reached_total{limit="captures"}).
	MaxCaptures int
	// MaxPorts: ports on the switch; POST /v1/ports past it is answered
	// 409 (default 4096).
	MaxPorts int
	// MaxStaticEntries: static FDB entries (POST /v1/fdb), which the
	// switch's FDB size does not bound; a new one past it is answered 409
	// (default 4096).
	MaxStaticEntries int
}

// withDefaults fills zero (or negative) fields with the defaults.
func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxCaptures <= 0 {
		l.MaxCaptures = DefaultMaxCaptures
	}
	if l.MaxPorts <= 0 {
		l.MaxPorts = DefaultMaxPorts
	}
	if l.MaxStaticEntries <= 0 {
		l.MaxStaticEntries = DefaultMaxStaticEntries
	}
	if l.MaxCaptures >= l.MaxConns {
		l.MaxCaptures = max(l.MaxConns-1, 1)
	}
	return l
}

// limitStats counts the limits being hit.
type limitStats struct {
	connWaits       atomic.Uint64 // Accept found every connection slot taken
	capturesRefused atomic.Uint64 // a capture answered 429
	captures        atomic.Int64  // live captures now
	lastWarn        atomic.Int64  // unix ns of the last "limit reached" log line
}

// warn logs that a limit was reached, at most every 10 s (a flood would
// otherwise log a line per connection).
func (st *limitStats) warn(log hclog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := st.lastWarn.Load()
	if now-last < int64(10*time.Second) || !st.lastWarn.CompareAndSwap(last, now) {
		return
	}
	log.Warn(msg, args...)
}

// LimitListener returns l accepting at most n connections at once (the
// API's own listener, and the dashboard's): Accept waits for a slot,
// calling onWait first when it has to; a connection's Close frees it.
func LimitListener(l net.Listener, n int, onWait func()) net.Listener {
	return newLimitListener(l, n, onWait)
}

// limitListener accepts at most cap(sem) connections at once: Accept
// takes a slot before accepting, a connection's Close gives it back.
// Connections beyond the limit wait in the kernel's listen backlog (and a
// client sees its connect or request wait), as golang.org/x/net/netutil's
// LimitListener does.
type limitListener struct {
	net.Listener
	sem    chan struct{}
	done   chan struct{}
	once   sync.Once
	onWait func() // Accept is about to wait for a slot
}

func newLimitListener(l net.Listener, n int, onWait func()) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{}), onWait: onWait}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	default:
		l.onWait()
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// routeClass says how long a route's handler may take.
type routeClass int

const (
	// plain: the answer must be written within Limits.WriteTimeout.
	plain routeClass = iota
	// slow: no write deadline (POST /v1/ports: a lab guest's images may
	// build first); the answer is small and the client's own deadline
	// bounds the wait.
	slow
	// stream: no overall write deadline; the handler moves it forward
	// before each write (GET /v1/capture/{port}).
	stream
)

// bounded lifts the write deadline of slow and stream routes before
// their handler runs. (The read deadline needs nothing: net/http lifts it
// once the request's body is read, so ReadTimeout bounds only the client.)
func bounded(class routeClass, h http.Handler) http.Handler {
	if class == plain {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An error: not a server's connection (a test's recorder), no deadline.
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
}
