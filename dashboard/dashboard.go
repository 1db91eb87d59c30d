// Package dashboard is hvnet's read-only web dashboard: a page, served by
// the daemon on a TCP address of its own (--dashboard-addr), that shows
// the ports with their kind, VLANs and VNIs and state, live per-port
// throughput charts, drops by reason, the FDB with a search box, the top
// flows of the flow cache and a trace form.
//
// The page is static (embedded, no CDN: the machines hvnet runs on may
// reach no web) and reads the daemon through a fixed list of the control
// API's read-only requests, which this package forwards to the API's
// handler in the process: GET /v1/switch, /v1/ports, /v1/fdb, /v1/flows
// and POST /v1/trace (a trace learns and counts nothing). Nothing else of
// the API is reachable here, so the dashboard can change nothing; whoever
// reaches its address reads what it shows (ports, MACs, flows), which is
// why a port alone binds localhost (ResolveAddr).
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
)

//go:embed static
var staticFS embed.FS

// Limits of the dashboard's HTTP server. A browser holds about six
// connections to one host; MaxConns leaves room for a few tabs and
// curl, and bounds what a flood can make the daemon hold (RELIABILITY.md,
// the control API: the same rules as the API socket's).
const (
	MaxConns          = 32
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// maxTraceBody bounds a trace request's body: a TraceRequest is a few
	// hundred bytes.
	maxTraceBody = 16 << 10
	// maxAnswer bounds an API answer the dashboard forwards; the largest
	// is the FDB's at its cap (65,536 entries of about 150 bytes).
	maxAnswer = 32 << 20
)

// ResolveAddr turns the --dashboard-addr value into the address to
// listen on: a port alone ("9478" or ":9478") is localhost's
// (127.0.0.1:9478), never every interface as Go would take ":9478"; a
// whole HOST:PORT is taken as written, so serving other hosts
// (0.0.0.0:9478, a management address) is always spelt out.
func ResolveAddr(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("empty address")
	}
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: want PORT, :PORT or HOST:PORT (127.0.0.1:9478)", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("%q: port %q is not a number in 0..65535", addr, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Listen resolves addr (ResolveAddr) and listens on it. loopback says
// whether the listener took a loopback address alone; on any other the
// page is open to whoever reaches it.
func Listen(addr string) (ln net.Listener, loopback bool, err error) {
	a, err := ResolveAddr(addr)
	if err != nil {
		return nil, false, fmt.Errorf("dashboard: %w", err)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		return nil, false, fmt.Errorf("dashboard: %w", err)
	}
	ta, ok := l.Addr().(*net.TCPAddr)
	return l, ok && ta.IP.IsLoopback(), nil
}

// Options configure a dashboard Handler.
type Options struct {
	// API is the control API's handler (api.Server.Handler); only the
	// read-only requests listed in the package comment reach it.
	API http.Handler
	// Loopback: the listener is on a loopback address, so a request must
	// name a loopback host (localhost, 127.0.0.1, [::1]) in its Host
	// header. That shuts out DNS rebinding: a web page whose name an
	// attacker points at 127.0.0.1 reaches the port, but its requests
	// carry the attacker's name.
	Loopback bool
}

// apiGET are the API's requests the page may make with GET.
var apiGET = map[string]bool{"/v1/switch": true, "/v1/ports": true, "/v1/fdb": true, "/v1/flows": true}

// Handler returns the dashboard's HTTP handler: the page's files at /,
// the forwarded API requests under /api/.
func Handler(o Options) http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is the binary's own
	}
	return &handler{api: o.API, loopback: o.Loopback, files: sub}
}

type handler struct {
	api      http.Handler
	loopback bool
	files    fs.FS
}

// securityHeaders go on every answer. The page has no inline script or
// style, so the policy can be 'self' alone; it is never framed, and
// sends no referrer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if h.loopback && !loopbackHost(r.Host) {
		http.Error(w, "dashboard: this address serves localhost only (Host "+strconv.Quote(r.Host)+")", http.StatusMisdirectedRequest)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/api/"); ok {
		h.serveAPI(w, r, "/"+rest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "dashboard: read-only", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(h.files, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	// The files change with the binary: the browser asks again each load.
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// loopbackHost says whether a Host header names this machine's loopback:
// localhost or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveAPI forwards one of the allowed API requests to the API's handler
// and copies its answer (status, JSON body) back.
func (h *handler) serveAPI(w http.ResponseWriter, r *http.Request, p string) {
	w.Header().Set("Cache-Control", "no-store")
	var body io.Reader = http.NoBody
	switch {
	case r.Method == http.MethodGet && apiGET[p]:
	case r.Method == http.MethodPost && p == "/v1/trace":
		// A page of another origin cannot send this: a JSON body makes
		// its request need a CORS preflight, which is never granted, and
		// browsers say where a request comes from (Fetch Metadata).
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
			jsonError(w, http.StatusUnsupportedMediaType, "trace: want Content-Type application/json")
			return
		}
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
			jsonError(w, http.StatusForbidden, "trace: cross-site request refused")
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, maxTraceBody+1))
		if err != nil {
			jsonError(w, http.StatusBadRequest, "trace: read body: "+err.Error())
			return
		}
		if len(b) > maxTraceBody {
			jsonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("trace: body over %d bytes", maxTraceBody))
			return
		}
		body = bytes.NewReader(b)
	default:
		jsonError(w, http.StatusNotFound, fmt.Sprintf("dashboard: %s %s is not one of the read-only requests it forwards", r.Method, p))
		return
	}
	if h.api == nil {
		jsonError(w, http.StatusServiceUnavailable, "dashboard: no API")
		return
	}
	// A fresh request: the client's headers (cookies, auth) stay here.
	fwd, err := http.NewRequestWithContext(r.Context(), r.Method, p, body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	fwd.URL.RawQuery = r.URL.RawQuery
	fwd.RemoteAddr = r.RemoteAddr
	if r.Method == http.MethodPost {
		fwd.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{h: http.Header{}}
	h.api.ServeHTTP(rec, fwd)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.over {
		jsonError(w, http.StatusInternalServerError, fmt.Sprintf("dashboard: the API's answer is over %d bytes", maxAnswer))
		return
	}
	if p == "/v1/flows" && (rec.status == http.StatusConflict || rec.status == http.StatusNotFound ||
		rec.status == http.StatusMethodNotAllowed || rec.status == http.StatusNotImplemented) {
		// Flow export off (the API's 409), or a daemon without a flow
		// cache: say so in a 200, so the page shows "flow export is
		// off" rather than a failed request in the browser's console.
		writeJSON(w, http.StatusOK, `{"enabled": false, "flows": []}`)
		return
	}
	writeJSON(w, rec.status, rec.buf.String())
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, fmt.Sprintf("{\"error\": %s}\n", strconv.Quote(msg)))
}

// recorder keeps the API's answer, up to maxAnswer bytes.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
	over   bool
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.buf.Len()+len(p) > maxAnswer {
		r.over = true
		return 0, errors.New("dashboard: answer too long")
	}
	return r.buf.Write(p)
}

// Serve serves h on l until ctx ends, with the package's limits: at most
// MaxConns connections at once (more wait in l's backlog, and the first
// wait of every 10 s is logged), and its timeouts.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var lastWarn atomic.Int64
	l = api.LimitListener(l, MaxConns, func() {
		now := time.Now().UnixNano()
		if last := lastWarn.Load(); now-last >= int64(10*time.Second) && lastWarn.CompareAndSwap(last, now) {
			log.Warn("dashboard connection limit reached: new connections wait", "max_conns", MaxConns)
		}
	})
	hs := &http.Server{Handler: h, MaxHeaderBytes: maxHeaderBytes,
		ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		hs.Close()
	}()
	err := hs.Serve(l)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("dashboard: serve: %w", err)
}
