package kinds_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	_ "github.com/hvnet/hvnet/daemon/kinds"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestEmptyOptionValues: every option key of every kind, given as an
// empty list or null through the API (and as no value through the Go
// API), is refused with 400 naming options.KEY, never a panic (a lab
// port's ip: [] was one: net/http recovered, the client saw EOF).
func TestEmptyOptionValues(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	d := daemon.New(context.Background(), hclog.NewNullLogger(), sw, "")
	t.Cleanup(d.Close)
	srv := api.NewServer(sw, api.Options{Ports: d, SocketDir: t.TempDir()})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	n := 0
	for _, kind := range daemon.Kinds() {
		k, _ := daemon.Lookup(kind)
		for _, o := range k.Options() {
			if _, err := daemon.NewPortSpec(kind, vswitch.PortConfig{Name: "p", PVID: 1}, daemon.Values{o.Key: nil}); err == nil ||
				!strings.Contains(err.Error(), `"`+o.Key+`"`) || !strings.Contains(err.Error(), "missing value") {
				t.Errorf("kind %s, %s with no value: %v, want missing value", kind, o.Key, err)
			}
			for _, empty := range []string{"[]", "null"} {
				n++
				body := `{"kind":"` + kind + `","config":{"name":"p"},"options":{"` + o.Key + `":` + empty + `}}`
				resp, err := http.Post(ts.URL+"/v1/ports", "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatalf("%s: %v (the handler panicked?)", body, err)
				}
				var e api.Error
				_ = json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || e.Field != "options."+o.Key || !strings.Contains(e.Message, "missing value") {
					t.Errorf("%s = %d %+v, want 400 on options.%s: missing value", body, resp.StatusCode, e, o.Key)
				}
			}
		}
	}
	if n < 20 || sw.Port("p") != nil {
		t.Errorf("%d requests tried; port p on the switch: %v", n, sw.Port("p") != nil)
	}
}
