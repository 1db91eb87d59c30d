package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hvnet/hvnet/api"
)

// TestEmptyOptionValuesPatch: PATCH /v1/ports/NAME with an option given
// as [] or null is refused with 400 naming options.KEY, and the port keeps
// its settings (POST over every kind: daemon/kinds).
func TestEmptyOptionValuesPatch(t *testing.T) {
	_, c, _, r := startDaemon(t, Config{})
	t.Cleanup(func() { _ = r.Shutdown() })
	ctx := context.Background()
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: "test-sink", Config: api.PortConfig{Name: "a", PVID: 20},
		Options: map[string]api.OptionValue{"need": {"x"}}}); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"options":{"need":[]}}`, `{"options":{"need":null}}`, `{"options":{"need":"x","tag":[]}}`} {
		_, err := c.Raw(ctx, http.MethodPatch, "/v1/ports/a", json.RawMessage(body))
		field := "options.need"
		if body == `{"options":{"need":"x","tag":[]}}` {
			field = "options.tag"
		}
		wantAPIError(t, body, err, http.StatusBadRequest, field, "missing value")
	}
	if got := sinkOf(t, "a").spec.v.Get("need"); got != "x" {
		t.Errorf("after refused PATCHes need = %q, want x", got)
	}
}
