package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	_ "github.com/hvnet/hvnet/daemon/vxlankind" // a tunnel port, for the VNI column
	"github.com/hvnet/hvnet/dashboard"
	vswitch "github.com/hvnet/hvnet/switch"
)

// EnvScreenshot names a PNG file TestDashboardInBrowser writes the page
// to once it has drawn a few seconds of traffic (the README's picture:
// HVNET_DASHBOARD_SCREENSHOT=$PWD/docs/dashboard.png go test -run
// TestDashboardInBrowser ./dashboard/).
const EnvScreenshot = "HVNET_DASHBOARD_SCREENSHOT"

const (
	mac1 = "52:54:00:00:00:01"
	mac2 = "52:54:00:00:00:02"
	mac3 = "52:54:00:00:00:03"
)

// freeUDPPort returns a UDP port nobody uses on 127.0.0.1 now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startDemoDaemon runs the daemon (package daemon, as hvnet switch does)
// with its API socket and the dashboard on 127.0.0.1:0: three ports of
// the test-traffic kind sending to each other in VLAN 10 (vm3 a trunk
// that also sends frames of a VLAN it does not carry), and a VXLAN
// tunnel carrying VLAN 10 as VNI 100 to a VTEP that is not there.
func startDemoDaemon(t *testing.T) (*daemon.Running, *api.Client) {
	t.Helper()
	specs := [][]string{
		{"test-traffic", "name=vm1", "vlan=10", "mac=" + mac1, "peer=" + mac2},
		{"test-traffic", "name=vm2", "vlan=10", "mac=" + mac2, "peer=" + mac1, "peer=" + mac3},
		{"test-traffic", "name=vm3", "trunk=10:20", "native=10", "mac=" + mac3, "peer=" + mac1, "bad-tag=30"},
		{"vxlan", "name=vx0", "local=127.0.0.1", "vni=100:10", "trunk=10", "remote=127.0.0.2", fmt.Sprintf("udp-port=%d", freeUDPPort(t))},
	}
	var ports []daemon.PortSpec
	for _, s := range specs {
		p, err := daemon.ParsePort(s[0], s[1:])
		if err != nil {
			t.Fatalf("%v: %v", s, err)
		}
		ports = append(ports, p)
	}
	dir := t.TempDir()
	cfg := daemon.Config{API: filepath.Join(dir, "api.sock"), DashboardAddr: "127.0.0.1:0", Ports: ports,
		BuildInfo: map[string]string{"version": "test", "revision": "0123456789abcdef"}}
	sw := vswitch.New(cfg.SwitchConfig())
	r, err := daemon.Start(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown() })
	return r, api.NewClient(cfg.API)
}

// The dashboard in a real browser (Debian's chromium, headless) against
// a daemon with traffic: the page loads without a console error (no CSP
// violation, no failed request, no exception), draws the ports with their
// kind, VLANs, VNIs and state, its charts move, drops show by reason, the
// FDB search filters, flows say export is off (no flow cache here), and
// the trace form answers with a verdict.
// page is the dashboard open in headless Chromium, with helpers.
type page struct {
	t   *testing.T
	ctx context.Context
	*cdp
	ce consoleErrors
}

// openPage loads url in a fresh headless Chromium with a 1280×900
// window, collecting the console's errors; it skips the test without
// Chromium.
func openPage(t *testing.T, url string) *page {
	t.Helper()
	bin, ok := chromiumPath()
	if !ok {
		t.Skip("no chromium: apt-get install chromium (run.sh installs it)")
	}
	b := startBrowser(t, bin, 1280, 900)
	p := &page{t: t}
	p.cdp = b.page(t, p.ce.event)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard over every wait below
	t.Cleanup(cancel)
	p.ctx = ctx
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := p.call(ctx, m, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The window's size, whatever the headless browser makes of
	// --window-size: the screenshot's width.
	if err := p.call(ctx, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.call(ctx, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			p.ce.mu.Lock()
			t.Logf("page console:\n%s", strings.Join(p.ce.logs, "\n"))
			p.ce.mu.Unlock()
			t.Logf("chromium:\n%s", b.stderr)
		}
	})
	return p
}

// waitFor evaluates expr until it is true.
func (p *page) waitFor(what, expr string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ok bool
		err := p.eval(p.ctx, "!!("+expr+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not within %v (last error %v)", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// str evaluates expr to a string.
func (p *page) str(expr string) string {
	p.t.Helper()
	var s string
	if err := p.eval(p.ctx, expr, &s); err != nil {
		p.t.Fatal(err)
	}
	return s
}

// num evaluates expr to a number.
func (p *page) num(expr string) float64 {
	p.t.Helper()
	var f float64
	if err := p.eval(p.ctx, "Number("+expr+")", &f); err != nil {
		p.t.Fatal(err)
	}
	return f
}

// noErrors fails the test if the page reported errors.
func (p *page) noErrors() {
	p.t.Helper()
	if errs := p.ce.list(); len(errs) > 0 {
		p.t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

func TestDashboardInBrowser(t *testing.T) {
	r, client := startDemoDaemon(t)
	pg := openPage(t, "http://"+r.DashboardAddr().String()+"/")
	ctx, waitFor, str, num := pg.ctx, pg.waitFor, pg.str, pg.num
	page := pg.cdp

	// The waits end as soon as the page shows what they wait for: 30 s
	// is room for a loaded machine (Chromium, the daemon and -race share
	// two cores in CI).
	waitFor("the page polls the ports", `document.body.dataset.samples >= 3`, 30*time.Second)
	if s := str(`document.querySelector('#status').dataset.state`); s != "ok" {
		t.Errorf("status %q, want ok", s)
	}
	// The ports table: kind, VLANs, VNIs, state.
	row := func(port string) string {
		return str(fmt.Sprintf(`Array.from(document.querySelectorAll('#ports tr[data-port=%q] td')).map(td => td.textContent).join(' | ')`, port))
	}
	for port, want := range map[string][]string{
		"vm1": {"vm1 | test-traffic | access 10 |"},
		"vm3": {"test-traffic | trunk 10,20, native 10 |"},
		"vx0": {"vx0 | vxlan |", "| 100→10 |", "1 remote VTEP"},
	} {
		got := row(port)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("port row %s: %q lacks %q", port, got, w)
			}
		}
	}

	// The charts move: rates of every sending port above 0, and new
	// samples with other values later (a poll, not a fixed sleep: a
	// loaded machine can hold the page's timer for seconds).
	const ratesJS = `Array.from(document.querySelectorAll('#ports tr[data-port]')).map(tr => tr.dataset.port + '=' + tr.dataset.rxBps).join(' ')`
	rates := func() string { return str(ratesJS) }
	s1, r1 := num(`document.body.dataset.samples`), rates()
	for _, p := range []string{"vm1", "vm2", "vm3"} {
		if v := num(fmt.Sprintf(`document.querySelector('#ports tr[data-port=%q]').dataset.rxBps`, p)); v <= 0 {
			t.Errorf("%s: in rate %v, want > 0 (rates %s)", p, v, r1)
		}
	}
	waitFor(fmt.Sprintf("new samples with other rates than %q (charts that move)", r1),
		fmt.Sprintf(`Number(document.body.dataset.samples) > %v && (%s) !== %q`, s1, ratesJS, r1), 30*time.Second)
	// And there is ink on vm1's chart.
	ink := num(`(() => { const c = document.querySelector('#ports tr[data-port="vm1"] canvas');
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()`)
	if ink < 50 {
		t.Errorf("vm1's chart has %v painted pixels", ink)
	}

	// Drops by reason: vm3's frames of VLAN 30.
	waitFor("a vlan drop row", `document.querySelector('#drops tr[data-reason="vlan"]')`, 30*time.Second)
	if got := str(`document.querySelector('#drops tr[data-reason="vlan"]').textContent`); !strings.Contains(got, "vm3") {
		t.Errorf("vlan drops row %q does not name vm3", got)
	}

	// Flows: export is off (the API's 409), then on through the API
	// (a cache and no collector): the test ports' UDP flows show.
	waitFor("the flows note", `document.querySelector('#flows-note').textContent !== '…'`, 30*time.Second)
	if got := str(`document.querySelector('#flows-note').textContent`); got != "Flow export is off." {
		t.Errorf("flows: %q, want \"Flow export is off.\"", got)
	}
	on := true
	if _, err := client.SetFlowExport(context.Background(), api.FlowExport{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	waitFor("the flows table", `!document.querySelector('#flows').hidden && document.querySelectorAll('#flows tbody tr').length > 0`, 30*time.Second)
	if got := str(`document.querySelector('#flows tbody tr').textContent`); !strings.Contains(got, "udp") || !strings.Contains(got, "vm") {
		t.Errorf("the first flow row %q: want a UDP flow between the test's ports", got)
	}

	// The FDB and its search box.
	waitFor("the FDB's three MACs", `document.querySelector('#fdb').dataset.matched >= 3`, 30*time.Second)
	search := func(q string) (shown float64, text string) {
		t.Helper()
		var out struct {
			Shown float64
			Text  string
		}
		expr := fmt.Sprintf(`(() => { const s = document.querySelector('#fdb-search'); s.value = %q;
			s.dispatchEvent(new Event('input')); const f = document.querySelector('#fdb');
			return {Shown: Number(f.dataset.shown), Text: f.querySelector('tbody').textContent}; })()`, q)
		if err := page.eval(ctx, expr, &out); err != nil {
			t.Fatal(err)
		}
		return out.Shown, out.Text
	}
	if n, text := search(mac2); n != 1 || !strings.Contains(text, mac2) || !strings.Contains(text, "vm2") {
		t.Errorf("FDB search %s: %v rows %q, want vm2's alone", mac2, n, text)
	}
	if n, _ := search("vm3 vlan 10"); n != 1 {
		t.Errorf("FDB search \"vm3 vlan 10\": %v rows, want 1", n)
	}
	if n, _ := search("no-such-entry"); n != 0 {
		t.Errorf("FDB search for nothing: %v rows", n)
	}
	search("")

	// The trace form: vm1 to vm2's learned MAC leaves by vm2 alone.
	waitFor("the trace form's ports", `document.querySelectorAll('#trace-in option').length === 4`, 30*time.Second)
	page.eval(ctx, fmt.Sprintf(`(() => { const f = document.querySelector('#trace-form');
		f.in_port.value = 'vm1'; f.src_mac.value = %q; f.dst_mac.value = %q; f.requestSubmit(); return true; })()`, mac1, mac2), nil)
	waitFor("a trace verdict", `['forward', 'flood', 'none', 'error'].includes(document.querySelector('#trace-result').dataset.verdict) || (document.querySelector('#trace-result').dataset.verdict || '').startsWith('drop:')`, 30*time.Second)
	if v, text := str(`document.querySelector('#trace-result').dataset.verdict`), str(`document.querySelector('#trace-result').textContent`); v != "forward" || !strings.Contains(text, "Forwarded to vm2") {
		t.Errorf("trace vm1 → %s: verdict %q, %q; want forward to vm2", mac2, v, text)
	}

	if path := os.Getenv(EnvScreenshot); path != "" {
		// A full minute of history draws better charts.
		if d, err := time.ParseDuration(os.Getenv(EnvScreenshot + "_WAIT")); err == nil {
			time.Sleep(d)
		}
		page.eval(ctx, `window.scrollTo(0, 0), true`, nil)
		if err := page.screenshot(ctx, path, 1280); err != nil {
			t.Errorf("screenshot: %v", err)
		} else {
			t.Logf("screenshot: %s", path)
		}
	}
	pg.noErrors()
}

// The flows table reads the flow cache's answer loosely: an object with
// flows, or a bare list; the IPFIX-like fields under several names;
// whatever is missing left blank. (A fake API stands in for the daemon:
// its flow cache is not in this package's daemon.)
func TestDashboardFlowsInBrowser(t *testing.T) {
	var bare atomic.Bool
	flows := `[
		{"src_mac": "52:54:00:00:00:03", "dst_mac": "ff:ff:ff:ff:ff:ff", "vni": 100, "ingress_port": "vm3", "packets": 5, "octets": 320},
		{"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "protocol": "tcp", "src_port": 40000, "dst_port": 5201, "vlan": 10,
		 "in_port": "vm1", "out_port": "vm2", "packets": 1200, "bytes": 1800000, "tcp_flags": "syn,ack"},
		{"src_addr": "2001:db8::1", "dst_addr": "2001:db8::2", "proto": "udp", "src_port": 53, "dst_port": 5353, "bytes": 5000, "pkts": 10,
		 "out_ports": ["vm1", "vm2"], "in_port": "up0", "extra": {"nested": [1, 2]}},
		{"in": "up0", "in_index": 3, "out_index": 0, "src_mac": "52:54:00:00:00:05", "dst_mac": "ff:ff:ff:ff:ff:ff", "vlan": 20,
		 "ethertype": "0x0800", "protocol": 17, "src_ip": "10.0.0.5", "dst_ip": "10.0.0.6", "src_port": 1000, "dst_port": 2000,
		 "packets": 3, "bytes": 100, "start": "2026-12-04T22:00:00Z", "end": "2026-12-04T22:00:01Z"}
	]`
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/ports", "/v1/fdb":
			io.WriteString(w, "[]")
		case "/v1/switch":
			io.WriteString(w, "{}")
		case "/v1/flows":
			if bare.Load() {
				io.WriteString(w, flows)
				return
			}
			io.WriteString(w, `{"enabled": true, "active": 3, "flows": `+flows+`}`)
		default:
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewServer(dashboard.Handler(dashboard.Options{API: api, Loopback: true}))
	defer srv.Close()
	pg := openPage(t, srv.URL+"/")
	rows := `Array.from(document.querySelectorAll('#flows tbody tr')).map(tr =>
		Array.from(tr.cells).map(td => td.textContent).join(' | ')).join('\n')`
	want := "10.0.0.1:40000 → 10.0.0.2:5201 tcp | VLAN 10 | vm1 → vm2 | 1200 | 1.7 MiB\n" +
		"[2001:db8::1]:53 → [2001:db8::2]:5353 udp |  | up0 → vm1,vm2 | 10 | 4.9 KiB\n" +
		"52:54:00:00:00:03 → ff:ff:ff:ff:ff:ff | VNI 100 | vm3 → ? | 5 | 320 B\n" +
		"10.0.0.5:1000 → 10.0.0.6:2000 udp | VLAN 20 | up0 → flood | 3 | 100 B" // the API's own form (GET /v1/flows)
	// Shown, and drawn (the table may be shown a moment before its rows).
	pg.waitFor("the flows table", `!document.querySelector('#flows').hidden && document.querySelectorAll('#flows tbody tr').length === 4`, 10*time.Second)
	if got := pg.str(rows); got != want {
		t.Errorf("flows:\n%s\nwant:\n%s", got, want)
	}
	bare.Store(true)
	pg.eval(pg.ctx, `document.querySelector('#flows tbody').replaceChildren(), true`, nil)
	pg.waitFor("the flows table from a bare list", `document.querySelectorAll('#flows tbody tr').length === 4`, 10*time.Second)
	if got := pg.str(rows); got != want {
		t.Errorf("flows from a bare list:\n%s\nwant:\n%s", got, want)
	}
	pg.noErrors()
}
