package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

func TestCheckPortName(t *testing.T) {
	for _, n := range []string{"a", "vm-1_eth0.10", "a:b", "port\u00e9", strings.Repeat("x", MaxPortNameLen)} {
		if err := CheckPortName(n); err != nil {
			t.Errorf("CheckPortName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range []string{"", "a#2", "a?x", "a%41", "a/b", "a b", "a\tb", "a\nb", "a\x00", "a\x7f", "a\u00a0b", "a\u200bb", "\xff", strings.Repeat("x", MaxPortNameLen+1)} {
		err := CheckPortName(n)
		if err == nil || !strings.Contains(err.Error(), "port name") || !strings.Contains(err.Error(), PortNameRule) {
			t.Errorf("CheckPortName(%q) = %v, want the rule", n, err)
		}
	}
}

// TestPortNameRuleAPI: POST /v1/ports refuses a name outside the rule
// with 400 naming config.name, and adds nothing.
func TestPortNameRuleAPI(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	f := &fakeFactory{handles: map[string]*vswitch.PortHandle{}}
	h := NewServer(sw, Options{Ports: f}).Handler()
	for _, n := range []string{"a#2", "a?x", "a%2F", "a\u0001"} {
		b, _ := json.Marshal(PortSpec{Kind: KindVhostUser, Config: PortConfig{Name: n}, Options: map[string]OptionValue{"socket": {"/run/a.sock"}}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/ports", strings.NewReader(string(b))))
		var e Error
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != http.StatusBadRequest || e.Field != "config.name" || !strings.Contains(e.Message, PortNameRule) {
			t.Errorf("POST name %q = %d %s, want 400 on config.name with the rule", n, rec.Code, rec.Body)
		}
	}
	if len(f.added) != 0 || len(sw.Counters()) != 0 {
		t.Errorf("refused names added ports: %v", f.added)
	}
}
