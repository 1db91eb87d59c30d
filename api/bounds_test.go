package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

func statics(sw *vswitch.Switch) int {
	n := 0
	for _, e := range sw.FDB() {
		if e.Static {
			n++
		}
	}
	return n
}

// TestStaticEntriesBounded: POST /v1/fdb stops at Limits.MaxStaticEntries
// with 409 and says why; replacing an entry and deleting one still work.
func TestStaticEntriesBounded(t *testing.T) {
	sw := vswitch.New(vswitch.Config{FDBMaxEntries: 16})
	for _, n := range []string{"p", "q"} {
		if _, err := sw.AddPort(vswitch.PortConfig{Name: n, PVID: 1}, &memPort{}); err != nil {
			t.Fatal(err)
		}
	}
	h := NewServer(sw, Options{Limits: Limits{MaxStaticEntries: 8}}).Handler()
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	for i := range 8 {
		if rec := do(http.MethodPost, "/v1/fdb", fmt.Sprintf(`{"port":"p","vlan":%d,"mac":"02:00:00:00:00:%02x"}`, 1+i, i)); rec.Code != http.StatusCreated {
			t.Fatalf("static entry %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := do(http.MethodPost, "/v1/fdb", `{"port":"p","vlan":100,"mac":"02:00:00:00:01:00"}`)
	var e Error
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusConflict || !strings.Contains(e.Message, "8 static FDB entries") || !strings.Contains(e.Message, "MaxStaticEntries") {
		t.Errorf("9th static entry = %d %s, want 409 naming the limit", rec.Code, rec.Body)
	}
	if n := statics(sw); n != 8 {
		t.Errorf("%d static entries, want 8", n)
	}
	// Moving an existing entry to another port is not a new one.
	if rec := do(http.MethodPost, "/v1/fdb", `{"port":"q","vlan":1,"mac":"02:00:00:00:00:00"}`); rec.Code != http.StatusCreated {
		t.Errorf("replacing an entry at the limit = %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodDelete, "/v1/fdb/1/02:00:00:00:00:00", ""); rec.Code/100 != 2 {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodPost, "/v1/fdb", `{"port":"p","vlan":100,"mac":"02:00:00:00:01:00"}`); rec.Code != http.StatusCreated {
		t.Errorf("after a delete = %d %s, want room again", rec.Code, rec.Body)
	}
	// Learning is unaffected.
	if rec := do(http.MethodGet, "/v1/ports/p", ""); rec.Code != http.StatusOK {
		t.Errorf("GET port = %d", rec.Code)
	}
}

// TestPortsBounded: POST /v1/ports stops at Limits.MaxPorts with 409,
// before the factory starts a backend.
func TestPortsBounded(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	f := &fakeFactory{handles: map[string]*vswitch.PortHandle{}}
	h := NewServer(sw, Options{Ports: f, SocketDir: t.TempDir(), Limits: Limits{MaxPorts: 3}}).Handler()
	post := func(name string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/ports",
			strings.NewReader(`{"kind":"vhost-user","config":{"name":"`+name+`"},"options":{"socket":"`+name+`.sock"}}`)))
		return rec
	}
	for _, n := range []string{"a", "b", "c"} {
		if rec := post(n); rec.Code != http.StatusCreated {
			t.Fatalf("port %s: %d %s", n, rec.Code, rec.Body)
		}
	}
	rec := post("d")
	var e Error
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusConflict || !strings.Contains(e.Message, "3 ports") || !strings.Contains(e.Message, "MaxPorts 3") {
		t.Errorf("4th port = %d %s, want 409 naming the limit", rec.Code, rec.Body)
	}
	if len(f.added) != 3 || sw.Port("d") != nil {
		t.Errorf("factory asked for %d ports, port d attached %v", len(f.added), sw.Port("d") != nil)
	}
	if err := sw.RemovePort("a"); err != nil {
		t.Fatal(err)
	}
	if rec := post("d"); rec.Code != http.StatusCreated {
		t.Errorf("after a removal = %d %s, want room again", rec.Code, rec.Body)
	}
}
