package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hvnet/hvnet/internal/sockperm"
	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// PortFactory makes and destroys the daemon's port backends (vhost-user
// sockets, lab guest NICs, uplinks) for POST and DELETE /v1/ports.
type PortFactory interface {
	// Add creates the backend spec asks for and attaches it by calling
	// attach once with its vswitch.Port; attach calls Switch.AddPort with
	// the checked configuration and returns the handle the backend feeds.
	// If attach fails Add undoes what it made and returns attach's error.
	Add(ctx context.Context, spec PortSpec, attach vswitch.AttachFunc) error
	// Remove stops the named port's backend. The switch port is already
	// detached when it is called.
	Remove(name string) error
}

// OptionsUpdater factories take new kind settings for a port they made
// (PATCH /v1/ports/{name} with options: all of them, as POST takes them)
// live, or refuse them with an *Error (400 naming the option, 409 when
// the backend cannot take them without being made again). port is the
// port's switch configuration, for the kind's checks.
type OptionsUpdater interface {
	UpdateOptions(name string, opts map[string]OptionValue, port vswitch.PortConfig) error
}

// KindLister factories say which port kinds they make; POST /v1/ports
// refuses any other (a factory that is not one makes vhost-user, lab and
// uplink ports).
type KindLister interface {
	Kinds() []string
}

// Options configures a Server.
type Options struct {
	Logger hclog.Logger // default: no logging
	// Ports makes ports for POST /v1/ports; nil answers 501 there, and
	// DELETE only detaches the port.
	Ports PortFactory
	// CaptureQueue is how many frame batches a capture or file mirror
	// holds before it drops (default 256).
	CaptureQueue int
	// CaptureDir is the only directory file mirrors (POST /v1/mirrors)
	// write to: a relative name is taken under it, nothing outside it
	// (no "..", no symlink) is opened. "" turns file mirrors off (501).
	CaptureDir string
	// SocketDir is the only directory vhost-user ports added through the
	// API may have their sockets in (missing directories under it are
	// made). "" refuses such ports (501). Ports of the daemon's own
	// configuration are the operator's and are not checked.
	SocketDir string
	// Limits bound the server's connections and their timeouts.
	Limits Limits
	// BuildInfo labels hvnet_build_info (version, revision, goversion);
	// nil leaves the metric out.
	BuildInfo map[string]string
	// Switch is what GET /v1/switch answers: the switch-wide settings the
	// daemon runs with (nil: only the build). Its conntrack limits are
	// those GET /v1/conntrack and the metrics report (nil: package
	// conntrack's defaults, as a switch made with a zero Config.Conntrack).
	Switch *SwitchInfo
	// FlowExport is the daemon's flow exporter, which GET and PUT
	// /v1/flow-export read and set and the metrics report (nil: those
	// answer 501; GET /v1/flows lists the switch's flow cache anyway).
	FlowExport *ipfix.Exporter
}

// Server serves the API for one switch. Its methods are safe for
// concurrent use.
type Server struct {
	sw    *vswitch.Switch
	log   hclog.Logger
	ports PortFactory
	fan   *fanout
	mux   *http.ServeMux

	captureDir, socketDir string // absolute, or "" when off
	limits                Limits // defaults filled in
	stats                 limitStats
	build                 prometheus.Labels
	switchInfo            SwitchInfo
	flows                 *ipfix.Exporter // nil: none

	// cfgMu serialises every configuration change made through the API
	// (PATCH, mirror flags), so read-modify-write of a port's config is atomic.
	cfgMu   sync.Mutex
	mirrors map[string]*fileMirror // by port; guarded by cfgMu
}

// NewServer returns a server for sw and installs its fan-out mirror sink
// with sw.SetMirror.
func NewServer(sw *vswitch.Switch, o Options) *Server {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.CaptureQueue <= 0 {
		o.CaptureQueue = 256
	}
	s := &Server{sw: sw, log: o.Logger, ports: o.Ports, mirrors: map[string]*fileMirror{},
		captureDir: absDir(o.CaptureDir), socketDir: absDir(o.SocketDir), limits: o.Limits.withDefaults(),
		build: o.BuildInfo, flows: o.FlowExport}
	if o.Switch != nil {
		s.switchInfo = *o.Switch
	}
	s.switchInfo.Version, s.switchInfo.Revision = o.BuildInfo["version"], o.BuildInfo["revision"]
	s.fan = newFanout(o.CaptureQueue)
	sw.SetMirror(s.fan)
	s.mux = http.NewServeMux()
	s.routes()
	return s
}

// absDir makes a configured directory absolute and clean ("" stays "").
func absDir(d string) string {
	if d == "" {
		return ""
	}
	if a, err := filepath.Abs(d); err == nil {
		return a
	}
	return filepath.Clean(d)
}

// route is one endpoint; openapi.yaml documents each (a test checks).
type route struct {
	pattern string
	h       http.Handler
	class   routeClass // plain unless set
}

func (s *Server) routeTable() []route {
	return []route{
		{"GET /v1/switch", http.HandlerFunc(s.getSwitch), plain},
		{"GET /v1/ports", http.HandlerFunc(s.listPorts), plain},
		{"POST /v1/ports", http.HandlerFunc(s.addPort), slow},
		{"GET /v1/ports/{name}", http.HandlerFunc(s.getPort), plain},
		{"PATCH /v1/ports/{name}", http.HandlerFunc(s.patchPort), plain},
		{"DELETE /v1/ports/{name}", http.HandlerFunc(s.deletePort), plain},
		{"GET /v1/ports/{name}/acl", http.HandlerFunc(s.getACL), plain},
		{"PUT /v1/ports/{name}/acl", http.HandlerFunc(s.putACL), plain},
		{"GET /v1/ports/{name}/security-group", http.HandlerFunc(s.getSG), plain},
		{"PUT /v1/ports/{name}/security-group", http.HandlerFunc(s.putSG), plain},
		{"DELETE /v1/ports/{name}/security-group", http.HandlerFunc(s.deleteSG), plain},
		{"GET /v1/ports/{name}/queues", http.HandlerFunc(s.getQueues), plain},
		{"GET /v1/ports/{name}/conntrack", http.HandlerFunc(s.getPortConntrack), plain},
		{"DELETE /v1/ports/{name}/conntrack", http.HandlerFunc(s.flushPortConntrack), plain},
		{"GET /v1/conntrack", http.HandlerFunc(s.getConntrack), plain},
		{"POST /v1/trace", http.HandlerFunc(s.trace), plain},
		{"GET /v1/fdb", http.HandlerFunc(s.getFDB), plain},
		{"DELETE /v1/fdb", http.HandlerFunc(s.flushFDB), plain},
		{"POST /v1/fdb", http.HandlerFunc(s.addStatic), plain},
		{"DELETE /v1/fdb/{vlan}/{mac}", http.HandlerFunc(s.deleteStatic), plain},
		{"GET /v1/mirrors", http.HandlerFunc(s.listMirrors), plain},
		{"POST /v1/mirrors", http.HandlerFunc(s.startMirror), plain},
		{"DELETE /v1/mirrors/{port}", http.HandlerFunc(s.stopMirror), plain},
		{"GET /v1/capture/{port}", http.HandlerFunc(s.capture), stream},
		{"GET /v1/evpn/routes", http.HandlerFunc(s.getEVPNRoutes), plain},
		{"GET /v1/evpn/neighbors", http.HandlerFunc(s.getEVPNNeighbors), plain},
		{"GET /v1/flow-export", http.HandlerFunc(s.getFlowExport), plain},
		{"PUT /v1/flow-export", http.HandlerFunc(s.putFlowExport), plain},
		{"GET /v1/flows", http.HandlerFunc(s.getFlows), plain},
		{"GET /metrics", s.metricsHandler(), plain},
	}
}

// getSwitch: GET /v1/switch, the switch-wide settings and the build.
func (s *Server) getSwitch(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.switchInfo)
}

func (s *Server) routes() {
	for _, r := range s.routeTable() {
		s.mux.Handle(r.pattern, bounded(r.class, r.h))
	}
	s.mux.HandleFunc("/", s.notFound)
}

// notFound answers requests no route takes, in JSON: 405 when the path
// exists with other methods, 404 otherwise.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pat := s.mux.Handler(r2); pat != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Message: fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
		return
	}
	writeError(w, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path)})
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Listen creates the unix socket at path with mode 0600. A stale socket
// file left by a dead daemon is replaced; a live one is an error. Closing
// the listener removes the socket.
//
// The socket is bound in a fresh 0700 directory beside path, made 0600,
// then renamed into place, so there is no moment at which another user
// could connect (and no process-wide umask change).
func Listen(path string) (net.Listener, error) { return ListenWith(path, SocketAccess{}) }

// SocketAccess is who may connect to a unix socket the daemon listens
// on: its mode (0: 0600, the owner only) and, if not nil, its owner and
// group.
type SocketAccess struct {
	Mode         os.FileMode
	Owner, Group *int
}

// ListenWith is Listen with the socket's mode, owner and group set
// before it appears at path.
func ListenWith(path string, a SocketAccess) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen %s: another daemon is serving it", path)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".hvnet-api-")
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	mode := a.Mode
	if mode == 0 {
		mode = 0o600
	}
	if err := sockperm.Apply(tmp, mode, a.Owner, a.Group); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return &socketListener{UnixListener: l, path: path}, nil
}

// socketListener removes its socket file when closed.
type socketListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

func (l *socketListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Serve listens on the unix socket at path and serves until ctx ends,
// then closes the listener, ends captures and file mirrors, and removes
// the socket.
func (s *Server) Serve(ctx context.Context, path string) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// ServeListener serves on l until ctx ends, with the server's Limits:
// at most MaxConns connections at once (more wait in l's backlog), and
// its timeouts.
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	lim := s.limits
	l = newLimitListener(l, lim.MaxConns, func() {
		s.stats.connWaits.Add(1)
		s.stats.warn(s.log, "api connection limit reached: new connections wait", "max_conns", lim.MaxConns)
	})
	hs := &http.Server{Handler: s.mux, MaxHeaderBytes: maxHeaderBytes,
		ReadHeaderTimeout: lim.ReadHeaderTimeout, ReadTimeout: lim.ReadTimeout,
		WriteTimeout: lim.WriteTimeout, IdleTimeout: lim.IdleTimeout,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		hs.Close()
	}()
	s.log.Info("api listening", "socket", l.Addr().String())
	err := hs.Serve(l)
	<-done
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: serve: %w", err)
}

// Close stops the file mirrors and removes the mirror sink.
func (s *Server) Close() {
	s.cfgMu.Lock()
	for port, m := range s.mirrors {
		s.fan.remove(m.tap)
		m.stop()
		delete(s.mirrors, port)
	}
	s.cfgMu.Unlock()
	s.sw.SetMirror(nil)
}

// maxBody bounds request bodies; the largest valid one is a port
// configuration with a few thousand VLANs and MACs.
const maxBody = 1 << 20

// decode reads r's JSON body into v strictly: unknown fields, trailing
// data and type errors are answered 400 naming the field.
func decode(r *http.Request, v any) *Error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if errors.Is(err, os.ErrDeadlineExceeded) { // Limits.ReadTimeout
		return &Error{Status: http.StatusRequestTimeout, Message: "read body: " + err.Error()}
	}
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Message: "read body: " + err.Error()}
	}
	if len(body) > maxBody {
		return &Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body over %d bytes", maxBody)}
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		e := jsonError(err)
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			if f := unknownField(body, reflect.TypeOf(v)); f != "" {
				e.Field = f
			}
			last := e.Field[strings.LastIndexByte(e.Field, '.')+1:]
			if n, ok := renamedFields[last]; ok {
				e.Message = "unknown field: it is now called " + n
			}
		}
		return e
	}
	if d.More() {
		return &Error{Status: http.StatusBadRequest, Message: "malformed JSON: data after the object"}
	}
	return nil
}

// renamedFields are the API's fields' former names: hvnet has one name
// for a setting on every surface, the command line's ("_" for "-").
var renamedFields = map[string]string{
	"pvid": "vlan", "allowed_vlans": "trunk", "native_vlan": "native", "default_pcp": "pcp",
	"mode":   "vlan_mode (in config; a vhost-user socket's server|client is options.mode)",
	"socket": "options.socket", "socket_mode": "options.socket-mode", "queues": "options.queues",
	"interface": "options.if", "tx_mode": "options.tx", "guest": "options (ip, mem, cpus, vif, cmd, guest-mtu)",
}

func jsonError(err error) *Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Type == reflect.TypeFor[BitRate]():
		return badField(te.Field, "%s", te.Value)
	case errors.As(err, &te):
		return badField(te.Field, "want %s, got JSON %s", te.Type, te.Value)
	case errors.As(err, &se):
		return &Error{Status: http.StatusBadRequest, Message: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)}
	case errors.Is(err, io.EOF):
		return &Error{Status: http.StatusBadRequest, Message: "malformed JSON: empty body"}
	}
	msg := err.Error()
	const unknown = "json: unknown field "
	if len(msg) > len(unknown) && msg[:len(unknown)] == unknown {
		f := msg[len(unknown):]
		if len(f) >= 2 && f[0] == '"' {
			f = f[1 : len(f)-1]
		}
		return badField(f, "unknown field")
	}
	return &Error{Status: http.StatusBadRequest, Message: "malformed JSON: " + msg}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.Status == 0 {
		e.Status = http.StatusInternalServerError
	}
	writeJSON(w, e.Status, e)
}

// switchError maps a control-plane error from the switch to an answer.
func switchError(err error, field string) *Error {
	switch {
	case errors.Is(err, vswitch.ErrNoSuchPort):
		return &Error{Status: http.StatusNotFound, Field: field, Message: err.Error()}
	case errors.Is(err, vswitch.ErrPortExists):
		return &Error{Status: http.StatusConflict, Field: field, Message: err.Error()}
	case errors.Is(err, vswitch.ErrNoSuchEntry):
		return &Error{Status: http.StatusNotFound, Message: err.Error()}
	}
	return &Error{Status: http.StatusBadRequest, Message: err.Error()}
}

func noPort(name string) *Error {
	return &Error{Status: http.StatusNotFound, Field: "port", Message: fmt.Sprintf("no port %q", name)}
}
