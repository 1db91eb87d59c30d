package dashboard_test

// A Chrome DevTools Protocol client just big enough for the browser
// test: headless Chromium started with --remote-debugging-port=0, one
// page, commands and their answers, events to a callback. It speaks
// WebSocket (RFC 6455) itself, over a plain TCP connection: client
// frames masked (section 5.3), text messages possibly fragmented
// (section 5.4), pings answered (section 5.5.2). A library (chromedp)
// would be thousands of lines for the five commands used here.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/lines"
)

// browser is a headless Chromium process.
type browser struct {
	cmd    *exec.Cmd
	stderr *lines.Buffer
	debug  string // host:port of its DevTools endpoint
}

// chromiumPath finds Debian's chromium (or another Chromium build).
func chromiumPath() (string, bool) {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, true
		}
	}
	return "", false
}

var devtoolsRE = regexp.MustCompile(`DevTools listening on ws://([^/\s]+)/`)

// startBrowser runs headless Chromium on about:blank, killed at cleanup.
func startBrowser(t *testing.T, bin string, width, height int) *browser {
	t.Helper()
	args := []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
		"--remote-debugging-address=127.0.0.1", "--user-data-dir=" + t.TempDir(),
		fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-component-update", "--disable-default-apps",
		"--mute-audio", "about:blank"}
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	b := &browser{cmd: cmd, stderr: &lines.Buffer{}}
	cmd.Stderr = io.MultiWriter(b.stderr, pw)
	cmd.Stdout = b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := devtoolsRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, pr) // keep Chromium's stderr flowing
	}()
	select {
	case b.debug = <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium never said where DevTools listens:\n%s", b.stderr)
	}
	return b
}

// page connects to the browser's first page target.
func (b *browser) page(t *testing.T, onEvent func(method string, params json.RawMessage)) *cdp {
	t.Helper()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + b.debug + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
		}
		for _, tg := range targets {
			if tg.Type == "page" {
				c, err := dialCDP(tg.WS, onEvent)
				if err != nil {
					t.Fatalf("devtools: %v", err)
				}
				t.Cleanup(c.close)
				return c
			}
		}
		if i == 100 {
			t.Fatalf("no page target (%v): %+v", err, targets)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cdp is one DevTools session over a WebSocket.
type cdp struct {
	conn    net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	next    int
	pending map[int]chan cdpAnswer
	onEvent func(method string, params json.RawMessage)
	done    chan struct{}
	err     error // why the reader stopped; set before done closes
}

type cdpAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func dialCDP(wsURL string, onEvent func(string, json.RawMessage)) (*cdp, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		u.RequestURI(), u.Host, k)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	// RFC 6455 section 4.2.2: the accept value is SHA-1 of the key and the GUID.
	sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake: %s", resp.Status)
	}
	c := &cdp{conn: conn, pending: map[int]chan cdpAnswer{}, onEvent: onEvent, done: make(chan struct{})}
	go c.read(br)
	return c, nil
}

func (c *cdp) close() { c.conn.Close(); <-c.done }

// writeFrame sends one masked frame.
func (c *cdp) writeFrame(op byte, payload []byte) error {
	var h []byte
	h = append(h, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n < 1<<16:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	h = append(h, mask[:]...)
	m := make([]byte, len(payload))
	for i := range payload {
		m[i] = payload[i] ^ mask[i%4]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(append(h, m...))
	return err
}

// readMessage returns the next text or binary message, answering pings.
func readMessage(br *bufio.Reader, pong func([]byte) error) ([]byte, error) {
	var msg []byte
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("websocket: frame of %d bytes", n)
		}
		var mask []byte
		if hdr[1]&0x80 != 0 { // servers do not mask, but tolerate it
			mask = make([]byte, 4)
			if _, err := io.ReadFull(br, mask); err != nil {
				return nil, err
			}
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return nil, err
		}
		if mask != nil {
			for i := range p {
				p[i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x8: // close
			return nil, io.EOF
		case 0x9: // ping
			if err := pong(p); err != nil {
				return nil, err
			}
			continue
		case 0xa: // pong
			continue
		}
		msg = append(msg, p...)
		if fin {
			return msg, nil
		}
	}
}

func (c *cdp) read(br *bufio.Reader) {
	defer close(c.done)
	for {
		m, err := readMessage(br, func(p []byte) error { return c.writeFrame(0xa, p) })
		if err != nil {
			c.mu.Lock()
			c.err = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var env struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			cdpAnswer
		}
		if err := json.Unmarshal(m, &env); err != nil {
			continue
		}
		if env.Method != "" {
			if c.onEvent != nil {
				c.onEvent(env.Method, env.Params)
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[env.ID]
		delete(c.pending, env.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- env.cdpAnswer
		}
	}
}

// call runs a command and decodes its result into out (nil: ignored).
func (c *cdp) call(ctx context.Context, method string, params any, out any) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.next++
	id := c.next
	ch := make(chan cdpAnswer, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	b, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := c.writeFrame(0x1, b); err != nil {
		return err
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: devtools connection lost: %v", method, c.err)
		}
		if a.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, a.Error.Message, a.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(a.Result, out)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// eval evaluates a JS expression in the page (promises awaited) and
// decodes its value, which must be JSON-serialisable, into out.
func (c *cdp) eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := c.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluate %q: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out == nil {
		return nil
	}
	if len(r.Result.Value) == 0 {
		return errors.New("evaluate: no value")
	}
	return json.Unmarshal(r.Result.Value, out)
}

// screenshot writes the whole page (not only the window) as a PNG to
// path, width CSS pixels wide.
func (c *cdp) screenshot(ctx context.Context, path string, width int) error {
	var m struct {
		Content struct {
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	if err := c.call(ctx, "Page.getLayoutMetrics", nil, &m); err != nil {
		return err
	}
	var r struct {
		Data string `json:"data"`
	}
	clip := map[string]any{"x": 0, "y": 0, "width": width, "height": m.Content.Height, "scale": 1}
	if err := c.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true, "clip": clip}, &r); err != nil {
		return err
	}
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// consoleErrors collects what the page reported as errors: console.error
// and failed assertions, uncaught exceptions, and the browser's own
// error log entries (failed loads, CSP violations).
type consoleErrors struct {
	mu   sync.Mutex
	errs []string
	logs []string
}

func (ce *consoleErrors) event(method string, params json.RawMessage) {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	switch method {
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(params, &p)
		var parts []string
		for _, a := range p.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, fmt.Sprint(a.Value))
			}
		}
		line := "console." + p.Type + ": " + strings.Join(parts, " ")
		ce.logs = append(ce.logs, line)
		if p.Type == "error" || p.Type == "assert" {
			ce.errs = append(ce.errs, line)
		}
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(params, &p)
		ce.errs = append(ce.errs, "exception: "+p.Details.Text+" "+p.Details.Exception.Description)
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Source string `json:"source"`
				Level  string `json:"level"`
				Text   string `json:"text"`
				URL    string `json:"url"`
			} `json:"entry"`
		}
		json.Unmarshal(params, &p)
		line := fmt.Sprintf("log %s/%s: %s %s", p.Entry.Source, p.Entry.Level, p.Entry.Text, p.Entry.URL)
		ce.logs = append(ce.logs, line)
		if p.Entry.Level == "error" {
			ce.errs = append(ce.errs, line)
		}
	}
}

func (ce *consoleErrors) list() []string {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	return append([]string(nil), ce.errs...)
}
